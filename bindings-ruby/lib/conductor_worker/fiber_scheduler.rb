# frozen_string_literal: true

module ConductorWorker
  # A small Fiber::Scheduler, so the +fibers:+ executor runs I/O-bound workers on fibers with
  # nothing but Ruby's standard library: sleeps, IO waits (sockets, pipes: Net::HTTP and
  # friends), Queue/Mutex/ConditionVariable waits, and wake-ups from other threads. Any other
  # scheduler can take its place (+fiber_scheduler:+, e.g. the async gem's), and this one
  # works outside the gem too:
  #
  #   Thread.new do
  #     Fiber.set_scheduler(ConductorWorker::FiberScheduler.new)
  #     3.times { |i| Fiber.schedule { sleep 1; puts i } }
  #   end.join   # about 1 s: the fibers slept together
  class FiberScheduler
    def initialize
      @readable = {} # fiber => io
      @writable = {} # fiber => io
      @timers = [] # [deadline, fiber], sorted
      @ready = []
      @blocked = {}.compare_by_identity
      @wakeups = Thread::Queue.new # fibers unblocked from other threads
      @wake_r, @wake_w = IO.pipe
      @fibers = 0
    end

    # Runs until every fiber has finished (Ruby calls it through #close when the thread that
    # set the scheduler ends).
    def run
      run_once until @fibers.zero?
    end

    # --- Fiber::Scheduler interface ---

    def fiber(&block)
      fiber = Fiber.new(blocking: false) do
        block.call
      ensure
        @fibers -= 1
      end
      @fibers += 1
      fiber.resume
      fiber
    end

    # Returns the whole seconds slept, as Kernel#sleep does.
    def kernel_sleep(duration = nil)
      started = now
      if duration
        add_timer(duration, Fiber.current)
        Fiber.yield
      else
        block(:sleep)
      end
      (now - started).round
    end

    def block(_blocker, timeout = nil)
      fiber = Fiber.current
      @blocked[fiber] = true
      add_timer(timeout, fiber) if timeout
      Fiber.yield
    ensure
      @blocked.delete(fiber)
      @timers.reject! { |_, f| f.equal?(fiber) } if timeout
    end

    def unblock(_blocker, fiber)
      @wakeups << fiber
      @wake_w.write_nonblock(".", exception: false)
    end

    def io_wait(io, events, timeout)
      fiber = Fiber.current
      @readable[fiber] = io if events.anybits?(IO::READABLE | IO::PRIORITY)
      @writable[fiber] = io if events.anybits?(IO::WRITABLE)
      add_timer(timeout, fiber) if timeout
      Fiber.yield
      ready = 0
      ready |= IO::READABLE if @io_ready&.dig(0)&.include?(io)
      ready |= IO::WRITABLE if @io_ready&.dig(1)&.include?(io)
      ready.zero? ? false : ready
    ensure
      @readable.delete(fiber)
      @writable.delete(fiber)
      @timers.reject! { |_, f| f.equal?(fiber) } if timeout
    end

    def close
      run
      @wake_r.close
      @wake_w.close
    end

    private

    # Resumes what is ready, waiting for IO or the next timer first when nothing is.
    def run_once
      wait = @ready.empty? && @wakeups.empty? ? next_timer_in : 0
      select_io(wait)
      fire_timers
      drain_wakeups
      ready = @ready
      @ready = []
      ready.each { |fiber| fiber.resume if fiber.alive? }
    end

    def next_timer_in
      @timers.first && [@timers.first[0] - now, 0].max
    end

    def now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    def add_timer(seconds, fiber)
      entry = [now + seconds, fiber]
      index = @timers.bsearch_index { |deadline, _| deadline > entry[0] } || @timers.size
      @timers.insert(index, entry)
    end

    def select_io(wait)
      readers = [@wake_r, *@readable.values]
      ready = IO.select(readers, @writable.values, nil, wait)
      @io_ready = ready
      return unless ready

      @wake_r.read_nonblock(1024, exception: false) if ready[0].include?(@wake_r)
      @readable.each { |fiber, io| @ready << fiber if ready[0].include?(io) }
      @writable.each { |fiber, io| @ready << fiber if ready[1].include?(io) }
    end

    def fire_timers
      t = now
      @ready << @timers.shift[1] while @timers.first && @timers.first[0] <= t
    end

    def drain_wakeups
      @ready << @wakeups.pop until @wakeups.empty?
      @ready.uniq!
    end
  end
end
