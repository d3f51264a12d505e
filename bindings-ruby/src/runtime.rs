//! `ConductorWorker::Native::Runtime`: servers, workers, their lifecycle, health, metrics and
//! events. Lives in the main Ractor; its workers can be shared with others.

use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conductor_worker::config::{JournalConfig, ProcessEnv};
use conductor_worker::host::ProcessBound;
use conductor_worker::runtime::StopReport;
use conductor_worker::telemetry::EventField;
use conductor_worker::{Cancel, Credentials, RuntimeOptions, ServerConfig, TaskDef, WorkerOptions};
use magnus::value::ReprValue;
use magnus::{Error, IntoValue, RArray, RHash, Ruby, Value, prelude::*};
use tokio::runtime::Handle;

use crate::errors;
use crate::gvl::{self, fork_check};
use crate::json;
use crate::worker::{RbWorker, health_hash};

type EventRecord = (&'static str, Vec<(&'static str, EventField)>);
/// Events not yet taken by Ruby; beyond this the oldest are not kept (the core counts them).
const EVENT_QUEUE: usize = 65_536;
/// How often a wait for events looks at its interrupt flag.
const EVENT_SLICE: Duration = Duration::from_millis(100);

#[magnus::wrap(class = "ConductorWorker::Native::Runtime", free_immediately, size)]
pub(crate) struct RbRuntime {
    inner: ProcessBound<conductor_worker::Runtime>,
    handle: Handle,
    events: Mutex<Option<Arc<Mutex<Receiver<EventRecord>>>>>,
}

type ServerSpec = (String, Option<String>, Option<String>);

fn arg_error(ruby: &Ruby, message: String) -> Error {
    Error::new(ruby.exception_arg_error(), message)
}

