# frozen_string_literal: true

# Workers for Conductor workflows: pass a block (or a class) per task type and run them.
# The polling, routing, lease extension and result delivery happen in a Rust core; Ruby code
# runs only while it executes a task.
#
#   require "conductor_worker"
#
#   ConductorWorker.worker("greet", threads: 10) do |input, task|
#     { greeting: "hello #{input["name"]}" }
#   end
#
#   ConductorWorker.run
module ConductorWorker; end

require "etc"
require "time" # Time#iso8601: how a Time in a task output is sent
require_relative "conductor_worker/errors"
require_relative "conductor_worker/native"
require_relative "conductor_worker/version"
require_relative "conductor_worker/task"
require_relative "conductor_worker/definition"
require_relative "conductor_worker/execution"
require_relative "conductor_worker/fiber_scheduler"
require_relative "conductor_worker/executors"
require_relative "conductor_worker/log_forwarding"
require_relative "conductor_worker/runner"
