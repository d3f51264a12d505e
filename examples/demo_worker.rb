# frozen_string_literal: true

# The demo's Ruby worker: `frame` puts the Python worker's text between stars.
require "conductor_worker"

ConductorWorker.worker("frame", threads: 4) do |text:|
  { text: "*** #{text} ***", by: "ruby" }
end

ConductorWorker.run(journal: "off")
