#!/usr/bin/env ruby
# frozen_string_literal: true

# A worker for large payloads, the Ruby one of the end-to-end tests in tests/e2e (the Rust and
# Python ones, core/examples/payload_worker.rs and payload_worker.py here, do exactly the same).
#
#   CONDUCTOR_SERVER_URL=http://127.0.0.1:8080/api ruby tests/e2e/workers/payload_worker.rb [TASK_TYPE]
#
# The task (default type payload_check) takes "doc" (a string) and "out_kb" (a number of KiB)
# and returns "input_fnv1a" (FNV-1a 64 of the UTF-8 bytes of doc, 16 hex digits), "input_len"
# (doc's length in characters) and "blob" (doc repeated, or "-" if it is empty, cut to
# out_kb * 1024 characters). Prints "ready" once its worker polls and "called <taskId>" each
# time the block runs; TERM or INT drains and exits 0.

require "conductor_worker"

$stdout.sync = true # the lines are for whoever watches, at once

# What the task computes, the same in the three languages.
module PayloadCheck
  DEFAULT_TASK_TYPE = "payload_check"
  FNV_OFFSET = 0xcbf29ce484222325
  FNV_PRIME = 0x100000001b3
  MASK = (1 << 64) - 1

  module_function

  # FNV-1a, 64 bits, of the bytes of +data+, as 16 lower-case hex digits.
  def fnv1a(data)
    hash = data.each_byte.reduce(FNV_OFFSET) { |h, byte| ((h ^ byte) * FNV_PRIME) & MASK }
    format("%016x", hash)
  end

  # +doc+ repeated ("-" if it is empty) and cut to +chars+ characters.
  def blob(doc, chars)
    source = doc.empty? ? "-" : doc
    (source * ((chars / source.length) + 1))[0, chars]
  end

  # A missing doc runs as "": a runtime that ran the block without the input the server stored
  # then shows as a "called" line instead of hiding behind an input error.
  def call(input, task)
    puts "called #{task.task_id}"
    doc = input.fetch("doc", nil) || ""
    out_kb = input.fetch("out_kb", nil) || 0
    unless out_kb.is_a?(Integer) && out_kb >= 0
      raise ConductorWorker::NonRetryableError, "input 'out_kb' should be a number of KiB from 0, got #{out_kb.inspect}"
    end

    { "input_fnv1a" => fnv1a(doc.b), "input_len" => doc.length, "blob" => blob(doc, out_kb * 1024) }
  end
end

if ARGV.length > 1 || (ARGV.first && (ARGV.first.empty? || ARGV.first.start_with?("-")))
  warn "usage: payload_worker.rb [TASK_TYPE] (default #{PayloadCheck::DEFAULT_TASK_TYPE})"
  exit 2
end

ConductorWorker.worker(ARGV.first || PayloadCheck::DEFAULT_TASK_TYPE, threads: 2) do |input, task|
  PayloadCheck.call(input, task)
end

ConductorWorker.run { puts "ready" }
