//! `ConductorWorker::Native::Worker`: what Ruby executors (threads, fibers, Ractors) pull
//! tasks from and hand results to. Frozen and shareable, so one worker can be handed to every
//! Ractor of a pool.

use std::time::Duration;

use conductor_worker::host::ProcessBound;
use conductor_worker::{Cancel, ClaimedTask, Error as CoreError, TaskResult};
use magnus::value::ReprValue;
use magnus::{Error, RArray, Ruby, Value, prelude::*};
use tokio::runtime::Handle;

use crate::errors;
use crate::gvl::{self, fork_check};
use crate::json;
use crate::task::RbTask;

#[magnus::wrap(
    class = "ConductorWorker::Native::Worker",
    free_immediately,
    size,
    frozen_shareable
)]
pub(crate) struct RbWorker {
    inner: ProcessBound<conductor_worker::Worker>,
    handle: Handle,
    /// Ends every wait of this worker for good: `interrupt`.
    interrupt: Cancel,
}

impl RbWorker {
    pub(crate) fn new(worker: conductor_worker::Worker, handle: Handle) -> Self {
        Self {
            inner: ProcessBound::new(worker),
            handle,
            interrupt: Cancel::new(),
        }
    }

    fn tasks(&self, ruby: &Ruby, claimed: Vec<ClaimedTask>) -> RArray {
        let array = ruby.ary_new_capa(claimed.len());
        for c in claimed {
            let _ = array.push(RbTask::new(c, &self.inner, &self.handle));
        }
        array
    }

    fn task_type(&self) -> String {
        self.inner.task_type().to_owned()
    }
    fn domain(&self) -> Option<String> {
        self.inner.options().domain.clone()
    }
    fn concurrency(&self) -> usize {
        self.inner.options().concurrency
    }
    fn poll_interval(&self) -> f64 {
        self.inner.options().poll_interval.as_secs_f64()
    }
    fn poll_timeout(&self) -> f64 {
        self.inner.options().poll_timeout.as_secs_f64()
    }
    fn worker_id(&self) -> String {
        self.inner.options().worker_id.clone()
    }
    fn lease_extend(&self) -> bool {
        self.inner.options().lease_extend
    }
    fn state(&self) -> &'static str {
        self.inner.state().as_str()
    }

    /// Up to `max` tasks, waiting up to `timeout` seconds (forever with nil) with the GVL
    /// released. `[]` on timeout or when the wait was interrupted (Thread#kill, a signal: the
    /// interrupt runs as soon as this returns); nil once the worker stops or `interrupt` was
    /// called.
    fn next_tasks(
        ruby: &Ruby,
        rb_self: &Self,
        max: usize,
        timeout: Option<f64>,
    ) -> Result<Option<RArray>, Error> {
        fork_check(&rb_self.inner, "Worker")?;
        let wait: Option<Duration> = timeout
            .map(|t| gvl::seconds(ruby, "timeout", t))
            .transpose()?;
        let (worker, stop) = (&*rb_self.inner, &rb_self.interrupt);
        let interrupted = Cancel::new();
        let waited = gvl::without_gvl(&interrupted, || {
            rb_self.handle.block_on(async {
                tokio::select! {
                    tasks = worker.take(max.max(1), wait, Some(stop)) => tasks,
                    _ = interrupted.cancelled() => Ok(Vec::new()),
                }
            })
        })?;
        match waited {
            None => Ok(Some(ruby.ary_new())),
            Some(Ok(tasks)) if tasks.is_empty() && stop.is_cancelled() => Ok(None),
            Some(Ok(tasks)) => Ok(Some(rb_self.tasks(ruby, tasks))),
            Some(Err(CoreError::NotRunning(_))) => Ok(None),
            Some(Err(e)) => Err(errors::to_ruby(e)),
        }
    }

    /// Tasks already polled and waiting for an executor, without waiting (the GVL stays
    /// held): the fast path of a busy executor. nil once the worker stops.
    fn ready_tasks(ruby: &Ruby, rb_self: &Self, max: usize) -> Result<Option<RArray>, Error> {
        fork_check(&rb_self.inner, "Worker")?;
        if rb_self.interrupt.is_cancelled() {
            return Ok(None);
        }
        match rb_self
            .inner
            .take_blocking(max, Some(Duration::ZERO), &rb_self.interrupt)
        {
            Ok(tasks) => Ok(Some(rb_self.tasks(ruby, tasks))),
            Err(CoreError::NotRunning(_)) => Ok(None),
            Err(e) => Err(errors::to_ruby(e)),
        }
    }

    /// Hands back the result of `task`; never blocks. Raises TypeError (and sends nothing) if
    /// `output` has no JSON form, so the caller can fail the task instead.
    #[allow(clippy::too_many_arguments)]
    fn complete(
        ruby: &Ruby,
        rb_self: &Self,
        task: &RbTask,
        status: String,
        output: Value,
        reason: Option<String>,
        callback_after_seconds: Option<u64>,
        logs: Option<Vec<String>>,
    ) -> Result<(), Error> {
        fork_check(&rb_self.inner, "Worker")?;
        let output = if output.is_nil() {
            serde_json::Map::new()
        } else {
            json::object_from_ruby(ruby, output, "output")?
        };
        let result = TaskResult::reported(
            &task.held.task,
            &status,
            output,
            reason,
            callback_after_seconds,
            logs.unwrap_or_default(),
        )
        .map_err(errors::to_ruby)?;
        let _guard = rb_self.handle.enter();
        task.held.complete(result).map_err(errors::to_ruby)
    }

    fn pause(&self) {
        self.inner.pause();
    }

    fn resume(&self) {
        self.inner.resume();
    }

    /// Ends every wait of this worker, now and later (`next_tasks` returns nil).
    fn interrupt(&self) {
        self.interrupt.cancel();
    }

    fn health(ruby: &Ruby, rb_self: &Self) -> Result<Value, Error> {
        json::serialized_to_ruby(ruby, &rb_self.inner.health())
    }
}

pub(crate) fn define(ruby: &Ruby, native: magnus::RModule) -> Result<(), Error> {
    use magnus::{Module, method};
    let class = native.define_class("Worker", ruby.class_object())?;
    class.undef_default_alloc_func();
    class.define_method("task_type", method!(RbWorker::task_type, 0))?;
    class.define_method("domain", method!(RbWorker::domain, 0))?;
    class.define_method("concurrency", method!(RbWorker::concurrency, 0))?;
    class.define_method("poll_interval", method!(RbWorker::poll_interval, 0))?;
    class.define_method("poll_timeout", method!(RbWorker::poll_timeout, 0))?;
    class.define_method("worker_id", method!(RbWorker::worker_id, 0))?;
    class.define_method("lease_extend?", method!(RbWorker::lease_extend, 0))?;
    class.define_method("state", method!(RbWorker::state, 0))?;
    class.define_method("next_tasks", method!(RbWorker::next_tasks, 2))?;
    class.define_method("ready_tasks", method!(RbWorker::ready_tasks, 1))?;
    class.define_method("complete", method!(RbWorker::complete, 6))?;
    class.define_method("pause", method!(RbWorker::pause, 0))?;
    class.define_method("resume", method!(RbWorker::resume, 0))?;
    class.define_method("interrupt", method!(RbWorker::interrupt, 0))?;
    class.define_method("health", method!(RbWorker::health, 0))?;
    Ok(())
}
