#!/usr/bin/env ruby
# frozen_string_literal: true

# Our Ruby gem as a worker program (bench/workers/README.md): modes threads, fibers, ractors.
#
#   CONDUCTOR_SERVER_URL=http://127.0.0.1:8080/api \
#     ruby -I bindings-ruby/lib bench/workers/ruby_worker.rb --mode threads --task-type t --concurrency 10 --work noop
#
# Written the way a user writes a worker: ConductorWorker.worker with a block, then
# ConductorWorker.run (TERM or INT drains). Ractor mode needs a shareable block, so the
# handlers are built inside a module.

require "digest"
require "optparse"

# Loaded here, in the main Ractor: Digest autoloads SHA256 on first use, and autoloading from
# another Ractor is refused.
Digest::SHA256

# What each task does, shared by every mode.
module BenchWork
  # +rounds+ rounds of SHA-256, each over the previous digest, from 32 zero bytes.
  def self.hash_rounds(rounds)
    digest = "\0".b * 32
    rounds.times { digest = Digest::SHA256.digest(digest) }
    digest.unpack1("H*")
  end

  def self.handler(kind, amount)
    case kind
    when "noop" then proc { |_input, _task| {} }
    when "echo" then proc { |input, _task| { "data" => input["data"] } }
    when "sleep"
      seconds = amount / 1000.0
      proc { |_input, _task| sleep(seconds) && {} }
    else proc { |_input, _task| { digest: BenchWork.hash_rounds(amount) } }
    end
  end
end

def fail_args(message)
  warn "ruby_worker.rb: #{message}"
  exit 2
end

options = { task_types: [] }
begin
  OptionParser.new do |o|
    o.on("--mode MODE", %w[threads fibers ractors]) { |v| options[:mode] = v }
    o.on("--task-type NAME") { |v| options[:task_types] << v }
    o.on("--concurrency N", Integer) { |v| options[:concurrency] = v }
    o.on("--work WORK") { |v| options[:work] = v }
    o.on("--poll-interval-ms MS", Integer) { |v| options[:poll_interval_ms] = v }
  end.parse!(ARGV)
rescue OptionParser::ParseError => e
  fail_args(e.message)
end
%i[mode concurrency work].each { |k| fail_args("--#{k.to_s.tr("_", "-")} is required") unless options[k] }
fail_args("--task-type is required") if options[:task_types].empty?
fail_args("--concurrency must be >= 1, not #{options[:concurrency]}") if options[:concurrency] < 1
kind, amount = options[:work].split(":", 2)
unless %w[noop echo].include?(kind) || (%w[sleep cpu].include?(kind) && amount&.match?(/\A\d+\z/))
  fail_args("--work must be noop, echo, sleep:MS or cpu:N, not #{options[:work].inspect}")
end

require "conductor_worker"

handler = Ractor.make_shareable(BenchWork.handler(kind, amount.to_i))
executors = { "threads" => { threads: options[:concurrency] },
              "fibers" => { fibers: options[:concurrency] },
              "ractors" => { isolation: :ractor, ractors: options[:concurrency] } }.fetch(options[:mode])
poll_interval = options[:poll_interval_ms] && options[:poll_interval_ms] / 1000.0
options[:task_types].each do |task_type|
  ConductorWorker.worker(task_type, poll_interval: poll_interval, **executors, &handler)
end

ConductorWorker.run do
  $stdout.puts "ready"
  $stdout.flush
end
exit 0
