# frozen_string_literal: true

require_relative "helper"
require "digest"

# Large payloads through the gem: an input the dev server stored externally reaches the block
# whole, an input no worker can read fails the task without calling the block, and
# external_payload_threshold_kb decides which outputs are uploaded.
class TestLargePayloads < Minitest::Test
  FAST = { poll_timeout: 0.2, poll_interval: 0.05 }.freeze
  LOW = %w[--task-input-threshold-kb 64 --task-output-threshold-kb 64].freeze

  def with_dev(storage)
    dev = DevServer.new(*LOW, "--external-storage", storage)
    yield dev
  ensure
    dev&.stop
  end

  def test_an_externalized_input_reaches_the_block_whole
    with_dev("upload") do |dev|
      task_type = unique("big_in")
      doc = Array.new(300_000) { |i| (97 + (i % 26)).chr }.join
      ConductorWorker.worker(task_type, **FAST) { |input, task| { sha: Digest::SHA256.hexdigest(input["doc"]), seen: task.input_data["doc"].size } }
      workflow = dev.run_tasks(task_type, [{ doc: doc }]).first
      runner = ConductorWorker::Runner.new(servers: [dev.api], journal: "off").start
      task = dev.task_of(workflow)
      assert_equal "COMPLETED", task["status"], task["reasonForIncompletion"]
      refute_nil task["externalInputPayloadStoragePath"], "the dev server did not externalize the input"
      assert_equal Digest::SHA256.hexdigest(doc), task["outputData"]["sha"]
      assert_equal doc.size, task["outputData"]["seen"]
    ensure
      runner&.stop(timeout: 5)
    end
  end

  def test_an_input_no_worker_can_read_fails_without_calling_the_block
    with_dev("none") do |dev|
      task_type = unique("no_uri")
      calls = Queue.new
      ConductorWorker.worker(task_type, **FAST) { |input, _| calls << input }
      workflow = dev.run_tasks(task_type, [{ doc: "x" * 200_000 }]).first
      runner = ConductorWorker::Runner.new(servers: [dev.api], journal: "off").start
      task = dev.task_of(workflow)
      assert_equal "FAILED_WITH_TERMINAL_ERROR", task["status"]
      assert_includes task["reasonForIncompletion"], "external payload"
      assert_includes task["reasonForIncompletion"], task["externalInputPayloadStoragePath"]
      assert_empty calls
    ensure
      runner&.stop(timeout: 5)
    end
  end

  def test_the_threshold_decides_which_outputs_are_uploaded
    with_dev("upload") do |dev|
      task_type = unique("big_out")
      ConductorWorker.worker(task_type, **FAST) { |input, _| { blob: "y" * input["n"] } }
      # 100 KB: above the server's 64 KB, below this runtime's 200 KB, so sent inline.
      workflows = dev.run_tasks(task_type, [{ n: 100_000 }, { n: 300_000 }])
      runner = ConductorWorker::Runner.new(servers: [dev.api], journal: "off", external_payload_threshold_kb: 200).start
      workflows.each { |w| dev.task_of(w) }
      stats = dev.stats
      assert_equal 1, stats["external_writes"], stats.inspect
      assert_equal 1, stats["externalized_outputs"], stats.inspect
      workflows.zip([100_000, 300_000]).each do |w, n|
        assert_equal({ "blob" => "y" * n }, dev.workflow(w)["output"]["out"])
      end
    ensure
      runner&.stop(timeout: 5)
    end
  end

  def test_a_threshold_of_zero_is_refused_naming_the_option
    definition = ConductorWorker::Definition.new(unique("zero"), proc { nil })
    error = assert_raises(ConductorWorker::ConfigError) do
      ConductorWorker::Runner.new(servers: [shared_dev.api], workers: [definition], external_payload_threshold_kb: 0)
    end
    assert_match(/external_payload_threshold_kb/, error.message)
  end
end
