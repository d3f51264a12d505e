# frozen_string_literal: true

require "logger"

module ConductorWorker
  # The core's log records, forwarded to ConductorWorker.logger by one thread per process
  # (started again in a forked child). The core formats and queues records only at the level
  # asked for, so a quiet logger costs nothing on the hot path.
  module LogForwarding
    LEVELS = { trace: Logger::DEBUG, debug: Logger::DEBUG, info: Logger::INFO,
               warn: Logger::WARN, error: Logger::ERROR }.freeze
    # By Logger level number: DEBUG (0) to UNKNOWN (5).
    NAMES = %w[debug info warn error fatal off].freeze

    @lock = Mutex.new
    @pid = nil

    class << self
      # Makes the core collect records at the logger's level (or ConductorWorker.log_level)
      # and starts the forwarding thread of this process if it is not running.
      def start
        Native.collect_logs(core_level.to_s)
        @lock.synchronize do
          return if @pid == Process.pid && @thread&.alive?

          @pid = Process.pid
          @thread = Thread.new { forward }
          @thread.name = "cw-logs"
        end
      end

      # The level the core collects at: ConductorWorker.log_level, else the logger's own.
      def core_level
        ConductorWorker.log_level || NAMES.fetch(ConductorWorker.logger.level, "off").to_sym
      end

      private

      def forward
        loop do
          Native.next_log_records(512, 1.0).each do |level, target, message, _created|
            ConductorWorker.logger.add(LEVELS.fetch(level, Logger::INFO), message, target)
          end
        rescue StandardError => e
          warn "conductor_worker: log forwarding failed: #{e.class}: #{e.message}"
          sleep 1
        end
      end
    end
  end

  @logger = Logger.new($stderr, level: Logger::WARN, progname: "conductor_worker")
  @log_level = nil

  class << self
    # Where the core's logs go (a Logger; default: $stderr at WARN). Takes effect at the next
    # Runner#start.
    attr_accessor :logger

    # Overrides the level taken from the logger: :trace, :debug, :info, :warn, :error or :off.
    attr_reader :log_level

    def log_level=(level)
      unless level.nil? || %i[trace debug info warn error off].include?(level.to_sym)
        raise ArgumentError, "log_level must be :trace, :debug, :info, :warn, :error or :off, not #{level.inspect}"
      end

      @log_level = level&.to_sym
    end
  end
end
