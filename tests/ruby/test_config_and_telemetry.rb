# frozen_string_literal: true

require_relative "helper"
require "logger"
require "stringio"
require "tmpdir"

# Options and their errors, several servers, the journal, lease extension, pause/resume,
# logs, events, metrics, secrets, and a real Conductor server.
class TestConfigAndTelemetry < Minitest::Test
  FAST = { poll_timeout: 0.2, poll_interval: 0.05 }.freeze

  def dev = shared_dev

  def test_bad_options_are_errors_that_name_the_option
    {
      -> { ConductorWorker.worker("a", threads: 0) { nil } } => /threads must be an Integer from 1 to 100000, not 0/,
      -> { ConductorWorker.worker("a", thread: 2) { nil } } => /unknown worker option :thread for "a"/,
      -> { ConductorWorker.worker("a", isolation: :processes) { nil } } => /isolation must be :threads, :fibers or :ractor/,
      -> { ConductorWorker.worker("a", isolation: 5) { nil } } => /isolation must be :threads, :fibers or :ractor, not 5/,
      -> { ConductorWorker.worker("a", threads: 2, fibers: 5) { nil } } => /threads cannot be combined with isolation :fibers/,
      -> { ConductorWorker.worker("") { nil } } => /task_type must be a non-empty String/,
      -> { ConductorWorker.worker("a") } => /needs a block/,
      -> { ConductorWorker.worker("a", fibers: 2, fiber_scheduler: Object.new) { nil } } =>
        /fiber_scheduler must be a scheduler class or a proc/,
      -> { ConductorWorker::Runner.new(servers: [dev.api], workers: []) } => /no workers to run/,
      -> { ConductorWorker::Runner.new(servers: [{ key_id: "k" }], workers: [defn]) } => /has no :url/,
      -> { ConductorWorker.log_level = :loud } => /log_level must be :trace, :debug/
    }.each do |call, message|
      error = assert_raises(ArgumentError) { call.call }
      assert_match message, error.message
    end
  end

  def defn = ConductorWorker::Definition.new(unique("d"), proc { nil })

  # The core checks its own options, for Ruby as for every host: named, with the value.
  def test_bad_core_options_are_config_errors_naming_them
    {
      -> { ConductorWorker.worker("a", poll_interval: -1) { nil } } =>
        /"-1" for worker "a" option poll_interval: expected a number of seconds >= 0/,
      -> { ConductorWorker.worker("a", poll_timeout: 9) { nil } } => /option poll_timeout.*at most 5000 ms/,
      -> { ConductorWorker.worker("a", register: 3) { nil } } => /option register: expected true, false or an object/,
      -> { ConductorWorker::Runner.new(servers: [dev.api], workers: [defn], request_timeout: -2) } =>
        /"-2" for runtime option request_timeout: expected a number of seconds >= 0/,
      -> { ConductorWorker::Runner.new(servers: [dev.api], workers: [defn], breaker_failures: 0) } =>
        /runtime option breaker_failures: expected a number from 1/,
      -> { ConductorWorker::Runner.new(servers: [dev.api], workers: [defn], metrics: 1) } =>
        /runtime option metrics: there is no such option; the options are servers, journal/
    }.each do |call, message|
      error = assert_raises(ConductorWorker::ConfigError) { call.call }
      assert_match message, error.message
    end
  end

  # Every worker option the core declares is accepted by name, so one added there needs no
  # change here.
  def test_every_core_worker_option_is_accepted
    names = ConductorWorker.worker_options.map { |o| o.fetch("name") }
    assert_includes names, "register"
    assert_equal names - ["concurrency"], ConductorWorker::Definition.core_option_names.map(&:to_s)
    d = ConductorWorker::Definition.new(unique("d"), proc { nil }, threads: 3, poll_interval: 0.5, domain: "blue")
    assert_equal({ poll_interval: 0.5, domain: "blue", concurrency: 3 }, d.native_options)
    assert_includes ConductorWorker.runtime_options.map { |o| o.fetch("name") }, "external_payload_threshold_kb"
  end

  def test_bad_server_urls_and_environment_are_config_errors
    error = assert_raises(ConductorWorker::ConfigError) do
      ConductorWorker::Runner.new(servers: ["localhost:8080"], workers: [defn])
    end
    assert_equal "server url", error.setting
    assert_match(%r{expected http://host\[:port\]/api}, error.message)
    with_env("CONDUCTOR_SERVER_URL" => nil) do
      error = assert_raises(ConductorWorker::ConfigError) { ConductorWorker::Runner.new(workers: [defn]) }
      assert_match(/CONDUCTOR_SERVER_URL/, error.message)
    end
    with_env("CONDUCTOR_SERVER_URL" => "#{dev.api}, http://127.0.0.1:9/api") do
      assert_equal 2, ConductorWorker::Runner.new(workers: [defn]).servers.size
    end
  end

  def with_env(values)
    saved = values.keys.to_h { |k| [k, ENV.fetch(k, nil)] }
    values.each { |k, v| v.nil? ? ENV.delete(k) : ENV.store(k, v) }
    yield
  ensure
    saved.each { |k, v| v.nil? ? ENV.delete(k) : ENV.store(k, v) }
  end

  def test_several_servers_each_result_to_its_own_server_and_registration
    type = unique("multi")
    ConductorWorker.worker(type, threads: 4, register: { retryCount: 7, description: "from ruby" }, **FAST) do |input, _|
      { origin: input["origin"] }
    end
    a = DevServer.new
    b = DevServer.new
    runner = ConductorWorker::Runner.new(servers: [a.api, { url: b.api }]).start
    [a, b].each do |s|
      definition = s.request(:get, "/metadata/taskdefs/#{type}")
      assert_equal [7, "from ruby"], [definition["retryCount"], definition["description"]]
    end
    wf_a = a.run_tasks(type, [{ origin: "a" }], retryCount: 7).first
    wf_b = b.run_tasks(type, [{ origin: "b" }], retryCount: 7).first
    assert_equal({ "origin" => "a" }, a.task_of(wf_a)["outputData"])
    assert_equal({ "origin" => "b" }, b.task_of(wf_b)["outputData"])
  ensure
    runner&.stop(timeout: 5)
    a&.stop
    b&.stop
  end

  def test_pause_and_resume
    type = unique("pause")
    ConductorWorker.worker(type, paused: true, **FAST) { |_, _| {} }
    runner = ConductorWorker::Runner.new(servers: [dev.api]).start
    dev.enqueue(type, 2)
    sleep 0.5
    assert_equal 2, dev.request(:get, "/tasks/queue/size?taskType=#{type}")
    runner.resume(type)
    wait_for(10, "tasks taken after resume") { dev.request(:get, "/tasks/queue/size?taskType=#{type}").zero? }
  ensure
    runner&.stop(timeout: 5)
  end

  def test_undelivered_results_go_to_the_journal_and_are_sent_at_the_next_start
    server = DevServer.new
    type = unique("journal")
    ran = Queue.new
    ConductorWorker.worker(type, **FAST) do |input, _|
      ran << input["n"]
      { n: input["n"] }
    end
    Dir.mktmpdir do |dir|
      journal = File.join(dir, "journal.jsonl")
      wf = server.run_tasks(type, [{ n: 5 }]).first
      server.faults(fail_rate: { update: 1.0 })
      runner = ConductorWorker::Runner.new(servers: [server.api], journal: journal).start
      assert_equal 5, ran.pop
      report = runner.stop(timeout: 1)
      assert_equal 1, report[:journalled_results]
      assert_operator File.size(journal), :>, 0
      assert_equal "IN_PROGRESS", server.workflow(wf)["tasks"].last["status"]

      server.request(:post, "/admin/faults/reset", root: true)
      ConductorWorker::Runner.open(servers: [server.api], journal: journal) do
        task = server.task_of(wf)
        assert_equal ["COMPLETED", { "n" => 5 }], [task["status"], task["outputData"]]
      end
      assert ran.empty?, "the task ran once; its result came from the journal"
    end
  ensure
    server&.stop
  end

  def test_lease_extension_keeps_long_tasks_alive
    server = DevServer.new
    kept = unique("lease")
    dropped = unique("nolease")
    ConductorWorker.worker(kept, **FAST) { |_, _| sleep 2.5 }
    ConductorWorker.worker(dropped, lease_extend: false, **FAST) { |_, _| sleep 2.5 }
    server.enqueue(kept, 1, {}, responseTimeoutSeconds: 1)
    server.enqueue(dropped, 1, {}, responseTimeoutSeconds: 1)
    stats = ConductorWorker::Runner.open(servers: [server.api]) do
      wait_for(15, "both tasks reported") do
        s = server.stats
        s if s["tasks"]["completed"] + s["updates"]["terminal_task"] >= 2
      end
    end
    assert_equal 1, stats["tasks"]["completed"]
    assert_equal 1, stats["tasks"]["timed_out"]
    assert_operator stats["updates"]["lease_extensions"], :>=, 2
  ensure
    server&.stop
  end

  def test_the_core_collects_at_the_loggers_level_unless_log_level_says_otherwise
    saved = ConductorWorker.logger
    levels = [Logger::DEBUG, Logger::INFO, Logger::WARN, Logger::ERROR, Logger::FATAL, Logger::UNKNOWN]
    seen = levels.map do |level|
      ConductorWorker.logger = Logger.new(StringIO.new, level: level)
      ConductorWorker::LogForwarding.core_level
    end
    assert_equal %i[debug info warn error fatal off], seen
    ConductorWorker.log_level = :trace
    assert_equal :trace, ConductorWorker::LogForwarding.core_level
  ensure
    ConductorWorker.logger = saved
    ConductorWorker.log_level = nil
  end

  def test_core_logs_reach_the_ruby_logger
    out = StringIO.new
    saved = ConductorWorker.logger
    ConductorWorker.logger = Logger.new(out, level: Logger::DEBUG)
    type = unique("logs")
    ConductorWorker.worker(type, **FAST) { |_, _| {} }
    # Nothing listens on port 9: polls fail, and the core says so.
    ConductorWorker::Runner.open(servers: ["http://127.0.0.1:9/api"]) do
      wait_for(10, "a poll failure logged") { out.string.include?("127.0.0.1:9") }
    end
    assert_match(/(WARN|ERROR|DEBUG) -- conductor_worker::/, out.string)
  ensure
    ConductorWorker.logger = saved
  end

  def test_event_listeners_see_executions_on_a_thread_of_their_own
    type = unique("events")
    ConductorWorker.worker(type, **FAST) { |_, _| {} }
    events = Queue.new
    runner = ConductorWorker::Runner.new(servers: [dev.api])
    runner.on_event { |kind, fields| events << [kind, fields, Thread.current] }
    runner.start
    task = dev.task_of(dev.run_tasks(type, [{ a: 1 }]).first)
    seen = []
    wait_for(5, "update_delivered for the task") do
      seen << events.pop until events.empty?
      seen.any? { |kind, f, _| kind == :update_delivered && f[:task_id] == task["taskId"] }
    end
    kinds = seen.select { |_, f, _| f[:task_type] == type }.map(&:first).uniq
    assert_empty(%i[poll_started execution_started execution_completed update_delivered] - kinds)
    refute(seen.any? { |_, _, thread| thread == Thread.main })
    assert_raises(ConductorWorker::Error) { runner.on_event { nil } }
  ensure
    runner&.stop(timeout: 5)
  end

  def test_metrics_and_health_endpoint
    type = unique("metrics")
    ConductorWorker.worker(type, **FAST) { |_, _| {} }
    ids = dev.run_tasks(type, [{ a: 1 }, { a: 2 }])
    ConductorWorker::Runner.open(servers: [dev.api], metrics_port: 0) do |runner|
      ids.each { |wf| dev.task_of(wf) }
      host, port = runner.metrics_addr
      text = wait_for(5, "metrics") do
        t = Net::HTTP.get(URI("http://#{host}:#{port}/metrics"))
        t if t.include?(%(task_execute_time_seconds_count{taskType="#{type}"} 2))
      end
      assert_includes text, %(task_poll_total{taskType="#{type}"})
      assert_includes runner.metrics_text, %(task_poll_total{taskType="#{type}"})
      health = JSON.parse(Net::HTTP.get(URI("http://#{host}:#{port}/health")))
      assert_equal true, health["healthy"]
      assert runner.healthy?
      wait_for(5, "every result delivered") { runner.pending_results.zero? }
    end
  end

  def test_secrets_never_appear_in_logs_errors_or_inspect
    server = DevServer.new("--auth", "ruby-key:s3cr3t-ruby-value", "--token-ttl-secs", "2")
    out = StringIO.new
    saved = ConductorWorker.logger
    ConductorWorker.logger = Logger.new(out, level: Logger::DEBUG)
    ConductorWorker.log_level = :trace
    type = unique("auth")
    ConductorWorker.worker(type, **FAST) { |_, _| { ok: true } }
    wrong = ConductorWorker::Runner.new(servers: [{ url: server.api, key_id: "ruby-key", key_secret: "wrong-s3cr3t" }])
    error = assert_raises(ConductorWorker::AuthError) { wrong.register_task_defs([{ name: type }]) }
    wrong.start
    wait_for(5, "the failed login logged") { out.string.include?("authentication with") }
    wrong.stop(timeout: 1)
    runner = ConductorWorker::Runner.new(servers: [{ url: server.api, key_id: "ruby-key", key_secret: "s3cr3t-ruby-value" }])
    runner.start
    server.enqueue(type, 1)
    server.wait_completed(1)
    sleep 2.5 # past a token expiry: the client logs in again
    server.enqueue(type, 1)
    server.wait_completed(2)
    runner.stop(timeout: 5)
    # The logs searched include the failed login and the token refresh after the expiry.
    wait_for(5, "the token refresh logged") { out.string.include?("refreshing the token") }
    shown = [out.string, error.message, error.inspect, runner.inspect, wrong.inspect, runner.health.inspect].join("\n")
    refute_includes shown, "s3cr3t"
  ensure
    ConductorWorker.logger = saved
    ConductorWorker.log_level = nil
    server&.stop
  end

  def test_the_installed_gem_holds_no_build_tree
    skip "runs against the installed gem (CONDUCTOR_WORKER_INSTALLED=1)" unless ENV["CONDUCTOR_WORKER_INSTALLED"] == "1"

    spec = Gem::Specification.find_by_name("conductor-worker")
    assert_equal spec.gem_dir, File.expand_path("../../..", $LOADED_FEATURES.grep(%r{/conductor_worker\.rb\z}).first)
    files = Dir.glob(File.join(spec.gem_dir, "**", "*"), File::FNM_DOTMATCH)
    refute(files.any? { |f| f.include?("cargo-target") || f.end_with?(".rlib") }, "no cargo build output in the gem")
    megabytes = files.select { |f| File.file?(f) }.sum { |f| File.size(f) } / 1_048_576.0
    assert_operator megabytes, :<, 20, "the installed gem is #{megabytes.round(1)} MB"
  end

  def test_a_workflow_on_a_real_conductor_server
    url = ENV.fetch("CONDUCTOR_SERVER_URL_FOR_TESTS", nil)
    skip "real Conductor server tier NOT RUN: CONDUCTOR_SERVER_URL_FOR_TESTS is not set" if url.nil?

    real = RealServer.new(url)
    type = unique("real")
    ConductorWorker.worker(type, threads: 2, poll_timeout: 0.5) { |name:| { greeting: "hello #{name}" } }
    ids = real.run_tasks(type, [{ name: "Ada" }])
    ConductorWorker::Runner.open(servers: [real.api]) do
      task = real.task_of(ids.first, within: 60)
      assert_equal ["COMPLETED", { "greeting" => "hello Ada" }], [task["status"], task["outputData"]]
      workflow = wait_for(30, "workflow completed") do
        w = real.workflow(ids.first)
        w if w["status"] == "COMPLETED"
      end
      assert_equal({ "greeting" => "hello Ada" }, workflow["output"]["out"])
    end
  end

  # The helpers of DevServer against a server this test did not start.
  class RealServer < DevServer
    def initialize(url) # rubocop:disable Lint/MissingSuper
      @url = url.chomp("/")
      @api = "#{@url}/api"
    end

    def stop; end
  end
end
