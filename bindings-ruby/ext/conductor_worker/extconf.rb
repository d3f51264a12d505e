# frozen_string_literal: true

# Builds the extension with cargo during `gem install` (no rb_sys gem, no mkmf: RubyGems only
# runs this script and then `make` / `make install`). The build tree goes to a scratch dir
# that is removed after install, unless CARGO_TARGET_DIR is set (fast reinstalls).

require "rbconfig"

ROOT = File.expand_path("../../..", __dir__)

unless system("cargo", "--version", out: File::NULL, err: File::NULL)
  abort "conductor-worker: cargo (Rust) must be on PATH to build the extension; install it from " \
        "https://rustup.rs or your distribution (apt-get install cargo), then install the gem again"
end

dlext = RbConfig::CONFIG["DLEXT"]
dllib = "conductor_worker_ruby.#{dlext}"
shared_target = ENV.fetch("CARGO_TARGET_DIR", nil)
target_dir = shared_target || File.join(Dir.pwd, "cargo-target")
source = RbConfig::CONFIG["host_os"].include?("darwin") ? "libconductor_worker_ruby.dylib" : "libconductor_worker_ruby.so"

File.write("Makefile", <<~MAKE)
  RUBY = #{RbConfig.ruby}
  ROOT = #{ROOT}
  TARGET_DIR = #{target_dir}
  DLLIB = #{dllib}
  sitearchdir = #{RbConfig::CONFIG["sitearchdir"]}

  all: $(DLLIB)

  $(DLLIB):
  \tRUBY=$(RUBY) cargo build --locked --release --manifest-path $(ROOT)/Cargo.toml -p conductor-worker-ruby --target-dir $(TARGET_DIR)
  \tcp $(TARGET_DIR)/release/#{source} $(DLLIB)
  \t# The release profile keeps line tables for backtraces in development; a gem needs none.
  \tif command -v strip >/dev/null 2>&1; then strip -S $(DLLIB); fi

  install: $(DLLIB)
  \tmkdir -p $(DESTDIR)$(sitearchdir)/conductor_worker
  \tcp $(DLLIB) $(DESTDIR)$(sitearchdir)/conductor_worker/$(DLLIB)
  \t# RubyGems copies the installed library into the gem's lib/; the build copy is not needed.
  \trm -f $(DLLIB)
  #{shared_target ? "" : "\trm -rf $(TARGET_DIR)"}

  clean:
  \trm -f $(DLLIB)

  .PHONY: all install clean
MAKE
