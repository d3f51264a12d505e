# frozen_string_literal: true

# Shared by the Ruby tests: loads the gem (the installed one with CONDUCTOR_WORKER_INSTALLED=1,
# else bindings-ruby/lib with the extension `rake compile` put there), starts dev servers and
# speaks their API.

require "json"
require "net/http"
require "securerandom"
require "timeout"
require "minitest/autorun"

ROOT = File.expand_path("../..", __dir__)
$LOAD_PATH.unshift(File.join(ROOT, "bindings-ruby/lib")) unless ENV["CONDUCTOR_WORKER_INSTALLED"] == "1"
require "conductor_worker"

# A dev server process of a test's own (port picked by the server), stopped at exit.
class DevServer
  attr_reader :url, :api

  def self.binary
    path = File.join(ROOT, "target/release/conductor-devserver")
    return path if File.executable?(path)

    raise "#{path} is missing: build it with `cargo build --release -p conductor-devserver`"
  end

  def initialize(*flags)
    @out_r, out_w = IO.pipe
    @pid = Process.spawn(DevServer.binary, "--port", "0", *flags, out: out_w, err: File::NULL)
    out_w.close
    line = Timeout.timeout(20) { @out_r.gets }
    raise "the dev server did not start (#{flags.join(" ")})" unless line&.include?("listening on ")

    @url = line.split("listening on ").last.strip
    @api = "#{@url}/api"
    at_exit { stop }
  end

  def stop
    return unless @pid

    Process.kill("TERM", @pid)
    Process.wait(@pid)
  rescue Errno::ESRCH, Errno::ECHILD
    nil
  ensure
    @pid = nil
  end

  def request(method, path, body = nil, root: false)
    uri = URI("#{root ? @url : @api}#{path}")
    Net::HTTP.start(uri.host, uri.port, read_timeout: 30) do |http|
      req = Net::HTTP.const_get(method.capitalize).new(uri, "Content-Type" => "application/json")
      req.body = JSON.generate(body) unless body.nil?
      response = http.request(req)
      raise "#{method.upcase} #{path}: #{response.code} #{response.body}" unless response.code.start_with?("2")

      body = response.body
      next nil if body.nil? || body.empty?

      # Starting a workflow answers its id as plain text.
      response.content_type == "application/json" ? JSON.parse(body) : body
    end
  end

  def enqueue(task_type, count, input = {}, **fields)
    request(:post, "/admin/tasks", { taskType: task_type, count: count, input: input, **fields }, root: true)
  end

  def stats
    request(:get, "/admin/stats", root: true)
  end

  def faults(**faults)
    request(:put, "/admin/faults", faults, root: true)
  end

  def taskdef(name, **fields)
    request(:post, "/metadata/taskdefs", [{ name: name, retryCount: 0, retryDelaySeconds: 0,
                                           responseTimeoutSeconds: 60, timeoutSeconds: 0,
                                           ownerEmail: "ruby-tests@example.com", **fields }])
  end

  # A workflow of one SIMPLE task of +task_type+ whose input takes +keys+ from the workflow's.
  def workflow_for(task_type, keys, **taskdef_fields)
    taskdef(task_type, **taskdef_fields)
    name = "wf_#{SecureRandom.hex(4)}"
    request(:put, "/metadata/workflow", [{
      name: name, version: 1, schemaVersion: 2, timeoutSeconds: 600, ownerEmail: "ruby-tests@example.com",
      tasks: [{ name: task_type, taskReferenceName: "only", type: "SIMPLE",
                inputParameters: keys.to_h { |k| [k, "${workflow.input.#{k}}"] } }],
      outputParameters: { out: "${only.output}" }
    }])
    name
  end

  # Starts one workflow per input; returns their ids.
  def run_tasks(task_type, inputs, **taskdef_fields)
    workflow = workflow_for(task_type, inputs.flat_map(&:keys).uniq.map(&:to_s), **taskdef_fields)
    inputs.map { |input| request(:post, "/workflow/#{workflow}", input).to_s }
  end

  def workflow(id)
    request(:get, "/workflow/#{id}?includeTasks=true")
  end

  TERMINAL = %w[COMPLETED FAILED FAILED_WITH_TERMINAL_ERROR TIMED_OUT CANCELED COMPLETED_WITH_ERRORS SKIPPED].freeze

  # The last attempt of the workflow's task, once terminal.
  def task_of(workflow_id, within: 15)
    wait_for(within, "the task of #{workflow_id} finished") do
      task = (workflow(workflow_id)["tasks"] || []).last
      task if task && TERMINAL.include?(task["status"])
    end
  end

  def logs(task_id)
    (request(:get, "/tasks/#{task_id}/log") || []).map { |entry| entry["log"] }
  end

  def wait_completed(count, within: 20)
    wait_for(within, "#{count} tasks completed") do
      s = stats
      s if s["tasks"]["completed"] >= count
    end
  end
end

# Polls the block until it returns something truthy; fails the test after +within+ seconds.
def wait_for(within, what, every: 0.05)
  deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + within
  loop do
    value = yield
    return value if value
    raise Minitest::Assertion, "timed out after #{within} s waiting for: #{what}" if
      Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

    sleep every
  end
end

def unique(prefix)
  "#{prefix}_#{SecureRandom.hex(5)}"
end

# The session's shared dev server (tests use task types of their own).
def shared_dev
  $shared_dev ||= DevServer.new # rubocop:disable Style/GlobalVars
end

# Every test starts with no worker definitions and the journal off (tests must not share one).
ENV["CONDUCTOR_WORKER_JOURNAL"] = "off"
module ConductorWorkerTestReset
  def setup
    super
    ConductorWorker.clear_definitions
  end
end
Minitest::Test.prepend(ConductorWorkerTestReset)
