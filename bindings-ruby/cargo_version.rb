# frozen_string_literal: true

# The project has one version: `[workspace.package] version` in the repository's Cargo.toml.
# The Rust crates inherit it, maturin gives it to the Python package, and the gemspec and the
# Rakefile read it here; at run time ConductorWorker::VERSION comes from the extension.
module CargoVersion
  def self.read(root)
    manifest = File.read(File.join(root, "Cargo.toml"))
    section = manifest[/^\[workspace\.package\]\n(.*?)(?=^\[|\z)/m, 1]
    version = section && section[/^version\s*=\s*"([^"]+)"/, 1]
    version or raise "no [workspace.package] version in #{File.join(root, "Cargo.toml")}"
  end
end
