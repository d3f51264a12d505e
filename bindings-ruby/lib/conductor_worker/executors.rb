# frozen_string_literal: true

module ConductorWorker
  # The three ways a worker's tasks run. Each pulls tasks from its Native::Worker (the core
  # never calls Ruby) and hands every one to Execution.run. +start+ returns what +join+ waits
  # for; every executor ends once its worker stops or is interrupted.
  module Executors
    # +executors+ Ruby threads, each taking one task at a time. A thread waits for a task
    # with the GVL released, so other threads (and other workers) run meanwhile.
    class Threads
      def initialize(definition, native)
        @definition = definition
        @native = native
      end

      def start
        @threads = Array.new(@definition.executors) do |i|
          Thread.new do
            Thread.current.name = "cw-#{@definition.task_type}-#{i}"
            Thread.current.report_on_exception = true
            run
          end
        end
      end

      def join(deadline)
        @threads.all? { |t| t.join(Executors.left(deadline)) }
      end

      def kill
        @threads.each(&:kill)
      end

      private

      def run
        handler = Executors.instance(@definition.handler)
        symbolize = @definition.symbolize_keys
        loop do
          tasks = @native.ready_tasks(1)
          tasks = @native.next_tasks(1, nil) if tasks&.empty?
          break if tasks.nil?

          tasks.each { |task| Execution.run(@native, handler, task, symbolize) }
        end
      end
    end

    # One thread running up to +executors+ tasks at once on fibers under a fiber scheduler:
    # for blocks that mostly wait (HTTP calls, sleeps). A feeder fiber takes tasks from the
    # core and starts a fiber for each; it waits in the core only when no task is running,
    # and otherwise looks for new tasks every POLL seconds, so any scheduler can drive it.
    class Fibers
      POLL = 0.002

      def initialize(definition, native)
        @definition = definition
        @native = native
      end

      def start
        @thread = Thread.new do
          Thread.current.name = "cw-#{@definition.task_type}-fibers"
          Thread.current.report_on_exception = true
          Fiber.set_scheduler(@definition.new_fiber_scheduler)
          Fiber.schedule { feed }
          # The thread ends here: Ruby closes the scheduler, which runs every fiber to its end.
        end
        [@thread]
      end

      def join(deadline)
        !@thread.join(Executors.left(deadline)).nil?
      end

      def kill
        @thread.kill
      end

      private

      def feed
        handler = Executors.instance(@definition.handler)
        limit = @definition.executors
        symbolize = @definition.symbolize_keys
        running = 0
        loop do
          free = limit - running
          tasks = if free.zero? then []
                  elsif running.zero? then @native.next_tasks(free, nil)
                  else @native.ready_tasks(free)
                  end
          break if tasks.nil?

          tasks.each do |task|
            running += 1
            Fiber.schedule do
              Execution.run(@native, handler, task, symbolize)
            ensure
              running -= 1
            end
          end
          sleep POLL if tasks.empty?
        end
      end
    end

    # +executors+ Ractors, each pulling tasks from the shared (frozen) native worker and
    # running the handler in parallel with the others: CPU-bound Ruby on every core.
    class Ractors
      def initialize(definition, native)
        @definition = definition
        @native = Ractor.make_shareable(native)
      end

      def start
        @ractors = without_experimental_warning do
          Array.new(@definition.executors) do |i|
            Ractor.new(@native, @definition.handler, @definition.symbolize_keys,
                       name: "cw-#{@definition.task_type}-#{i}") do |native, handler, symbolize|
              executor = handler.is_a?(Class) ? handler.new : handler
              loop do
                tasks = native.next_tasks(1, nil)
                break if tasks.nil?

                tasks.each { |task| ConductorWorker::Execution.run(native, executor, task, symbolize) }
              end
              :stopped
            end
          end
        end
      end

      def join(deadline)
        # Ractor#take has no timeout: wait for each in a thread of its own.
        @waiters ||= @ractors.map { |r| Thread.new { r.take } }
        @waiters.all? { |t| t.join(Executors.left(deadline)) }
      end

      def kill
        # A Ractor cannot be killed from outside; interrupting the worker ends its wait, and
        # one running a task ends after it.
        @native.interrupt
      end

      private

      def without_experimental_warning
        previous = Warning[:experimental]
        Warning[:experimental] = false
        yield
      ensure
        Warning[:experimental] = previous
      end
    end

    CLASSES = { threads: Threads, fibers: Fibers, ractor: Ractors }.freeze

    def self.for(definition, native)
      CLASSES.fetch(definition.isolation).new(definition, native)
    end

    # The object whose +execute+ runs tasks: a block as it is, a worker class instantiated.
    def self.instance(handler)
      handler.is_a?(Class) ? handler.new : handler
    end

    # Seconds left until +deadline+ (monotonic), nil for no deadline.
    def self.left(deadline)
      deadline && [deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC), 0].max
    end
  end
end
