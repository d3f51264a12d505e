# frozen_string_literal: true

module ConductorWorker
  # Runs one task through its handler and hands the outcome to the core: the one place that
  # maps input to arguments and return values and exceptions to results. Used by every
  # executor (threads, fibers, Ractors), so it keeps no state and touches nothing that is not
  # shareable.
  module Execution
    BACKTRACE_LINES = 30

    module_function

    # +handler+ is a Proc or an object with +execute+; +native+ the Native::Worker.
    def run(native, handler, task, symbolize_keys)
      ConductorWorker.current_task = task
      outcome = begin
        call(handler, task, symbolize_keys)
      rescue TaskInProgress => e
        e
      rescue NonRetryableError => e
        [:terminal, e]
      rescue StandardError, ScriptError => e
        [:failed, e]
      end
      deliver(native, task, outcome)
    rescue StandardError => e
      # One task must never end its executor. Whatever was not handed over is failed by the
      # task object when it is collected, so the server hands the task out again.
      warn "conductor_worker: the result of task #{task.task_id} (#{task.task_type}) could not be handed " \
           "to the core: #{e.class}: #{e.message}"
    ensure
      ConductorWorker.current_task = nil
      outcome = nil # the output must not stay reachable from this frame while collecting
      collect_large_payload(task)
    end

    # A large input, and the output made from it, are garbage once the task has ended: collect
    # them now. Ruby would otherwise collect them only when its malloc accounting gets round to
    # it, after they may have aged into the old generation, and a worker taking 8 MB payloads
    # would hold several of them at once (bench/README.md, payload-8mb).
    def collect_large_payload(task)
      return unless task.large_input?

      task.release_input
      GC.start
    end

    def call(handler, task, symbolize_keys)
      callable = handler.is_a?(Proc) ? handler : handler.method(:execute)
      keywords = callable.parameters.select { |kind, _| %i[key keyreq keyrest].include?(kind) }
      return callable.call(task.input_data(symbolize_keys: symbolize_keys), task) if keywords.empty?

      input = task.input_data(symbolize_keys: true)
      missing = keywords.select { |kind, _| kind == :keyreq }.map(&:last) - input.keys
      unless missing.empty?
        return [:misfit, "input does not fit #{task.task_type}: missing #{missing.map(&:to_s).join(", ")} " \
                         "(the input has #{input.keys.map(&:to_s).join(", ").then { |k| k.empty? ? "no keys" : k }})"]
      end

      unless keywords.any? { |kind, _| kind == :keyrest }
        declared = keywords.map(&:last)
        input = input.slice(*declared)
      end
      positional = callable.parameters.count { |kind, _| %i[req opt].include?(kind) }
      positional.zero? ? callable.call(**input) : callable.call(task, **input)
    end

    def deliver(native, task, outcome)
      case outcome
      in TaskInProgress
        native.complete(task, "IN_PROGRESS", outcome.output, nil, outcome.callback_after_seconds, nil)
      in [:terminal, error]
        native.complete(task, "FAILED_WITH_TERMINAL_ERROR", nil, reason(error), nil, backtrace(error))
      in [:failed, error]
        native.complete(task, "FAILED", nil, reason(error), nil, backtrace(error))
      in [:misfit, message]
        native.complete(task, "FAILED_WITH_TERMINAL_ERROR", nil, message, nil, nil)
      in Hash
        complete(native, task, outcome)
      in nil
        complete(native, task, nil)
      else
        complete(native, task, { "result" => outcome })
      end
    end

    def complete(native, task, output)
      native.complete(task, "COMPLETED", output, nil, nil, nil)
    rescue TypeError, EncodingError, SystemStackError => e
      # The output has no JSON form: nothing was sent, so the task is failed instead.
      native.complete(task, "FAILED_WITH_TERMINAL_ERROR", nil,
                      "the output of #{task.task_type} cannot be sent as JSON: #{e.message}", nil, nil)
    end

    def reason(error)
      message = error.message
      message.empty? || message == error.class.name ? error.class.name : "#{error.class}: #{message}"
    end

    def backtrace(error)
      lines = (error.backtrace || []).first(BACKTRACE_LINES)
      ["#{error.class}: #{error.message}", *lines.map { |l| "  #{l}" }]
    end
  end
end
