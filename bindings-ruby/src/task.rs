//! `ConductorWorker::Task`: a polled task as Ruby sees it, with the core's claim on it. A
//! task object garbage-collected without a result (its thread was killed between taking it
//! and running it) drops its claim, which abandons the task in the core: its lease is no
//! longer extended, and the server hands it out again after its response timeout.

use std::sync::Mutex;

use conductor_worker::api::JsonObject;
use conductor_worker::host::ProcessBound;
use conductor_worker::{Claim, ClaimedTask};
use magnus::{Error, RHash, Ruby};
use tokio::runtime::Handle;

use crate::errors;
use crate::gvl::fork_check;
use crate::json;

#[magnus::wrap(class = "ConductorWorker::Task", free_immediately, size)]
pub(crate) struct RbTask {
    /// The task without its input, which lives in `raw_input` until Ruby takes it.
    pub(crate) task: conductor_worker::Task,
    /// The input as the core parsed it, given up when Ruby takes it (`native_take_input`),
    /// so that a large input is held once, as Ruby objects, while the handler runs.
    raw_input: Mutex<Option<JsonObject>>,
    /// Taken by `Worker#complete`; leaked, not dropped, in a forked child.
    claim: Mutex<Option<ProcessBound<Claim>>>,
    worker: ProcessBound<conductor_worker::Worker>,
    handle: Handle,
}

impl RbTask {
    pub(crate) fn new(
        claimed: ClaimedTask,
        worker: &conductor_worker::Worker,
        handle: &Handle,
    ) -> Self {
        let ClaimedTask {
            mut task, claim, ..
        } = claimed;
        let raw_input = std::mem::take(&mut task.input_data);
        Self {
            task,
            raw_input: Mutex::new(Some(raw_input)),
            claim: Mutex::new(Some(ProcessBound::new(claim))),
            worker: ProcessBound::new(worker.clone()),
            handle: handle.clone(),
        }
    }

    /// The claim, the first time (`None` once the task was completed).
    pub(crate) fn take_claim(&self) -> Option<ProcessBound<Claim>> {
        self.claim
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    pub(crate) fn task_id(&self) -> String {
        self.task.task_id.clone()
    }
    fn task_type(&self) -> String {
        self.task.task_type.clone()
    }
    fn task_def_name(&self) -> String {
        self.task.task_def_name.clone()
    }
    fn reference_task_name(&self) -> String {
        self.task.reference_task_name.clone()
    }
    fn workflow_instance_id(&self) -> String {
        self.task.workflow_instance_id.clone()
    }
    fn workflow_type(&self) -> String {
        self.task.workflow_type.clone()
    }
    fn retry_count(&self) -> u32 {
        self.task.retry_count
    }
    fn poll_count(&self) -> u32 {
        self.task.poll_count
    }
    fn correlation_id(&self) -> Option<String> {
        self.task.correlation_id.clone()
    }
    fn domain(&self) -> Option<String> {
        self.task.domain.clone()
    }
    fn response_timeout_seconds(&self) -> u64 {
        self.task.response_timeout_seconds
    }
    fn callback_after_seconds(&self) -> u64 {
        self.task.callback_after_seconds
    }
    fn iteration(&self) -> u32 {
        self.task.iteration
    }
    fn scheduled_time(&self) -> i64 {
        self.task.scheduled_time
    }
    fn start_time(&self) -> i64 {
        self.task.start_time
    }
    fn worker_id(&self) -> Option<String> {
        self.task.worker_id.clone()
    }

    /// The task's input as a Hash (String keys, or Symbols with `symbolize_keys`), the first
    /// time; nil after that (the Ruby layer keeps what it took).
    fn take_input(ruby: &Ruby, rb_self: &Self, symbolize_keys: bool) -> Option<RHash> {
        let raw = rb_self
            .raw_input
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()?;
        Some(json::object_to_ruby(ruby, &raw, symbolize_keys))
    }

    /// Output stored by earlier `IN_PROGRESS` updates of this task.
    fn output_data(ruby: &Ruby, rb_self: &Self) -> RHash {
        json::object_to_ruby(ruby, &rb_self.task.output_data, false)
    }

    /// Sends a line to the task's execution log now.
    fn log(&self, line: String) -> Result<(), Error> {
        fork_check(&self.worker, "Task")?;
        let _guard = self.handle.enter();
        self.worker
            .log(&self.task.task_id, line)
            .map_err(errors::to_ruby)
    }

    fn inspect(&self) -> String {
        format!(
            "#<ConductorWorker::Task task_type={:?} task_id={:?} workflow_instance_id={:?} retry_count={} poll_count={}>",
            self.task.task_type,
            self.task.task_id,
            self.task.workflow_instance_id,
            self.task.retry_count,
            self.task.poll_count
        )
    }
}

pub(crate) fn define(ruby: &Ruby, module: magnus::RModule) -> Result<(), Error> {
    use magnus::{Module, method, prelude::*};
    let class = module.define_class("Task", ruby.class_object())?;
    class.undef_default_alloc_func();
    class.define_method("task_id", method!(RbTask::task_id, 0))?;
    class.define_method("task_type", method!(RbTask::task_type, 0))?;
    class.define_method("task_def_name", method!(RbTask::task_def_name, 0))?;
    class.define_method(
        "reference_task_name",
        method!(RbTask::reference_task_name, 0),
    )?;
    class.define_method(
        "workflow_instance_id",
        method!(RbTask::workflow_instance_id, 0),
    )?;
    class.define_method("workflow_id", method!(RbTask::workflow_instance_id, 0))?;
    class.define_method("workflow_type", method!(RbTask::workflow_type, 0))?;
    class.define_method("retry_count", method!(RbTask::retry_count, 0))?;
    class.define_method("poll_count", method!(RbTask::poll_count, 0))?;
    class.define_method("correlation_id", method!(RbTask::correlation_id, 0))?;
    class.define_method("domain", method!(RbTask::domain, 0))?;
    class.define_method(
        "response_timeout_seconds",
        method!(RbTask::response_timeout_seconds, 0),
    )?;
    class.define_method(
        "callback_after_seconds",
        method!(RbTask::callback_after_seconds, 0),
    )?;
    class.define_method("iteration", method!(RbTask::iteration, 0))?;
    class.define_method("scheduled_time", method!(RbTask::scheduled_time, 0))?;
    class.define_method("start_time", method!(RbTask::start_time, 0))?;
    class.define_method("worker_id", method!(RbTask::worker_id, 0))?;
    class.define_method("native_take_input", method!(RbTask::take_input, 1))?;
    class.define_method("output_data", method!(RbTask::output_data, 0))?;
    class.define_method("log", method!(RbTask::log, 1))?;
    class.define_method("inspect", method!(RbTask::inspect, 0))?;
    class.define_method("to_s", method!(RbTask::inspect, 0))?;
    Ok(())
}
