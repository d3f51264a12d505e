# frozen_string_literal: true

module ConductorWorker
  # A task handed to this process (the class is defined by the extension): ids, counters,
  # input, and +log+ to add a line to the task's execution log at once.
  class Task
    # The task's input as a Hash with String keys, or Symbol keys with +symbolize_keys+: the
    # same Hash on every call with the same +symbolize_keys+. The two share their values, and
    # the core gives up its own copy once Ruby has taken it, so a large input is held once.
    def input_data(symbolize_keys: false)
      @input_data ||= {}
      @input_data[symbolize_keys] ||= native_take_input(symbolize_keys) ||
                                      Task.rekey(@input_data.fetch(!symbolize_keys), symbolize_keys)
    end

    # Whether the server stored this task's input externally (the input was large).
    def large_input? = !external_input_payload_storage_path.nil?

    # Forgets the input Hashes once the task has ended, so that a large input can be collected.
    def release_input
      @input_data = nil
    end

    # +value+ with every Hash key, at any depth, a Symbol (+symbolize+) or a String.
    def self.rekey(value, symbolize)
      case value
      when Hash then value.to_h { |k, v| [symbolize ? k.to_sym : k.to_s, rekey(v, symbolize)] }
      when Array then value.map { |v| rekey(v, symbolize) }
      else value
      end
    end

    def to_h
      {
        task_id: task_id, task_type: task_type, workflow_instance_id: workflow_instance_id,
        workflow_type: workflow_type, reference_task_name: reference_task_name,
        retry_count: retry_count, poll_count: poll_count, correlation_id: correlation_id,
        domain: domain, input_data: input_data
      }
    end
  end

  THREAD_KEY = :conductor_worker_current_task
  private_constant :THREAD_KEY

  # The task the calling thread or fiber is executing, or nil.
  #
  #   ConductorWorker.current_task&.log("halfway")
  def self.current_task
    Thread.current[THREAD_KEY]
  end

  def self.current_task=(task) # :nodoc:
    Thread.current[THREAD_KEY] = task
  end
end
