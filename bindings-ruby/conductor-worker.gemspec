# frozen_string_literal: true

# The gem's root is the repository root: the extension is built from the workspace (core/ and
# this crate), and a gem cannot hold files outside its gemspec's directory tree. Build it from
# the repository root:
#
#   gem build bindings-ruby/conductor-worker.gemspec
#   gem install --local conductor-worker-0.1.0.gem
root = File.expand_path("..", __dir__)
unless File.expand_path(Dir.pwd) == root
  raise "build the gem from the repository root (#{root}): gem build bindings-ruby/conductor-worker.gemspec"
end

require_relative "lib/conductor_worker/version"

Gem::Specification.new do |spec|
  spec.name = "conductor-worker"
  spec.version = ConductorWorker::VERSION
  spec.summary = "Fast, reliable workers for Conductor workflows: a Rust core with threads, fibers and Ractors"
  spec.description = "Polls one or several Conductor servers for tasks, runs them in Ruby blocks or classes, " \
                     "and delivers every result to the server it came from. The network side is a Rust core."
  spec.license = "Apache-2.0"
  spec.authors = ["conductor-worker developers"]
  spec.homepage = "https://github.com/conductor-worker/conductor-worker"
  spec.required_ruby_version = ">= 3.1"
  spec.files = Dir["Cargo.toml", "Cargo.lock", "core/Cargo.toml", "core/src/**/*.rs", "core/examples/*.rs",
                   "devserver/Cargo.toml", "devserver/src/**/*.rs",
                   "bindings-python/Cargo.toml", "bindings-python/src/**/*.rs",
                   "bindings-ruby/Cargo.toml", "bindings-ruby/src/**/*.rs",
                   "bindings-ruby/lib/**/*.rb", "bindings-ruby/ext/conductor_worker/extconf.rb"]
  spec.require_paths = ["bindings-ruby/lib"]
  spec.extensions = ["bindings-ruby/ext/conductor_worker/extconf.rb"]
  spec.metadata["rubygems_mfa_required"] = "true"
end
