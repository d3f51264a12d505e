# frozen_string_literal: true

require_relative "helper"

# Input to arguments, return values and exceptions to results: what a worker author sees.
class TestMapping < Minitest::Test
  def dev = shared_dev

  def run_workers(&block)
    runner = ConductorWorker::Runner.new(servers: [dev.api]).start
    block.call(runner)
  ensure
    runner&.stop(timeout: 5)
  end

  def test_block_gets_string_keyed_input_and_the_task_and_its_hash_becomes_the_output
    type = unique("greet")
    seen = Queue.new
    ConductorWorker.worker(type, threads: 2) do |input, task|
      seen << task.class
      { greeting: "hello #{input["name"]}", times: input["times"], workflow: task.workflow_instance_id }
    end
    run_workers do
      wf = dev.run_tasks(type, [{ name: "ruby", times: 2 }]).first
      task = dev.task_of(wf)
      assert_equal "COMPLETED", task["status"]
      assert_equal({ "greeting" => "hello ruby", "times" => 2, "workflow" => wf }, task["outputData"])
      assert_equal ConductorWorker::Task, seen.pop
    end
  end

  def test_symbolize_keys_and_keyword_arguments
    sym = unique("sym")
    kw = unique("kw")
    ConductorWorker.worker(sym, symbolize_keys: true) { |input, _| { keys: input.keys.map(&:inspect) } }
    ConductorWorker.worker(kw) { |name:, times: 1| { text: ([name] * times).join(" ") } }
    run_workers do
      a = dev.run_tasks(sym, [{ a: 1, b: { c: 2 } }]).first
      b = dev.run_tasks(kw, [{ name: "x", times: 3, ignored: true }]).first
      assert_equal %w[:a :b], dev.task_of(a)["outputData"]["keys"]
      assert_equal "x x x", dev.task_of(b)["outputData"]["text"]
    end
  end

  def test_a_class_worker_with_execute
    type = unique("resize")
    klass = Class.new do
      include ConductorWorker::Worker

      def execute(input, task) = { ok: true, width: input["width"] * 2, poll_count: task.poll_count }
    end
    klass.task_type(type, threads: 2)
    run_workers do
      wf = dev.run_tasks(type, [{ width: 21 }]).first
      assert_equal({ "ok" => true, "width" => 42, "poll_count" => 1 }, dev.task_of(wf)["outputData"])
    end
    assert_equal type, klass.task_type
  end

  def test_nil_is_an_empty_output_and_any_other_value_becomes_result
    type = unique("plain")
    ConductorWorker.worker(type) { |input, _| input["v"] }
    run_workers do
      wfs = dev.run_tasks(type, [{ v: 42 }, { v: "s" }, { v: [1, 2] }, { v: nil }])
      outputs = wfs.map { |wf| dev.task_of(wf)["outputData"] }
      assert_equal [{ "result" => 42 }, { "result" => "s" }, { "result" => [1, 2] }, {}], outputs
    end
  end

  def test_exceptions_fail_the_task_with_reason_and_backtrace_and_non_retryable_is_terminal
    failing = unique("boom")
    terminal = unique("final")
    ConductorWorker.worker(failing) { |_, _| raise ArgumentError, "bad width" }
    ConductorWorker.worker(terminal) { |_, _| raise ConductorWorker::NonRetryableError, "never again" }
    run_workers do
      a = dev.task_of(dev.run_tasks(failing, [{ x: 1 }]).first)
      b = dev.task_of(dev.run_tasks(terminal, [{ x: 1 }]).first)
      assert_equal "FAILED", a["status"]
      assert_equal "ArgumentError: bad width", a["reasonForIncompletion"]
      logs = dev.logs(a["taskId"])
      assert_equal "ArgumentError: bad width", logs.first
      assert(logs.any? { |l| l.include?("test_mapping.rb") }, "the backtrace names this file: #{logs.inspect}")
      assert_equal "FAILED_WITH_TERMINAL_ERROR", b["status"]
      assert_equal "ConductorWorker::NonRetryableError: never again", b["reasonForIncompletion"]
    end
  end

  def test_task_in_progress_raised_or_returned_keeps_the_task_going
    type = unique("progress")
    ConductorWorker.worker(type) do |_, task|
      next { done: task.poll_count } if task.poll_count >= 3
      next ConductorWorker::TaskInProgress.new(output: { checked: task.poll_count }) if task.poll_count == 2

      raise ConductorWorker::TaskInProgress.new(callback_after_seconds: 0, output: { checked: 1 })
    end
    run_workers do
      task = dev.task_of(dev.run_tasks(type, [{ x: 1 }]).first)
      assert_equal "COMPLETED", task["status"]
      assert_equal 3, task["pollCount"]
      assert_equal 3, task["outputData"]["done"]
    end
    assert_raises(ArgumentError) { ConductorWorker::TaskInProgress.new(callback_after_seconds: -1) }
  end

  def test_input_that_does_not_fit_fails_only_that_task
    type = unique("misfit")
    ConductorWorker.worker(type) { |name:| { hello: name } }
    run_workers do
      # Separate workflows: one workflow's input would give both tasks both keys.
      bad = dev.run_tasks(type, [{ other: 1 }]).first
      good = dev.run_tasks(type, [{ name: "n" }]).first
      bad_task = dev.task_of(bad)
      assert_equal "FAILED_WITH_TERMINAL_ERROR", bad_task["status"]
      assert_match(/input does not fit #{type}: missing name \(the input has other\)/, bad_task["reasonForIncompletion"])
      assert_equal({ "hello" => "n" }, dev.task_of(good)["outputData"])
    end
  end

  def test_output_with_no_json_form_fails_that_task_with_a_clear_reason
    type = unique("unjson")
    ConductorWorker.worker(type) do |input, _|
      case input["kind"]
      when "object" then { thing: Object.new }
      when "nan" then { ratio: Float::NAN }
      when "inf" then { big: [1, Float::INFINITY] }
      when "binary" then { blob: "\xff\xfe".b.force_encoding("UTF-8") }
      when "cycle" then { a: {}.tap { |h| h[:self] = h } }
      else { fine: true, at: Time.at(0).utc, point: Struct.new(:x, :y).new(1, 2), sym: :s }
      end
    end
    run_workers do
      kinds = %w[object nan inf binary cycle fine]
      tasks = dev.run_tasks(type, kinds.map { |k| { kind: k } }).map { |wf| dev.task_of(wf) }.zip(kinds).to_h { |t, k| [k, t] }
      expectations = { "object" => /output\["thing"\] is a Object, which has no JSON form/,
                       "nan" => /output\["ratio"\] is NaN, which JSON cannot represent/,
                       "inf" => /output\["big"\]\[1\] is inf/,
                       "binary" => /output\["blob"\] is a String that is not valid text/,
                       "cycle" => /nested more than 128 levels deep/ }
      expectations.each do |kind, pattern|
        assert_equal "FAILED_WITH_TERMINAL_ERROR", tasks[kind]["status"], kind
        assert_match pattern, tasks[kind]["reasonForIncompletion"], kind
      end
      assert_equal({ "fine" => true, "at" => "1970-01-01T00:00:00Z", "point" => { "x" => 1, "y" => 2 }, "sym" => "s" },
                   tasks["fine"]["outputData"])
    end
  end

  def test_current_task_gives_ids_counts_and_log
    type = unique("ctx")
    ConductorWorker.worker(type) do |_, _|
      t = ConductorWorker.current_task
      t.log("step one")
      { id: t.task_id, wf: t.workflow_id, retry: t.retry_count, polls: t.poll_count, type: t.task_type }
    end
    run_workers do
      wf = dev.run_tasks(type, [{ x: 1 }]).first
      task = dev.task_of(wf)
      assert_equal({ "id" => task["taskId"], "wf" => wf, "retry" => 0, "polls" => 1, "type" => type }, task["outputData"])
      assert_includes dev.logs(task["taskId"]), "step one"
    end
    assert_nil ConductorWorker.current_task
  end

  # The second key style of a task's input is made from the first (the core's copy is gone by
  # then): keys at every depth, inside arrays too, values shared.
  def test_an_input_rekeyed_to_the_other_style_keeps_every_level
    text = +"shared"
    strings = { "a" => [{ "b" => 1 }, 2], "c" => { "d" => text } }
    symbols = ConductorWorker::Task.rekey(strings, true)
    assert_equal({ a: [{ b: 1 }, 2], c: { d: "shared" } }, symbols)
    assert_same text, symbols[:c][:d]
    assert_equal strings, ConductorWorker::Task.rekey(symbols, false)
  end
end
