# frozen_string_literal: true

# The gem's root is the repository root: the extension is built from the workspace (core/,
# devserver/ and this crate), and a gem cannot hold files outside its gemspec's directory tree.
# Build it from the repository root (scripts/dist.sh builds both gems):
#
#   gem build bindings-ruby/conductor-worker.gemspec       # the source gem: compiles on install
#   CONDUCTOR_WORKER_GEM_PLATFORM=x86_64-linux gem build bindings-ruby/conductor-worker.gemspec
#       # the platform gem: the extensions prebuilt in bindings-ruby/lib/conductor_worker/<minor>/
root = File.expand_path("..", __dir__)
unless File.expand_path(Dir.pwd) == root
  raise "build the gem from the repository root (#{root}): gem build bindings-ruby/conductor-worker.gemspec"
end

require_relative "cargo_version"

platform = ENV.fetch("CONDUCTOR_WORKER_GEM_PLATFORM", "")
platform = nil if platform.empty?
prebuilt = Dir["bindings-ruby/lib/conductor_worker/[0-9]*/conductor_worker_ruby.so"].sort
if platform && prebuilt.empty?
  raise "no prebuilt extension in bindings-ruby/lib/conductor_worker/<major.minor>/: run scripts/dist.sh"
end

Gem::Specification.new do |spec|
  spec.name = "conductor-worker"
  spec.version = CargoVersion.read(root)
  spec.summary = "Fast, reliable workers for Conductor workflows: a Rust core with threads, fibers and Ractors"
  spec.description = "Polls one or several Conductor servers for tasks, runs them in Ruby blocks or classes, " \
                     "and delivers every result to the server it came from. The network side is a Rust core."
  spec.license = "Apache-2.0"
  spec.authors = ["conductor-worker developers"]
  spec.homepage = "https://github.com/conductor-worker/conductor-worker"
  spec.require_paths = ["bindings-ruby/lib"]
  spec.bindir = "bindings-ruby/exe"
  spec.executables = ["conductor-devserver"]
  ruby_files = Dir["bindings-ruby/lib/**/*.rb", "bindings-ruby/exe/*"]
  if platform
    minors = prebuilt.map { |path| Gem::Version.new(File.basename(File.dirname(path))) }
    major, minor = minors.max.segments
    spec.platform = Gem::Platform.new(platform)
    spec.files = ruby_files + prebuilt
    # A Ruby with no prebuilt extension gets the source gem from an index instead.
    spec.required_ruby_version = [">= #{minors.min}", "< #{major}.#{minor + 1}.dev"]
  else
    spec.files = ruby_files + Dir["Cargo.toml", "Cargo.lock", "core/Cargo.toml", "core/src/**/*.rs",
                                  "core/examples/*.rs", "devserver/Cargo.toml", "devserver/src/**/*.rs",
                                  "bindings-python/Cargo.toml", "bindings-python/src/**/*.rs",
                                  "bindings-ruby/Cargo.toml", "bindings-ruby/src/**/*.rs",
                                  "bindings-ruby/ext/conductor_worker/extconf.rb"]
    spec.extensions = ["bindings-ruby/ext/conductor_worker/extconf.rb"]
    spec.required_ruby_version = ">= 3.1"
  end
  spec.metadata["rubygems_mfa_required"] = "true"
end
