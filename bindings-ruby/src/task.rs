//! `ConductorWorker::Task`: a polled task as Ruby sees it, with the core's claim on it. A
//! task object garbage-collected without a result (its thread was killed between taking it
//! and running it) drops its claim, which abandons the task in the core: its lease is no
//! longer extended, and the server hands it out again after its response timeout.

use conductor_worker::ClaimedTask;
use conductor_worker::host::{HostTask, ProcessBound};
use magnus::{Error, RHash, Ruby};
use tokio::runtime::Handle;

use crate::errors;
use crate::gvl::fork_check;
use crate::json;

#[magnus::wrap(class = "ConductorWorker::Task", free_immediately, size)]
pub(crate) struct RbTask {
    /// The task, its input until Ruby takes it (`native_take_input`), and its claim until
    /// `Worker#complete`.
    pub(crate) held: HostTask,
    worker: ProcessBound<conductor_worker::Worker>,
    handle: Handle,
}

impl RbTask {
    pub(crate) fn new(
        claimed: ClaimedTask,
        worker: &conductor_worker::Worker,
        handle: &Handle,
    ) -> Self {
        Self {
            held: HostTask::new(claimed),
            worker: ProcessBound::new(worker.clone()),
            handle: handle.clone(),
        }
    }

    pub(crate) fn task_id(&self) -> String {
        self.held.task.task_id.clone()
    }
    fn task_type(&self) -> String {
        self.held.task.task_type.clone()
    }
    fn task_def_name(&self) -> String {
        self.held.task.task_def_name.clone()
    }
    fn reference_task_name(&self) -> String {
        self.held.task.reference_task_name.clone()
    }
    fn workflow_instance_id(&self) -> String {
        self.held.task.workflow_instance_id.clone()
    }
    fn workflow_type(&self) -> String {
        self.held.task.workflow_type.clone()
    }
    fn retry_count(&self) -> u32 {
        self.held.task.retry_count
    }
    fn poll_count(&self) -> u32 {
        self.held.task.poll_count
    }
    fn correlation_id(&self) -> Option<String> {
        self.held.task.correlation_id.clone()
    }
    fn domain(&self) -> Option<String> {
        self.held.task.domain.clone()
    }
    fn response_timeout_seconds(&self) -> u64 {
        self.held.task.response_timeout_seconds
    }
    fn callback_after_seconds(&self) -> u64 {
        self.held.task.callback_after_seconds
    }
    fn iteration(&self) -> u32 {
        self.held.task.iteration
    }
    fn scheduled_time(&self) -> i64 {
        self.held.task.scheduled_time
    }
    fn start_time(&self) -> i64 {
        self.held.task.start_time
    }
    fn external_input_payload_storage_path(&self) -> Option<String> {
        self.held.task.external_input_payload_storage_path.clone()
    }
    fn worker_id(&self) -> Option<String> {
        self.held.task.worker_id.clone()
    }

    /// The task's input as a Hash (String keys, or Symbols with `symbolize_keys`), the first
    /// time; nil after that (the Ruby layer keeps what it took).
    fn take_input(ruby: &Ruby, rb_self: &Self, symbolize_keys: bool) -> Option<RHash> {
        let raw = rb_self.held.take_input()?;
        Some(json::object_to_ruby(ruby, &raw, symbolize_keys))
    }

    /// Output stored by earlier `IN_PROGRESS` updates of this task.
    fn output_data(ruby: &Ruby, rb_self: &Self) -> RHash {
        json::object_to_ruby(ruby, &rb_self.held.task.output_data, false)
    }

    /// Sends a line to the task's execution log now.
    fn log(&self, line: String) -> Result<(), Error> {
        fork_check(&self.worker, "Task")?;
        let _guard = self.handle.enter();
        self.worker
            .log(&self.held.task.task_id, line)
            .map_err(errors::to_ruby)
    }

    fn inspect(&self) -> String {
        format!(
            "#<ConductorWorker::Task task_type={:?} task_id={:?} workflow_instance_id={:?} retry_count={} poll_count={}>",
            self.held.task.task_type,
            self.held.task.task_id,
            self.held.task.workflow_instance_id,
            self.held.task.retry_count,
            self.held.task.poll_count
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
    class.define_method(
        "external_input_payload_storage_path",
        method!(RbTask::external_input_payload_storage_path, 0),
    )?;
    class.define_method("native_take_input", method!(RbTask::take_input, 1))?;
    class.define_method("output_data", method!(RbTask::output_data, 0))?;
    class.define_method("log", method!(RbTask::log, 1))?;
    class.define_method("inspect", method!(RbTask::inspect, 0))?;
    class.define_method("to_s", method!(RbTask::inspect, 0))?;
    Ok(())
}
