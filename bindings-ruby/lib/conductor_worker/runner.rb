# frozen_string_literal: true

module ConductorWorker
  # Runs workers: one core runtime (servers, polling, result delivery) and the executors of
  # each worker. ConductorWorker.run is this plus signal handling.
  #
  #   runner = ConductorWorker::Runner.new(servers: ["http://localhost:8080/api"])
  #   runner.start
  #   ...
  #   runner.stop(timeout: 30)   # running tasks finish, results are delivered
  #
  # Before a deploy, runner.quiet stops polling and lets running tasks finish while the process
  # stays up; runner.resume_all polls again (ConductorWorker.run does these on TSTP and CONT).
  #
  # Or with a block, stopped when the block returns:
  #
  #   ConductorWorker::Runner.open { |runner| wait_for_something }
  class Runner
    # +workers+: the definitions to run (default: every worker defined so far). +options+: the
    # core's runtime options (ConductorWorker.runtime_options lists them with their defaults and
    # environment variables), e.g. +servers:+ (URLs, or Hashes with +url:+, +key_id:+,
    # +key_secret:+; default CONDUCTOR_SERVER_URL), +journal:+ (a path or "off"),
    # +metrics_port:+, +request_timeout:+, +external_payload_threshold_kb:+ (outputs larger than
    # this are uploaded to the server's external payload storage where it takes uploads).
    def initialize(workers: nil, **options)
      @definitions = (workers || ConductorWorker.definitions).map { |w| definition_of(w) }
      raise ArgumentError, "no workers to run: define some with ConductorWorker.worker first" if @definitions.empty?

      @native = Native::Runtime.new(native_options(options))
      @workers = @definitions.to_h { |d| [d.task_type, @native.add_worker(d.task_type, d.native_options)] }
      @listeners = []
      @state = :new
      @lock = Mutex.new
    end

    # Starts with a block: yields the runner and stops it when the block ends.
    def self.open(**options)
      runner = new(**options).start
      return runner unless block_given?

      begin
        yield runner
      ensure
        runner.stop
      end
    end

    # The servers, as URLs.
    def servers = @native.status.fetch(:servers)

    # Starts polling and the executors; returns self.
    def start
      @lock.synchronize do
        raise Error, "this runner was already started" unless @state == :new

        LogForwarding.start
        start_events unless @listeners.empty?
        @native.start
        @executors = @definitions.map { |d| Executors.for(d, @workers.fetch(d.task_type)) }
        @executors.each(&:start)
        @state = :running
      end
      self
    end

    def running? = @state == :running

    # Drains: polling stops, running tasks get +timeout+ seconds to finish and their results
    # are delivered (or journalled). Returns the core's report (+abandoned_tasks+,
    # +journalled_results+, +returned_tasks+).
    def stop(timeout: 30)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
      report = @native.stop(timeout.to_f)
      join(Executors.left(deadline)) || kill_executors
      @state = :stopped
      @events_thread&.kill
      report
    end

    # Stops at once: running tasks are abandoned (the server hands them out again).
    def kill
      report = @native.kill
      kill_executors
      @state = :stopped
      @events_thread&.kill
      report
    end

    # Waits until every executor has ended (after stop, or when the workers stop); true if
    # they did within +timeout+ seconds (nil: no limit).
    def join(timeout = nil)
      return true unless @executors

      deadline = timeout && (Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout)
      @executors.all? { |e| e.join(deadline) }
    end

    # One Hash per worker: state, last successful poll, errors, running and buffered tasks.
    def health = @native.health

    def healthy? = @native.status.fetch(:healthy)

    # Results handed back but not yet accepted by their server.
    def pending_results = @native.status.fetch(:pending_results)

    # The Prometheus text of the core's metrics.
    def metrics_text = @native.metrics_text

    # [host, port] of the metrics and health endpoint (with +metrics_port:+), once started.
    def metrics_addr = @native.status.fetch(:metrics_addr)

    def pause(task_type) = worker(task_type).pause

    def resume(task_type) = worker(task_type).resume

    # Quiets the runner before a deploy (Sidekiq's TSTP; ConductorWorker.run does it on TSTP):
    # every worker stops polling, running tasks finish and their results are delivered, and the
    # process stays up; the readiness probe (/health/ready with +metrics_port:+) answers 503
    # from now on. #stop then drains as usual; #resume_all undoes it. Start the runner first.
    def quiet = started_native.quiet

    # Every worker polls again, after #quiet or #pause (ConductorWorker.run does it on CONT).
    def resume_all = started_native.resume_all

    # Registers task definitions (Hashes in the server's field names, with "name").
    def register_task_defs(definitions) = @native.register_task_defs(definitions)

    # Calls the block with (kind, fields) for every runtime event, on a thread of its own:
    # :poll_completed, :execution_failed, :update_delivered, :circuit_state_changed, ...
    # Register before start.
    def on_event(&block)
      raise ArgumentError, "on_event needs a block" unless block
      raise Error, "register event listeners before start" unless @state == :new

      @listeners << block
      self
    end

    def inspect
      "#<#{self.class} state=#{@state} servers=#{servers.inspect} workers=#{@workers.keys.inspect}>"
    end

    private

    def worker(task_type)
      @workers.fetch(task_type) { raise ArgumentError, "no worker for task type #{task_type.inspect}" }
    end

    def started_native
      raise NotRunningError, "start the runner first" if @state == :new

      @native
    end

    def kill_executors
      @executors&.each(&:kill)
    end

    def definition_of(worker)
      case worker
      when Definition then worker
      when Class
        worker.instance_variable_get(:@conductor_definition) or
          raise ArgumentError, "#{worker} has no task_type: include ConductorWorker::Worker and call task_type"
      else raise ArgumentError, "workers: expected definitions or worker classes, not #{worker.inspect}"
      end
    end

    # The runtime options as the core takes them: servers as [url, key_id, key_secret], a
    # journal path as a String.
    def native_options(options)
      options.merge(servers: server_specs(options[:servers]), journal: options[:journal]&.to_s)
    end

    def server_specs(servers)
      return nil if servers.nil?

      Array(servers).map do |s|
        case s
        when String then [s, nil, nil]
        when Hash
          s = s.transform_keys(&:to_sym)
          [s.fetch(:url) { raise ArgumentError, "server #{s.inspect} has no :url" }, s[:key_id], s[:key_secret]]
        else raise ArgumentError, "servers: expected URLs or Hashes with :url, not #{s.class}"
        end
      end
    end

    def start_events
      @native.listen
      listeners = @listeners.dup.freeze
      @events_thread = Thread.new do
        Thread.current.name = "cw-events"
        loop do
          @native.next_events(1024, 1.0).each do |kind, fields|
            listeners.each do |listener|
              listener.call(kind, fields)
            rescue StandardError => e
              ConductorWorker.logger.error("an event listener raised #{e.class}: #{e.message}")
            end
          end
        end
      end
    end
  end

  class << self
    # Runs the defined workers until INT or TERM, then drains (a second INT kills); returns
    # the drain's report. As in Sidekiq, TSTP quiets the process before a deploy
    # (Runner#quiet: no more polling, running tasks finish, the process stays up) and CONT
    # makes it poll again (Runner#resume_all); TERM then drains and exits as always. The
    # previous handlers of the four signals are restored at the end. Options are Runner's, plus
    # +timeout:+ for the drain. A block is called with the runner once it has started.
    #
    #   ConductorWorker.worker("greet") { |input, _| { greeting: "hello #{input["name"]}" } }
    #   ConductorWorker.run { puts "ready" }
    def run(timeout: 30, **options)
      runner = Runner.new(**options)
      signals = Thread::Queue.new
      # The handlers only queue the signal: the main thread acts on it (a trap handler must not
      # call into the core, which may be holding the lock it would wait for).
      previous = %w[INT TERM TSTP CONT].to_h { |sig| [sig, trap(sig) { signals << sig }] }
      runner.start
      yield runner if block_given?
      wait_and_drain(runner, signals, timeout)
    ensure
      previous&.each { |sig, handler| trap(sig, handler || "DEFAULT") }
    end

    private

    # What run does on TSTP and CONT (until INT or TERM), and what it logs.
    QUIET_SIGNALS = {
      "TSTP" => [:quiet, "TSTP: quiet, running tasks finish (CONT polls again, TERM drains and exits)"],
      "CONT" => [:resume_all, "CONT: polling again"]
    }.freeze
    private_constant :QUIET_SIGNALS

    def wait_and_drain(runner, signals, timeout)
      signal = wait_for_stop(runner, signals)
      logger.info("#{signal}: draining (send INT again to stop at once)")
      stopper = Thread.new { runner.stop(timeout: timeout) }
      until stopper.join(0.1)
        next if signals.empty?

        signal = signals.pop
        next if QUIET_SIGNALS.key?(signal) # quiet or not, the drain goes on

        logger.warn("#{signal}: stopping at once")
        runner.kill
        stopper.kill
        return nil
      end
      stopper.value
    end

    # Quiets and resumes the runner on TSTP and CONT; returns the INT or TERM that ends the wait.
    def wait_for_stop(runner, signals)
      loop do
        signal = signals.pop
        action, message = QUIET_SIGNALS[signal]
        return signal unless action

        logger.info(message)
        runner.public_send(action)
      end
    end
  end
end
