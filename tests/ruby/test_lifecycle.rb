# frozen_string_literal: true

require_relative "helper"
require "rbconfig"

# Start, stop, drain on signals, fork.
class TestLifecycle < Minitest::Test
  def dev = shared_dev

  LIB = File.join(ROOT, "bindings-ruby/lib")

  # A child Ruby process running ConductorWorker.run with one worker whose tasks sleep
  # +seconds+; it prints "started <task id>" when a task begins.
  def spawn_worker(type, seconds)
    script = <<~RUBY
      $stdout.sync = true
      trap("INT", "DEFAULT") # a background job inherits INT ignored; a user's shell does not
      require "conductor_worker"
      ConductorWorker.worker(#{type.inspect}, threads: 2) do |_, task|
        puts "started \#{task.task_id}"
        sleep #{seconds}
        { slept: #{seconds} }
      end
      report = ConductorWorker.run(servers: [#{dev.api.inspect}], timeout: 10)
      puts "drained \#{report.inspect}"
    RUBY
    out_r, out_w = IO.pipe
    env = { "CONDUCTOR_WORKER_JOURNAL" => "off" }
    args = [env, RbConfig.ruby]
    args += ["-I", LIB] unless ENV["CONDUCTOR_WORKER_INSTALLED"] == "1"
    pid = Process.spawn(*args, "-e", script, out: out_w, err: out_w)
    out_w.close
    [pid, out_r]
  end

  def wait_line(io, prefix, within: 20)
    Timeout.timeout(within) do
      while (line = io.gets)
        return line if line.start_with?(prefix)
      end
    end
    flunk "the worker process ended without printing #{prefix.inspect}"
  end

  def test_int_drains_running_tasks_then_exits_zero
    type = unique("drain")
    pid, out = spawn_worker(type, 1.5)
    wfs = dev.run_tasks(type, [{ i: 1 }, { i: 2 }])
    wait_line(out, "started")
    wait_line(out, "started")
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    Process.kill("INT", pid)
    assert_match(/drained \{:abandoned_tasks=>0/, wait_line(out, "drained"))
    _, status = Process.wait2(pid)
    assert status.success?, "exit status #{status.inspect}"
    assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0, :<, 8
    wfs.each do |wf|
      task = dev.task_of(wf)
      assert_equal ["COMPLETED", { "slept" => 1.5 }], [task["status"], task["outputData"]]
    end
  end

  def test_term_drains_and_a_second_int_stops_at_once
    type = unique("term")
    pid, out = spawn_worker(type, 1)
    dev.enqueue(type, 1)
    wait_line(out, "started")
    Process.kill("TERM", pid)
    wait_line(out, "drained")
    assert Process.wait2(pid)[1].success?

    slow = unique("slow")
    pid, out = spawn_worker(slow, 30)
    dev.enqueue(slow, 1)
    wait_line(out, "started")
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    Process.kill("INT", pid)
    sleep 0.3
    Process.kill("INT", pid)
    Timeout.timeout(10) { Process.wait(pid) }
    assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0, :<, 5, "the second INT did not wait for the 30 s task"
  end

  def test_ctrl_c_ends_a_main_thread_waiting_for_tasks_promptly
    script = <<~RUBY
      $stdout.sync = true
      trap("INT", "DEFAULT")
      require "conductor_worker"
      runtime = ConductorWorker::Native::Runtime.new({ servers: [#{dev.api.inspect}], journal: "off" })
      worker = runtime.add_worker("never_#{SecureRandom.hex(4)}", {})
      runtime.start
      puts "waiting"
      begin
        worker.next_tasks(1, nil)
      rescue Interrupt
        puts "interrupted"
      end
    RUBY
    out_r, out_w = IO.pipe
    args = [RbConfig.ruby]
    args += ["-I", LIB] unless ENV["CONDUCTOR_WORKER_INSTALLED"] == "1"
    pid = Process.spawn(*args, "-e", script, out: out_w, err: File::NULL)
    out_w.close
    wait_line(out_r, "waiting")
    sleep 0.3
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    Process.kill("INT", pid)
    assert_equal "interrupted\n", wait_line(out_r, "interrupted", within: 5)
    assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0, :<, 1
    Process.wait(pid)
  end

  def test_runner_stop_lets_running_tasks_finish_and_reports
    type = unique("stop")
    started = Queue.new
    ConductorWorker.worker(type, threads: 3) do |_, _|
      started << true
      sleep 1
      { finished: true }
    end
    runner = ConductorWorker::Runner.new(servers: [dev.api]).start
    assert runner.running?
    assert_equal [type], runner.health.map { |h| h[:task_type] }
    wfs = dev.run_tasks(type, [{ i: 1 }, { i: 2 }, { i: 3 }])
    3.times { started.pop }
    report = runner.stop(timeout: 10)
    assert_equal({ abandoned_tasks: 0, journalled_results: 0, returned_tasks: 0 }, report)
    assert runner.join(1)
    refute runner.running?
    assert_equal [{ "finished" => true }] * 3, wfs.map { |wf| dev.task_of(wf)["outputData"] }
  end

  def test_kill_abandons_running_tasks_and_the_server_hands_them_out_again
    type = unique("kill")
    ConductorWorker.worker(type) { |_, _| sleep 30 }
    runner = ConductorWorker::Runner.new(servers: [dev.api]).start
    dev.enqueue(type, 1)
    wait_for(5, "the task is running") { runner.health.first[:running] == 1 }
    report = runner.kill
    assert_equal 1, report[:abandoned_tasks]
  end

  def test_open_with_a_block_stops_at_the_end_and_a_runner_starts_once
    type = unique("open")
    ConductorWorker.worker(type) { |_, _| { ok: 1 } }
    runner = nil
    ConductorWorker::Runner.open(servers: [dev.api]) do |r|
      runner = r
      assert_equal({ "ok" => 1 }, dev.task_of(dev.run_tasks(type, [{ a: 1 }]).first)["outputData"])
      assert_raises(ConductorWorker::Error) { r.start }
    end
    refute runner.running?
  end

  def test_a_forked_child_runs_workers_with_a_runtime_of_its_own
    type = unique("forked")
    ConductorWorker.worker(type) { |_, _| { pid: Process.pid } }
    parent = ConductorWorker::Runner.new(servers: [dev.api]).start
    parent.pause(type) # the child must be the one that runs the task
    reader, writer = IO.pipe
    child = fork do
      reader.close
      error = begin
        parent.health && parent.stop(timeout: 1)
        "no error"
      rescue ConductorWorker::Error => e
        e.message
      end
      runner = ConductorWorker::Runner.new(servers: [dev.api]).start
      wf = dev.run_tasks(type, [{ x: 1 }]).first
      output = dev.task_of(wf)["outputData"]
      runner.stop(timeout: 5)
      writer.write(JSON.generate({ "error" => error, "output" => output, "pid" => Process.pid }))
      writer.close
      exit!(0)
    end
    writer.close
    result = JSON.parse(Timeout.timeout(60) { reader.read })
    _, status = Process.wait2(child)
    assert status.success?
    assert_equal({ "pid" => result["pid"] }, result["output"])
    assert_match(/cannot be used after fork/, result["error"])
    parent.resume(type)
    assert_equal Process.pid, dev.task_of(dev.run_tasks(type, [{ x: 2 }]).first)["outputData"]["pid"],
                 "the parent's runtime still works"
  ensure
    parent&.stop(timeout: 5)
  end
end
