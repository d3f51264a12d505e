# frozen_string_literal: true

module ConductorWorker
  VERSION = "0.1.0"
end
