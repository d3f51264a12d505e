# frozen_string_literal: true

require "rbconfig"

module ConductorWorker
  # Loads the compiled extension. A source gem (or `rake compile`) builds one for the running
  # Ruby; a platform gem carries one prebuilt per Ruby minor, in conductor_worker/<major.minor>/.
  module NativeLoader
    FILE = "conductor_worker_ruby.#{RbConfig::CONFIG["DLEXT"]}".freeze
    MINOR = RUBY_VERSION[/\A\d+\.\d+/]

    def self.load
      prebuilt = File.join(__dir__, MINOR, FILE)
      if !File.exist?(File.join(__dir__, FILE)) && File.exist?(prebuilt)
        require prebuilt
      else
        load_built_from_source
      end
    end

    def self.load_built_from_source
      require_relative FILE
    rescue LoadError
      begin
        # An installed source gem keeps its extension in the gem's extension directory.
        require "conductor_worker/#{FILE}"
      rescue LoadError => e
        minors = prebuilt_minors
        raise if minors.empty?

        raise LoadError, "conductor-worker has a prebuilt extension for Ruby #{minors.join(", ")} " \
                         "(#{RbConfig::CONFIG["host_cpu"]}-linux), not for Ruby #{RUBY_VERSION}: install " \
                         "the source gem instead, which builds the extension with cargo " \
                         "(gem install conductor-worker --platform ruby) [#{e.message}]"
      end
    end

    # The Ruby minors this platform gem has a prebuilt extension for.
    def self.prebuilt_minors
      Dir[File.join(__dir__, "*", FILE)].map { |path| File.basename(File.dirname(path)) }.sort
    end
    private_class_method :load_built_from_source, :prebuilt_minors
  end
end

ConductorWorker::NativeLoader.load
