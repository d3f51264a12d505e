//! `Task`: a polled task as Python sees it. Input and output are converted to Python objects
//! on first access only.

use std::sync::Mutex;

use conductor_worker::api::JsonObject;
use conductor_worker::host::ProcessBound;
use conductor_worker::{Claim, ClaimedTask};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use crate::json;

/// A task handed to this process: its ids, counters and input.
#[pyclass(frozen, name = "Task", module = "conductor_worker._native")]
pub(crate) struct PyTask {
    /// The task without its input, which lives in `raw_input` until Python asks for it.
    pub(crate) task: conductor_worker::Task,
    /// The input as the core parsed it; given up once converted, so that a large input is
    /// held once (as Python objects) while the function runs, not twice.
    raw_input: Mutex<Option<JsonObject>>,
    input: PyOnceLock<Py<PyDict>>,
    /// Taken by `Worker.complete`; a task garbage-collected with its claim abandons it (the
    /// core stops extending its lease; the server hands it out again).
    claim: Mutex<Option<ProcessBound<Claim>>>,
}

impl PyTask {
    pub(crate) fn new(claimed: ClaimedTask) -> Self {
        let ClaimedTask {
            mut task, claim, ..
        } = claimed;
        let raw_input = std::mem::take(&mut task.input_data);
        Self {
            task,
            raw_input: Mutex::new(Some(raw_input)),
            input: PyOnceLock::new(),
            claim: Mutex::new(Some(ProcessBound::new(claim))),
        }
    }

    /// The claim, the first time (`None` once the task was completed).
    pub(crate) fn take_claim(&self) -> Option<ProcessBound<Claim>> {
        self.claim
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

#[pymethods]
impl PyTask {
    #[getter]
    fn task_id(&self) -> &str {
        &self.task.task_id
    }
    #[getter]
    fn task_type(&self) -> &str {
        &self.task.task_type
    }
    #[getter]
    fn task_def_name(&self) -> &str {
        &self.task.task_def_name
    }
    #[getter]
    fn reference_task_name(&self) -> &str {
        &self.task.reference_task_name
    }
    #[getter]
    fn workflow_instance_id(&self) -> &str {
        &self.task.workflow_instance_id
    }
    #[getter]
    fn workflow_type(&self) -> &str {
        &self.task.workflow_type
    }
    #[getter]
    fn retry_count(&self) -> u32 {
        self.task.retry_count
    }
    #[getter]
    fn poll_count(&self) -> u32 {
        self.task.poll_count
    }
    #[getter]
    fn correlation_id(&self) -> Option<&str> {
        self.task.correlation_id.as_deref()
    }
    #[getter]
    fn domain(&self) -> Option<&str> {
        self.task.domain.as_deref()
    }
    #[getter]
    fn response_timeout_seconds(&self) -> u64 {
        self.task.response_timeout_seconds
    }
    #[getter]
    fn callback_after_seconds(&self) -> u64 {
        self.task.callback_after_seconds
    }
    #[getter]
    fn iteration(&self) -> u32 {
        self.task.iteration
    }
    #[getter]
    fn scheduled_time(&self) -> i64 {
        self.task.scheduled_time
    }
    #[getter]
    fn start_time(&self) -> i64 {
        self.task.start_time
    }
    #[getter]
    fn worker_id(&self) -> Option<&str> {
        self.task.worker_id.as_deref()
    }
    /// The task's input (the same dict on every access).
    #[getter]
    fn input_data<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = self.input.get_or_try_init(py, || {
            // The GIL serializes this initialisation, so the lock is never contended.
            let mut raw = self
                .raw_input
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let dict = json::object_to_py(py, raw.as_ref().unwrap_or(&JsonObject::new()))?;
            *raw = None;
            Ok::<_, PyErr>(dict.unbind())
        })?;
        Ok(dict.bind(py).clone())
    }
    /// Output stored by earlier `IN_PROGRESS` updates of this task.
    #[getter]
    fn output_data<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        json::object_to_py(py, &self.task.output_data)
    }

    fn __repr__(&self) -> String {
        format!(
            "Task(task_type={:?}, task_id={:?}, workflow_instance_id={:?}, retry_count={}, poll_count={})",
            self.task.task_type,
            self.task.task_id,
            self.task.workflow_instance_id,
            self.task.retry_count,
            self.task.poll_count
        )
    }
}
