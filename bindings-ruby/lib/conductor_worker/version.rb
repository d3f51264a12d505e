# frozen_string_literal: true

module ConductorWorker
  # The project's version (Cargo.toml's [workspace.package] version), which the extension was
  # built with: the gem, the Python package and the Rust crate all carry it.
  VERSION = Native.core_version
end
