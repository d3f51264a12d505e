# frozen_string_literal: true

module ConductorWorker
  # A task handed to this process (the class is defined by the extension): ids, counters,
  # input, and +log+ to add a line to the task's execution log at once.
  class Task
    # The task's input as a new Hash with String keys, or Symbol keys with +symbolize_keys+.
    def input_data(symbolize_keys: false)
      native_input_data(symbolize_keys)
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
