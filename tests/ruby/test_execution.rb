# frozen_string_literal: true

require_relative "helper"

# Where and how blocks run: threads that wait without the GVL, fibers, Ractors.
class TestExecution < Minitest::Test
  def dev = shared_dev

  def monotonic = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  def test_other_ruby_threads_keep_running_while_every_worker_waits_for_tasks
    ConductorWorker.worker(unique("idle"), threads: 8) { |_, _| {} }
    ConductorWorker.worker(unique("idle_fibers"), fibers: 10) { |_, _| {} }
    runner = ConductorWorker::Runner.new(servers: [dev.api]).start
    sleep 0.3 # every executor is now waiting in the core
    count = 0
    counter = Thread.new { loop { count += 1 } }
    sleep 0.5
    counter.kill
    # With the GVL held by a waiting worker the counter would advance only at the 100 ms
    # thread switches (a few hundred thousand); released, it runs freely.
    assert_operator count, :>, 2_000_000, "a Ruby thread made only #{count} steps in 0.5 s while workers waited"
  ensure
    runner&.stop(timeout: 5)
  end

  def with_waiting_native_worker
    runtime = ConductorWorker::Native::Runtime.new({ servers: [dev.api], journal: "off" })
    worker = runtime.add_worker(unique("wait"), {})
    runtime.start
    yield worker
  ensure
    runtime&.stop(1.0)
  end

  def test_thread_kill_ends_a_waiting_worker_promptly
    with_waiting_native_worker do |worker|
      waiter = Thread.new { worker.next_tasks(1, nil) }
      sleep 0.3
      assert_equal "sleep", waiter.status, "the thread waits in the core"
      t0 = monotonic
      waiter.kill
      assert waiter.join(2), "the killed thread ended"
      assert_operator monotonic - t0, :<, 0.5
    end
  end

  def test_thread_raise_reaches_a_waiting_worker
    with_waiting_native_worker do |worker|
      waiter = Thread.new do
        worker.next_tasks(1, nil)
        :returned
      rescue IOError => e
        e.message
      end
      sleep 0.3
      waiter.raise(IOError, "wake up")
      assert_equal "wake up", waiter.value
    end
  end

  # A task object garbage-collected without a result (its thread was killed before running it)
  # abandons its task: the lease is not extended, and the server hands the task out again
  # after its response timeout.
  def test_a_task_dropped_without_a_result_is_abandoned_so_the_server_hands_it_out_again
    type = unique("dropped")
    runtime = ConductorWorker::Native::Runtime.new({ servers: [dev.api], journal: "off" })
    worker = runtime.add_worker(type, { poll_timeout: 0.2 })
    runtime.start
    extensions = dev.stats.dig("updates", "lease_extensions")
    dev.enqueue(type, 1, {}, responseTimeoutSeconds: 1, retryCount: 1)
    first = Thread.new { worker.next_tasks(1, 10).first.task_id }.value # garbage once the thread ends
    again = wait_for(15, "the abandoned task handed out again") do
      GC.start
      worker.next_tasks(1, 0.5)&.first
    end
    assert(again.task_id != first || again.poll_count > 1)
    assert_equal extensions, dev.stats.dig("updates", "lease_extensions"), "the abandoned task's lease was extended"
    assert_includes runtime.metrics_text, "task_abandoned_total{taskType=\"#{type}\"} 1"
    worker.complete(again, "COMPLETED", nil, nil, nil, nil)
    assert_raises(ConductorWorker::UnknownTaskError) { worker.complete(again, "COMPLETED", nil, nil, nil, nil) }
  ensure
    runtime&.stop(1.0)
  end

  def test_interrupt_ends_waits_with_nil
    with_waiting_native_worker do |worker|
      waiter = Thread.new { worker.next_tasks(1, nil) }
      sleep 0.2
      worker.interrupt
      assert waiter.join(2)
      assert_nil waiter.value
      assert_nil worker.next_tasks(1, 5), "later waits end at once too"
    end
  end

  def test_fibers_run_many_sleeping_tasks_at_once_on_one_thread
    type = unique("fiber_sleep")
    threads = Queue.new
    ConductorWorker.worker(type, fibers: 200) do |_, _|
      threads << Thread.current.object_id
      sleep 0.5
      { fiber: !Fiber.current.blocking? }
    end
    runner = ConductorWorker::Runner.new(servers: [dev.api]).start
    t0 = monotonic
    before = dev.stats["tasks"]["completed"]
    dev.enqueue(type, 200)
    dev.wait_completed(before + 200, within: 20)
    elapsed = monotonic - t0
    # One at a time this is 100 s; 200 at once about 0.5 s plus polling.
    assert_operator elapsed, :<, 5, "200 tasks of 0.5 s on 200 fibers took #{elapsed.round(2)} s"
    ids = []
    ids << threads.pop until threads.empty?
    assert_equal 1, ids.uniq.size, "all on the worker's one fiber thread"
  ensure
    runner&.stop(timeout: 5)
  end

  def test_fibers_wait_on_io_and_queues_without_blocking_each_other
    type = unique("fiber_io")
    ConductorWorker.worker(type, fibers: 20) do |input, _|
      reader, writer = IO.pipe
      queue = Thread::Queue.new
      Thread.new { sleep 0.2; writer.write("x" * input["n"]); writer.close; queue << :done }
      data = reader.read
      { bytes: data.size, signal: queue.pop.to_s }
    end
    runner = ConductorWorker::Runner.new(servers: [dev.api]).start
    wfs = dev.run_tasks(type, (1..10).map { |n| { n: n } })
    outputs = wfs.map { |wf| dev.task_of(wf)["outputData"] }
    assert_equal((1..10).map { |n| { "bytes" => n, "signal" => "done" } }, outputs)
  ensure
    runner&.stop(timeout: 5)
  end

  # Another scheduler in place of the gem's: here one that counts the fibers it starts.
  class CountingScheduler < ConductorWorker::FiberScheduler
    STARTED = Queue.new

    def fiber(&block)
      STARTED << true
      super
    end
  end

  def test_fibers_run_under_the_scheduler_given
    type = unique("own_scheduler")
    ConductorWorker.worker(type, fibers: 5, fiber_scheduler: CountingScheduler) do |_, _|
      sleep(0.01)
      { ok: 1 }
    end
    ConductorWorker::Runner.open(servers: [dev.api]) do
      wfs = dev.run_tasks(type, [{ a: 1 }, { a: 2 }, { a: 3 }])
      assert_equal [{ "ok" => 1 }] * 3, wfs.map { |wf| dev.task_of(wf)["outputData"] }
    end
    assert_operator CountingScheduler::STARTED.size, :>=, 4, "the feeder and a fiber per task"
  end

  # A shareable handler: built where self is a module, so Ractors may run it.
  module Handlers
    PRIME_COUNT = Ractor.make_shareable(proc do |input, _task|
      n = input["n"]
      { primes: (2..n).count { |i| (2..Integer.sqrt(i)).none? { |d| (i % d).zero? } }, ractor: Ractor.current.name }
    end)
  end

  class PrimeWorker
    include ConductorWorker::Worker

    def execute(input, _task) = { primes: (2..input["n"]).count { |i| (2..Integer.sqrt(i)).none? { |d| (i % d).zero? } } }
  end

  def test_ractor_workers_run_blocks_and_classes_and_stop_cleanly
    block_type = unique("ractor_block")
    class_type = unique("ractor_class")
    ConductorWorker.worker(block_type, isolation: :ractor, ractors: 2, &Handlers::PRIME_COUNT)
    PrimeWorker.task_type(class_type, isolation: :ractor, ractors: 2)
    events = Queue.new
    runner = ConductorWorker::Runner.new(servers: [dev.api])
    runner.on_event { |kind, fields| events << fields[:task_id] if kind == :execution_completed }
    runner.start
    wfs = dev.run_tasks(block_type, [{ n: 1000 }] * 6) + dev.run_tasks(class_type, [{ n: 100 }] * 6)
    outputs = wfs.map { |wf| dev.task_of(wf)["outputData"] }
    assert_equal [168] * 6 + [25] * 6, outputs.map { |o| o["primes"] }
    assert_operator outputs.first(6).map { |o| o["ractor"] }.uniq.size, :>=, 1
    t0 = monotonic
    runner.stop(timeout: 5)
    assert runner.join(5), "every Ractor ended"
    assert_operator monotonic - t0, :<, 5
    wait_for(5, "events from the Ractors' tasks reached the main Ractor") { events.size >= 12 }
  end

  def test_a_block_that_is_not_shareable_is_refused_for_ractors_with_a_clear_error
    local = "captured"
    error = assert_raises(ArgumentError) do
      ConductorWorker.worker(unique("r"), isolation: :ractor) { |_, _| { local: local } }
    end
    assert_match(/a block for isolation: :ractor must be shareable/, error.message)
    assert_match(/ConductorWorker::Worker/, error.message)
  end
end
