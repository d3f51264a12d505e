# frozen_string_literal: true

module ConductorWorker
  # What a worker is: its task type, how its handler runs (threads, fibers or Ractors, and
  # how many) and the core's options for it. Built by ConductorWorker.worker and by classes
  # that include ConductorWorker::Worker; checked here (the core checks its own options) so a
  # mistake is an error at definition time, naming the option.
  class Definition
    ISOLATIONS = %i[threads fibers ractor].freeze
    RUBY_OPTIONS = %i[threads fibers ractors isolation symbolize_keys fiber_scheduler].freeze

    # The core's worker options (concurrency aside: threads, fibers or ractors set it), from
    # the table the core declares, so an option added there is accepted here unchanged.
    def self.core_option_names
      @core_option_names ||= Native.option_tables.fetch("worker").map { |o| o.fetch("name").to_sym } - [:concurrency]
    end

    attr_reader :task_type, :handler, :isolation, :executors, :symbolize_keys, :core_options

    def initialize(task_type, handler, threads: nil, fibers: nil, ractors: nil, isolation: nil,
                   symbolize_keys: false, fiber_scheduler: nil, **core_options)
      unknown = core_options.keys - Definition.core_option_names
      unless unknown.empty?
        raise ArgumentError, "unknown worker option#{"s" if unknown.size > 1} #{unknown.map(&:inspect).join(", ")} " \
                             "for #{task_type.inspect}; known: #{(RUBY_OPTIONS + Definition.core_option_names).join(", ")}"
      end
      unless task_type.is_a?(String) && !task_type.strip.empty?
        raise ArgumentError, "task_type must be a non-empty String, not #{task_type.inspect}"
      end

      @task_type = task_type.dup.freeze
      @handler = handler
      @isolation = pick_isolation(isolation, threads, fibers, ractors)
      @executors = count(@isolation, threads, fibers, ractors)
      @symbolize_keys = symbolize_keys ? true : false
      unless fiber_scheduler.nil? || fiber_scheduler.is_a?(Class) || fiber_scheduler.respond_to?(:call)
        raise ArgumentError, "fiber_scheduler must be a scheduler class or a proc that makes one (each fiber " \
                             "thread needs its own), not #{fiber_scheduler.inspect} (#{task_type})"
      end

      @fiber_scheduler = fiber_scheduler
      @core_options = core_options.freeze
      check_executors
      Native.check_worker_options(@task_type, native_options)
      freeze_handler if @isolation == :ractor
    end

    # The core's options for this worker, as the core takes them.
    def native_options
      @core_options.merge(concurrency: @executors)
    end

    # A fiber scheduler instance for this worker's fiber thread (ours unless one was given).
    def new_fiber_scheduler
      case @fiber_scheduler
      when nil then FiberScheduler.new
      when Class then @fiber_scheduler.new
      else @fiber_scheduler.call
      end
    end

    private

    def pick_isolation(isolation, threads, fibers, ractors)
      isolation = isolation.to_sym if isolation.respond_to?(:to_sym)
      isolation = :ractor if isolation == :ractors
      isolation ||= if ractors then :ractor
                    elsif fibers then :fibers
                    else :threads
                    end
      unless ISOLATIONS.include?(isolation)
        raise ArgumentError, "isolation must be :threads, :fibers or :ractor, not #{isolation.inspect} (#{task_type})"
      end

      given = { threads: threads, fibers: fibers, ractors: ractors }.compact.keys
      expected = { threads: :threads, fibers: :fibers, ractor: :ractors }.fetch(isolation)
      extra = given - [expected]
      unless extra.empty?
        raise ArgumentError, "#{task_type}: #{extra.join(" and ")} cannot be combined with isolation #{isolation.inspect}"
      end

      isolation
    end

    def count(isolation, threads, fibers, ractors)
      case isolation
      when :threads then threads || 1
      when :fibers then fibers || 100
      else ractors || Etc.nprocessors
      end
    end

    def check_executors
      name = { threads: "threads", fibers: "fibers", ractor: "ractors" }.fetch(@isolation)
      return if @executors.is_a?(Integer) && @executors.between?(1, 100_000)

      raise ArgumentError, "#{name} must be an Integer from 1 to 100000, not #{@executors.inspect} (#{task_type})"
    end

    # Ractors run the handler in isolation: it must be a class (shareable) or a shareable proc.
    def freeze_handler
      return if @handler.is_a?(Class)

      @handler = Ractor.make_shareable(@handler)
    rescue Ractor::IsolationError, Ractor::Error => e
      raise ArgumentError,
            "#{task_type}: a block for isolation: :ractor must be shareable (#{e.message}). Define it where " \
            "self is shareable, e.g. inside a module or class body, and use no outer local variables, or " \
            "use a class that includes ConductorWorker::Worker"
    end
  end

  @definitions = {}
  @definitions_lock = Mutex.new

  class << self
    # Defines a worker for +task_type+ whose block runs each task. The block gets the task's
    # input Hash and the Task (or the input as keyword arguments, when it declares keywords).
    #
    #   ConductorWorker.worker("greet", threads: 10) do |input, task|
    #     { greeting: "hello #{input["name"]}" }
    #   end
    #
    # Options: +threads:+ (default 1), +fibers:+ (I/O-bound blocks on fibers), +isolation:
    # :ractor+ with +ractors:+ (CPU-bound blocks in parallel), +symbolize_keys:+, and the
    # core's worker options (ConductorWorker.worker_options lists them): +poll_interval:+,
    # +poll_timeout:+ (seconds), +domain:+, +worker_id:+, +lease_extend:+, +paused:+,
    # +register:+ (true, or a Hash of task definition fields).
    def worker(task_type, **options, &block)
      raise ArgumentError, "ConductorWorker.worker(#{task_type.inspect}) needs a block" unless block

      define(Definition.new(task_type, block, **options))
    end

    # The core's worker options, as it declares them: Hashes with "name", "doc", "ruby_type",
    # "env" (property names, read as CONDUCTOR_WORKER_<TYPE>_<PROP>) and "default".
    def worker_options = Native.option_tables.fetch("worker")

    # The core's runtime options (Runner.new), as +worker_options+ lists the worker's; "env"
    # holds the environment variable of each.
    def runtime_options = Native.option_tables.fetch("runtime")

    # Every worker defined in this process so far, by task type.
    def definitions
      @definitions_lock.synchronize { @definitions.values }
    end

    # Forgets every defined worker (for tests).
    def clear_definitions
      @definitions_lock.synchronize { @definitions.clear }
    end

    def define(definition) # :nodoc:
      @definitions_lock.synchronize { @definitions[definition.task_type] = definition }
      definition
    end
  end

  # Include in a class to make it a worker: declare the task type with +task_type+ and
  # implement +execute(input, task)+ (or with keyword arguments). One instance per executor
  # thread, fiber pool or Ractor.
  #
  #   class Resize
  #     include ConductorWorker::Worker
  #     task_type "resize_image", threads: 4
  #     def execute(input, task) = { ok: true }
  #   end
  module Worker
    def self.included(base)
      base.extend(ClassMethods)
    end

    # The class-level DSL.
    module ClassMethods
      def task_type(name = nil, **options)
        return @conductor_definition&.task_type if name.nil?

        @conductor_definition = ConductorWorker.define(Definition.new(name, self, **options))
      end
    end
  end
end
