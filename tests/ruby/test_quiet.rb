# frozen_string_literal: true

require_relative "helper"
require "rbconfig"

# Quiet, then stop (Sidekiq's TSTP): Runner#quiet / #resume_all, and ConductorWorker.run doing
# them on TSTP / CONT before TERM drains and exits.
class TestQuiet < Minitest::Test
  LIB = File.join(ROOT, "bindings-ruby/lib")
  FAST = { poll_timeout: 0.2, poll_interval: 0.05 }.freeze

  # A child Ruby process running ConductorWorker.run with one worker of 3 threads whose tasks
  # sleep input "seconds"; its stdout (the runner's log at INFO, then "drained ...") goes
  # line by line to the returned Queue.
  def spawn_worker(dev, type)
    script = <<~RUBY
      $stdout.sync = true
      trap("INT", "DEFAULT") # a background job inherits INT ignored; a user's shell does not
      require "conductor_worker"
      require "logger"
      ConductorWorker.logger = Logger.new($stdout, level: Logger::INFO)
      ConductorWorker.worker(#{type.inspect}, threads: 3, poll_timeout: 0.2, poll_interval: 0.05) do |input, _|
        sleep input["seconds"]
        { slept: input["seconds"] }
      end
      report = ConductorWorker.run(servers: [#{dev.api.inspect}], timeout: 10)
      puts "drained \#{report.inspect}"
    RUBY
    out_r, out_w = IO.pipe
    args = [{ "CONDUCTOR_WORKER_JOURNAL" => "off" }, RbConfig.ruby]
    args += ["-I", LIB] unless ENV["CONDUCTOR_WORKER_INSTALLED"] == "1"
    pid = Process.spawn(*args, "-e", script, out: out_w, err: out_w)
    out_w.close
    lines = Queue.new
    Thread.new do
      out_r.each_line { |line| lines << line }
      lines << nil
    end
    [pid, lines]
  end

  def wait_line(lines, text, within: 10)
    Timeout.timeout(within) do
      while (line = lines.pop)
        return line if line.include?(text)
      end
    end
    flunk "the worker process ended without printing #{text.inspect}"
  end

  def status(dev, workflow_id)
    (dev.workflow(workflow_id)["tasks"] || []).last&.fetch("status")
  end

  def polls(dev)
    requests = dev.stats["requests"]
    requests.fetch("poll", 0) + requests.fetch("batch_poll", 0)
  end

  def test_tstp_quiets_cont_resumes_and_term_then_drains
    dev = DevServer.new # of its own: the test counts every poll the server sees
    type = unique("quiet")
    workflow = dev.workflow_for(type, ["seconds"])
    start = ->(seconds) { dev.request(:post, "/workflow/#{workflow}", { seconds: seconds }).to_s }
    first = Array.new(3) { start.call(2) }
    pid, lines = spawn_worker(dev, type)
    wait_for(15, "the 3 tasks running") { first.all? { |wf| status(dev, wf) == "IN_PROGRESS" } }
    Process.kill("TSTP", pid)
    wait_line(lines, "TSTP: quiet")
    second = Array.new(2) { start.call(0.1) }

    # The running tasks finish and their results are delivered ...
    first.each do |wf|
      task = dev.task_of(wf, within: 10)
      assert_equal ["COMPLETED", { "slept" => 2 }], [task["status"], task["outputData"]]
    end
    # ... but nothing is polled any more (not even as update-v2's next task), and the process
    # stays up.
    before = polls(dev)
    sleep 2
    assert_equal %w[SCHEDULED SCHEDULED], second.map { |wf| status(dev, wf) }
    assert_equal before, polls(dev), "a quiet worker polled"
    assert_equal 3, dev.stats["tasks"]["deliveries"]
    assert_nil Process.wait2(pid, Process::WNOHANG), "the quiet process exited"

    Process.kill("CONT", pid)
    wait_line(lines, "CONT: polling again")
    second.each { |wf| assert_equal "COMPLETED", dev.task_of(wf, within: 10)["status"] }

    Process.kill("TERM", pid)
    assert_match(/drained \{:abandoned_tasks=>0/, wait_line(lines, "drained", within: 15))
    _, exit_status = Timeout.timeout(5) { Process.wait2(pid) }
    pid = nil
    assert exit_status.success?, "exit status #{exit_status.inspect}"
  ensure
    if pid
      Process.kill("KILL", pid)
      Process.wait(pid)
    end
    dev&.stop
  end

  def ready_status(runner)
    host, port = runner.metrics_addr
    Net::HTTP.get_response(URI("http://#{host}:#{port}/health/ready")).code.to_i
  end

  def states(runner) = runner.health.map { |h| h[:state].to_s }

  def queue_size(type) = shared_dev.request(:get, "/tasks/queue/size?taskType=#{type}").to_i

  def test_runner_quiet_and_resume_all
    dev = shared_dev
    kept = unique("quiet_a")
    other = unique("quiet_b")
    ConductorWorker.worker(kept, **FAST) { |_, _| {} }
    ConductorWorker.worker(other, **FAST) { |_, _| {} }
    runner = ConductorWorker::Runner.new(servers: [dev.api], metrics_port: 0)
    assert_raises(ConductorWorker::NotRunningError) { runner.quiet }
    assert_raises(ConductorWorker::NotRunningError) { runner.resume_all }
    runner.start
    wait_for(5, "ready") { ready_status(runner) == 200 }
    runner.quiet
    assert_equal %w[paused paused], states(runner)
    assert_equal 503, ready_status(runner)
    sleep 0.5 # a long poll already in flight (0.2 s) still brings what it finds
    dev.enqueue(kept, 2)
    dev.enqueue(other, 1)
    sleep 1
    assert_equal [2, 1], [queue_size(kept), queue_size(other)]
    assert runner.running?

    runner.resume_all
    assert_equal %w[running running], states(runner)
    wait_for(10, "tasks taken after resume_all") { queue_size(kept).zero? && queue_size(other).zero? }
    assert_equal 200, ready_status(runner)

    # resume_all also resumes a worker paused on its own.
    runner.pause(other)
    runner.resume_all
    assert_equal %w[running running], states(runner)
  ensure
    runner.stop(timeout: 5) if runner&.running?
  end

  def test_run_restores_the_previous_tstp_and_cont_handlers
    ConductorWorker.worker(unique("quiet_traps"), **FAST) { |_, _| {} }
    mine = proc {}
    saved = %w[TSTP CONT].to_h { |sig| [sig, trap(sig, mine)] }
    ConductorWorker.run(servers: [shared_dev.api], timeout: 5) { Process.kill("TERM", Process.pid) }
    assert_equal [mine, mine], saved.keys.map { |sig| trap(sig, saved[sig] || "DEFAULT") }
  ensure
    saved&.each { |sig, handler| trap(sig, handler || "DEFAULT") }
  end
end
