# frozen_string_literal: true

module ConductorWorker
  # Root of every error this gem raises. The extension raises the subclasses below for the
  # matching core errors, with the attributes a caller may branch on.
  # +retryable+: whether trying the same operation again later can succeed.
  class Error < StandardError
    attr_reader :retryable
  end

  # A setting is invalid; +setting+ names it (an option or an environment variable).
  class ConfigError < Error
    attr_reader :setting, :value
  end

  # A request could not be sent or its answer not received.
  class TransportError < Error
    attr_reader :server, :timed_out
  end

  # A server answered with an unexpected HTTP status.
  class StatusError < Error
    attr_reader :server, :status, :endpoint
  end

  # A server's answer could not be decoded.
  class DecodeError < Error
    attr_reader :server, :endpoint
  end

  # Authentication with a server failed.
  class AuthError < Error
    attr_reader :server, :retry_in
  end

  # A result for a task this process does not hold (never handed out, or already completed).
  class UnknownTaskError < Error
    attr_reader :task_type, :task_id
  end

  # The runtime is not running (not started yet, or stopped); +state+ says which.
  class NotRunningError < Error
    attr_reader :state
  end

  # The result journal could not be read or written.
  class JournalError < Error
    attr_reader :path
  end

  # The metrics endpoint could not be started.
  class MetricsError < Error
    attr_reader :port
  end

  # Raise in a worker to fail the task for good: the server does not retry it.
  class NonRetryableError < StandardError; end

  # Raise (or return) in a worker to keep the task in progress: the server hands it out
  # again after +callback_after_seconds+, with +output+ stored on the task.
  #
  #   ConductorWorker.worker("poll_job") do |input, task|
  #     next { done: true } if job_done?(input["job"])
  #     raise ConductorWorker::TaskInProgress.new(callback_after_seconds: 30, output: { checks: task.poll_count })
  #   end
  class TaskInProgress < StandardError
    attr_reader :callback_after_seconds, :output

    def initialize(callback_after_seconds: 0, output: {})
      unless callback_after_seconds.is_a?(Integer) && callback_after_seconds >= 0
        raise ArgumentError, "callback_after_seconds must be an Integer >= 0, not #{callback_after_seconds.inspect}"
      end

      @callback_after_seconds = callback_after_seconds
      @output = output
      super("task in progress, call back after #{callback_after_seconds} s")
    end
  end
end
