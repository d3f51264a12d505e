//! `ConductorWorker::Native::Runtime`: servers, workers, their lifecycle, health, metrics and
//! events. Lives in the main Ractor; its workers can be shared with others.

use std::sync::{Arc, Mutex};

use conductor_worker::api::JsonObject;
use conductor_worker::config::ProcessEnv;
use conductor_worker::host::ProcessBound;
use conductor_worker::telemetry::EventQueue;
use conductor_worker::{Cancel, RuntimeOptions, TaskDef, WorkerOptions};
use magnus::value::ReprValue;
use magnus::{Error, RArray, RHash, Ruby, Value, prelude::*};
use tokio::runtime::Handle;

use crate::errors;
use crate::gvl::{self, fork_check};
use crate::json;
use crate::worker::RbWorker;

#[magnus::wrap(class = "ConductorWorker::Native::Runtime", free_immediately, size)]
pub(crate) struct RbRuntime {
    inner: ProcessBound<conductor_worker::Runtime>,
    handle: Handle,
    events: Mutex<Option<Arc<EventQueue>>>,
}

fn arg_error(ruby: &Ruby, message: String) -> Error {
    Error::new(ruby.exception_arg_error(), message)
}

/// Options given as a Hash of names to values, as JSON for the core (nil: none given).
fn given_options(ruby: &Ruby, options: Value, what: &str) -> Result<JsonObject, Error> {
    if options.is_nil() {
        return Ok(JsonObject::new());
    }
    json::object_from_ruby(ruby, options, what)
}

/// Checks worker options as `add_worker` would (without the environment): raises
/// `ConfigError` naming the first bad or unknown one.
pub(crate) fn check_worker_options(
    ruby: &Ruby,
    task_type: String,
    options: Value,
) -> Result<(), Error> {
    let given = given_options(ruby, options, "worker options")?;
    WorkerOptions::from_host(task_type, &given)
        .map(drop)
        .map_err(errors::to_ruby)
}

/// Every option of the runtime and of a worker, as the core declares them:
/// `{"runtime" => [...], "worker" => [...]}`.
pub(crate) fn option_tables(ruby: &Ruby) -> Value {
    json::to_ruby(ruby, &conductor_worker::host::option_tables(), false)
}

impl RbRuntime {
    /// `options`: the runtime options by name (`RuntimeOptions::options` in the core); those
    /// not given come from the environment (`CONDUCTOR_SERVER_URL`, ...).
    fn new(ruby: &Ruby, options: Value) -> Result<Self, Error> {
        let handle = gvl::handle()?;
        let given = given_options(ruby, options, "runtime options")?;
        let options = RuntimeOptions::from_host(&given, &ProcessEnv).map_err(errors::to_ruby)?;
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

    /// `options`: the worker options by name (`WorkerOptions::options` in the core); the
    /// environment overrides them.
    fn add_worker(
        ruby: &Ruby,
        rb_self: &Self,
        task_type: String,
        options: Value,
    ) -> Result<RbWorker, Error> {
        fork_check(&rb_self.inner, "Runtime")?;
        let given = given_options(ruby, options, "worker options")?;
        let options = WorkerOptions::from_host(task_type, &given).map_err(errors::to_ruby)?;
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
    fn stop(ruby: &Ruby, rb_self: &Self, timeout: f64) -> Result<Option<Value>, Error> {
        fork_check(&rb_self.inner, "Runtime")?;
        let deadline = gvl::seconds(ruby, "timeout", timeout)?;
        let runtime = (*rb_self.inner).clone();
        gvl::block_on(&rb_self.handle, async move { runtime.stop(deadline).await })?
            .map(|report| json::serialized_to_ruby(ruby, &report))
            .transpose()
    }

    fn kill(ruby: &Ruby, rb_self: &Self) -> Result<Option<Value>, Error> {
        fork_check(&rb_self.inner, "Runtime")?;
        let runtime = (*rb_self.inner).clone();
        gvl::block_on(&rb_self.handle, async move { runtime.kill().await })?
            .map(|report| json::serialized_to_ruby(ruby, &report))
            .transpose()
    }

    fn health(ruby: &Ruby, rb_self: &Self) -> Result<Value, Error> {
        json::serialized_to_ruby(ruby, &rb_self.inner.health())
    }

    /// `{healthy:, pending_results:, metrics_addr: [host, port] or nil, servers:}`.
    fn status(ruby: &Ruby, rb_self: &Self) -> Result<Value, Error> {
        json::serialized_to_ruby(ruby, &rb_self.inner.status())
    }

    fn metrics_text(&self) -> String {
        self.inner.metrics_text()
    }

    fn quiet(&self) {
        self.inner.quiet();
    }

    fn resume_all(&self) {
        self.inner.resume_all();
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
            *events = Some(self.inner.event_queue());
        }
        Ok(())
    }

    /// Up to `max` events as `[kind, {field: value}]`, waiting up to `timeout` seconds for
    /// the first with the GVL released. `[]` when none came (or the wait was interrupted).
    fn next_events(ruby: &Ruby, rb_self: &Self, max: usize, timeout: f64) -> Result<RArray, Error> {
        let wait = gvl::seconds(ruby, "timeout", timeout)?;
        let Some(queue) = rb_self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return Err(errors::internal("call listen before next_events"));
        };
        let interrupted = Cancel::new();
        let batch = gvl::without_gvl(&interrupted, || queue.next_batch(max, wait, &interrupted))?
            .unwrap_or_default();
        let array = ruby.ary_new_capa(batch.len());
        for (kind, fields) in batch {
            let hash = ruby.hash_new();
            for (name, value) in fields {
                hash.aset(ruby.to_symbol(name), json::field_to_ruby(ruby, value))?;
            }
            array.push((ruby.to_symbol(kind), hash))?;
        }
        Ok(array)
    }
}

pub(crate) fn define(ruby: &Ruby, native: magnus::RModule) -> Result<(), Error> {
    use magnus::{Module, function, method};
    let class = native.define_class("Runtime", ruby.class_object())?;
    class.undef_default_alloc_func();
    class.define_singleton_method("new", function!(RbRuntime::new, 1))?;
    class.define_method("add_worker", method!(RbRuntime::add_worker, 2))?;
    class.define_method("start", method!(RbRuntime::start, 0))?;
    class.define_method("stop", method!(RbRuntime::stop, 1))?;
    class.define_method("kill", method!(RbRuntime::kill, 0))?;
    class.define_method("health", method!(RbRuntime::health, 0))?;
    class.define_method("status", method!(RbRuntime::status, 0))?;
    class.define_method("metrics_text", method!(RbRuntime::metrics_text, 0))?;
    class.define_method("quiet", method!(RbRuntime::quiet, 0))?;
    class.define_method("resume_all", method!(RbRuntime::resume_all, 0))?;
    class.define_method(
        "register_task_defs",
        method!(RbRuntime::register_task_defs, 1),
    )?;
    class.define_method("listen", method!(RbRuntime::listen, 0))?;
    class.define_method("next_events", method!(RbRuntime::next_events, 2))?;
    Ok(())
}