impl RbRuntime {
    /// Options given as nil come from the environment (`CONDUCTOR_SERVER_URL`, ...).
    // One positional argument per option of `ConductorWorker::Runner.new`, as Ruby passes them.
    #[allow(clippy::too_many_arguments)]
    fn new(
        ruby: &Ruby,
        servers: Option<Vec<ServerSpec>>,
        journal: Option<String>,
        metrics_port: Option<u16>,
        request_timeout: Option<f64>,
        breaker_failures: Option<u32>,
        breaker_reset: Option<f64>,
        external_payload_threshold_kb: Option<u64>,
    ) -> Result<Self, Error> {
        let handle = gvl::handle()?;
        let mut options = RuntimeOptions::from_env(&ProcessEnv).map_err(errors::to_ruby)?;
        if let Some(servers) = servers {
            options.servers = servers
                .into_iter()
                .map(|(url, key, secret)| {
                    let server = ServerConfig::new(&url).map_err(errors::to_ruby)?;
                    match (key, secret) {
                        (Some(k), Some(s)) => Ok(server.with_credentials(Credentials::new(k, s))),
                        (None, None) => Ok(server),
                        _ => Err(arg_error(
                            ruby,
                            format!("server {url}: give both key_id and key_secret, or neither"),
                        )),
                    }
                })
                .collect::<Result<_, Error>>()?;
        }
        if let Some(journal) = journal {
            options.journal = JournalConfig::parse(&journal);
        }
        if metrics_port.is_some() {
            options.metrics_port = metrics_port;
        }
        if let Some(t) = request_timeout {
            options.request_timeout = gvl::seconds(ruby, "request_timeout", t)?;
        }
        if let Some(n) = breaker_failures {
            options.breaker_failure_threshold = n.max(1);
        }
        if let Some(t) = breaker_reset {
            options.breaker_reset = gvl::seconds(ruby, "breaker_reset", t)?;
        }
        if let Some(kb) = external_payload_threshold_kb {
            options
                .set_external_payload_threshold_kb(kb)
                .map_err(errors::to_ruby)?;
        }
        // Runtime::with_handle spawns nothing, but the HTTP clients it builds need the
        // runtime's context.
        let _guard = handle.enter();
        let inner = conductor_worker::Runtime::with_handle(options, handle.clone())
            .map_err(errors::to_ruby)?;
        Ok(Self {
            inner: ProcessBound::new(inner),
            handle,
            events: Mutex::new(None),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn add_worker(
        ruby: &Ruby,
        rb_self: &Self,
        task_type: String,
        concurrency: Option<usize>,
        poll_interval: Option<f64>,
        poll_timeout: Option<f64>,
        domain: Option<String>,
        worker_id: Option<String>,
        lease_extend: Option<bool>,
        paused: Option<bool>,
        register: Value,
    ) -> Result<RbWorker, Error> {
        fork_check(&rb_self.inner, "Runtime")?;
        let mut options = WorkerOptions::new(task_type);
        if let Some(n) = concurrency {
            options.concurrency = n;
        }
        if let Some(t) = poll_interval {
            options.poll_interval = gvl::seconds(ruby, "poll_interval", t)?;
        }
        if let Some(t) = poll_timeout {
            options.poll_timeout = gvl::seconds(ruby, "poll_timeout", t)?;
        }
        options.domain = domain.filter(|d| !d.is_empty());
        if let Some(id) = worker_id {
            options.worker_id = id;
        }
        if let Some(on) = lease_extend {
            options.lease_extend = on;
        }
        if let Some(p) = paused {
            options.paused = p;
        }
        options.task_def = task_def(ruby, &options.task_type, register)?;
        let _guard = rb_self.handle.enter();
        let worker = rb_self.inner.add_worker(options).map_err(errors::to_ruby)?;
        Ok(RbWorker::new(worker, rb_self.handle.clone()))
    }

    /// Starts polling; true, or false if a Ruby interrupt came first.
    fn start(&self) -> Result<bool, Error> {
        fork_check(&self.inner, "Runtime")?;
        let runtime = (*self.inner).clone();
        match gvl::block_on(&self.handle, async move { runtime.start().await })? {
            Some(result) => result.map(|()| true).map_err(errors::to_ruby),
            None => Ok(false),
        }
    }

    /// Drains: polling stops, running tasks get up to `timeout` seconds to finish, results
    /// are delivered or journalled. nil if a Ruby interrupt came first (the drain goes on).
    fn stop(ruby: &Ruby, rb_self: &Self, timeout: f64) -> Result<Option<RHash>, Error> {
        fork_check(&rb_self.inner, "Runtime")?;
        let deadline = gvl::seconds(ruby, "timeout", timeout)?;
        let runtime = (*rb_self.inner).clone();
        gvl::block_on(&rb_self.handle, async move { runtime.stop(deadline).await })?
            .map(|report| report_hash(ruby, &report))
            .transpose()
    }

    fn kill(ruby: &Ruby, rb_self: &Self) -> Result<Option<RHash>, Error> {
        fork_check(&rb_self.inner, "Runtime")?;
        let runtime = (*rb_self.inner).clone();
        gvl::block_on(&rb_self.handle, async move { runtime.kill().await })?
            .map(|report| report_hash(ruby, &report))
            .transpose()
    }

    fn health(ruby: &Ruby, rb_self: &Self) -> Result<RArray, Error> {
        let array = ruby.ary_new();
        for h in rb_self.inner.health() {
            array.push(health_hash(ruby, &h)?)?;
        }
        Ok(array)
    }

    fn is_healthy(&self) -> bool {
        self.inner.is_healthy()
    }

    fn pending_results(&self) -> usize {
        self.inner.pending_results()
    }

    fn metrics_text(&self) -> String {
        self.inner.metrics_text()
    }

    /// `[host, port]` of the metrics and health endpoint, once started.
    fn metrics_addr(&self) -> Option<(String, u16)> {
        self.inner
            .metrics_addr()
            .map(|a| (a.ip().to_string(), a.port()))
    }

    fn servers(&self) -> Vec<String> {
        self.inner
            .servers()
            .iter()
            .map(|s| s.url().to_owned())
            .collect()
    }

    fn register_task_defs(ruby: &Ruby, rb_self: &Self, defs: RArray) -> Result<bool, Error> {
        fork_check(&rb_self.inner, "Runtime")?;
        let mut parsed = Vec::with_capacity(defs.len());
        for i in 0..defs.len() {
            let def: RHash = defs.entry(i as isize)?;
            let name: String = def
                .get("name")
                .or_else(|| def.get(ruby.to_symbol("name")))
                .ok_or_else(|| arg_error(ruby, format!("task definition #{i} has no \"name\"")))
                .and_then(magnus::TryConvert::try_convert)?;
            parsed.push(
                TaskDef::with_fields(
                    &name,
                    json::object_from_ruby(ruby, def.as_value(), "task definition")?,
                )
                .map_err(errors::to_ruby)?,
            );
        }
        let runtime = (*rb_self.inner).clone();
        match gvl::block_on(&rb_self.handle, async move {
            runtime.register_task_defs(&parsed).await
        })? {
            Some(result) => result.map(|()| true).map_err(errors::to_ruby),
            None => Ok(false),
        }
    }

    /// Starts queueing the runtime's events for [`next_events`](Self::next_events).
    fn listen(&self) -> Result<(), Error> {
        fork_check(&self.inner, "Runtime")?;
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.is_none() {
            let (tx, rx) = sync_channel::<EventRecord>(EVENT_QUEUE);
            self.inner.add_listener(move |event| {
                let _ = tx.try_send((event.kind(), event.fields()));
            });
            *events = Some(Arc::new(Mutex::new(rx)));
        }
        Ok(())
    }

    /// Up to `max` events as `[kind, {field: value}]`, waiting up to `timeout` seconds for
    /// the first with the GVL released. `[]` when none came (or the wait was interrupted).
    fn next_events(ruby: &Ruby, rb_self: &Self, max: usize, timeout: f64) -> Result<RArray, Error> {
        let wait = gvl::seconds(ruby, "timeout", timeout)?;
        let Some(rx) = rb_self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return Err(errors::internal("call listen before next_events"));
        };
        let interrupted = Cancel::new();
        let batch = gvl::without_gvl(&interrupted, || {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            let until = Instant::now() + wait;
            let mut batch = Vec::new();
            while batch.is_empty() && !interrupted.is_cancelled() {
                let left = until.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left.min(EVENT_SLICE)) {
                    Ok(e) => batch.push(e),
                    Err(RecvTimeoutError::Timeout) if left > EVENT_SLICE => {}
                    Err(_) => break,
                }
            }
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            batch
        })?
        .unwrap_or_default();
        let array = ruby.ary_new_capa(batch.len());
        for (kind, fields) in batch {
            let hash = ruby.hash_new();
            for (name, value) in fields {
                let value = match value {
                    EventField::Str(s) => s.into_value_with(ruby),
                    EventField::Int(i) => i.into_value_with(ruby),
                    EventField::Float(f) => f.into_value_with(ruby),
                    EventField::Bool(b) => b.into_value_with(ruby),
                };
                hash.aset(ruby.to_symbol(name), value)?;
            }
            array.push((ruby.to_symbol(kind), hash))?;
        }
        Ok(array)
    }
}

/// The task definition asked for by a worker's `register:` option: nil/false for none, true
/// for the defaults, a Hash of server field names laid over the defaults.
fn task_def(ruby: &Ruby, task_type: &str, register: Value) -> Result<Option<TaskDef>, Error> {
    if register.is_nil() || register.is_kind_of(ruby.class_false_class()) {
        return Ok(None);
    }
    if register.is_kind_of(ruby.class_true_class()) {
        return Ok(Some(TaskDef::new(task_type)));
    }
    let fields = json::object_from_ruby(ruby, register, "register")?;
    TaskDef::with_fields(task_type, fields)
        .map(Some)
        .map_err(errors::to_ruby)
}

fn report_hash(ruby: &Ruby, report: &StopReport) -> Result<RHash, Error> {
    let hash = ruby.hash_new();
    hash.aset(ruby.to_symbol("abandoned_tasks"), report.abandoned_tasks)?;
    hash.aset(
        ruby.to_symbol("journalled_results"),
        report.journalled_results,
    )?;
    hash.aset(ruby.to_symbol("returned_tasks"), report.returned_tasks)?;
    Ok(hash)
}

pub(crate) fn define(ruby: &Ruby, native: magnus::RModule) -> Result<(), Error> {
    use magnus::{Module, function, method};
    let class = native.define_class("Runtime", ruby.class_object())?;
    class.undef_default_alloc_func();
    class.define_singleton_method("new", function!(RbRuntime::new, 7))?;
    class.define_method("add_worker", method!(RbRuntime::add_worker, 9))?;
    class.define_method("start", method!(RbRuntime::start, 0))?;
    class.define_method("stop", method!(RbRuntime::stop, 1))?;
    class.define_method("kill", method!(RbRuntime::kill, 0))?;
    class.define_method("health", method!(RbRuntime::health, 0))?;
    class.define_method("healthy?", method!(RbRuntime::is_healthy, 0))?;
    class.define_method("pending_results", method!(RbRuntime::pending_results, 0))?;
    class.define_method("metrics_text", method!(RbRuntime::metrics_text, 0))?;
    class.define_method("metrics_addr", method!(RbRuntime::metrics_addr, 0))?;
    class.define_method("servers", method!(RbRuntime::servers, 0))?;
    class.define_method(
        "register_task_defs",
        method!(RbRuntime::register_task_defs, 1),
    )?;
    class.define_method("listen", method!(RbRuntime::listen, 0))?;
    class.define_method("next_events", method!(RbRuntime::next_events, 2))?;
    Ok(())
}
