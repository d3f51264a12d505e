# frozen_string_literal: true

# Run with a fresh GEM_HOME by test_installed_artifacts.py (the installed platform gem and the
# standard library only): registers a one-task workflow on the dev server at ARGV[0], completes
# it with a block worker, and prints one JSON line with the result and the gem's require time.

require "json"
require "net/http"

t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
require "conductor_worker"
REQUIRE_SECONDS = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
API = ARGV.fetch(0)

def call(method, path, body = nil)
  uri = URI("#{API}#{path}")
  request = Net::HTTP.const_get(method.capitalize).new(uri, "Content-Type" => "application/json")
  request.body = JSON.generate(body) unless body.nil?
  response = Net::HTTP.start(uri.host, uri.port, read_timeout: 30) { |http| http.request(request) }
  raise "#{method} #{path}: #{response.code} #{response.body}" unless response.code.start_with?("2")

  response.body.start_with?("{", "[") ? JSON.parse(response.body) : response.body
end

call("POST", "/metadata/taskdefs",
     [{ name: "install_block", retryCount: 0, responseTimeoutSeconds: 30, ownerEmail: "install@example.com" }])
call("PUT", "/metadata/workflow",
     [{ name: "install_check_rb", version: 1, schemaVersion: 2, ownerEmail: "install@example.com",
        tasks: [{ name: "install_block", taskReferenceName: "block", type: "SIMPLE",
                  inputParameters: { text: "${workflow.input.text}" } }],
        outputParameters: { text: "${block.output.text}", ruby: "${block.output.ruby}" } }])

ConductorWorker.worker("install_block", threads: 2) do |input|
  { text: input.fetch("text").upcase, ruby: RUBY_VERSION }
end
runner = ConductorWorker::Runner.new(servers: [API], journal: "off")
runner.start
workflow_id = call("POST", "/workflow/install_check_rb", { text: "hello" })
deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 30
workflow = nil
loop do
  workflow = call("GET", "/workflow/#{workflow_id}")
  break if workflow["status"] != "RUNNING" || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

  sleep 0.05
end
runner.stop(timeout: 10)
puts JSON.generate(status: workflow["status"], output: workflow["output"], version: ConductorWorker::VERSION,
                   require_seconds: REQUIRE_SECONDS,
                   extension: $LOADED_FEATURES.grep(/conductor_worker_ruby/).first)
exit(workflow["status"] == "COMPLETED" ? 0 : 1)
