//! `Task`: a polled task as Python sees it. Input and output are converted to Python objects
//! on first access only.

use conductor_worker::ClaimedTask;
use conductor_worker::host::HostTask;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use crate::json;

/// A task handed to this process: its ids, counters and input.
#[pyclass(frozen, name = "Task", module = "conductor_worker._native")]
pub(crate) struct PyTask {
    /// The task, its input until converted, and its claim until `Worker.complete` (a task
    /// garbage-collected with its claim abandons it: the server hands it out again).
    pub(crate) held: HostTask,
    input: PyOnceLock<Py<PyDict>>,
}

impl PyTask {
    pub(crate) fn new(claimed: ClaimedTask) -> Self {
        Self {
            held: HostTask::new(claimed),
            input: PyOnceLock::new(),
        }
    }
}

#[pymethods]
impl PyTask {
    #[getter]
    fn task_id(&self) -> &str {
        &self.held.task.task_id
    }
    #[getter]
    fn task_type(&self) -> &str {
        &self.held.task.task_type
    }
    #[getter]
    fn task_def_name(&self) -> &str {
        &self.held.task.task_def_name
    }
    #[getter]
    fn reference_task_name(&self) -> &str {
        &self.held.task.reference_task_name
    }
    #[getter]
    fn workflow_instance_id(&self) -> &str {
        &self.held.task.workflow_instance_id
    }
    #[getter]
    fn workflow_type(&self) -> &str {
        &self.held.task.workflow_type
    }
    #[getter]
    fn retry_count(&self) -> u32 {
        self.held.task.retry_count
    }
    #[getter]
    fn poll_count(&self) -> u32 {
        self.held.task.poll_count
    }
    #[getter]
    fn correlation_id(&self) -> Option<&str> {
        self.held.task.correlation_id.as_deref()
    }
    #[getter]
    fn domain(&self) -> Option<&str> {
        self.held.task.domain.as_deref()
    }
    #[getter]
    fn response_timeout_seconds(&self) -> u64 {
        self.held.task.response_timeout_seconds
    }
    #[getter]
    fn callback_after_seconds(&self) -> u64 {
        self.held.task.callback_after_seconds
    }
    #[getter]
    fn iteration(&self) -> u32 {
        self.held.task.iteration
    }
    #[getter]
    fn scheduled_time(&self) -> i64 {
        self.held.task.scheduled_time
    }
    #[getter]
    fn start_time(&self) -> i64 {
        self.held.task.start_time
    }
    #[getter]
    fn worker_id(&self) -> Option<&str> {
        self.held.task.worker_id.as_deref()
    }
    /// The task's input (the same dict on every access).
    #[getter]
    fn input_data<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = self.input.get_or_try_init(py, || {
            let raw = self.held.take_input().unwrap_or_default();
            Ok::<_, PyErr>(json::object_to_py(py, &raw)?.unbind())
        })?;
        Ok(dict.bind(py).clone())
    }
    /// Output stored by earlier `IN_PROGRESS` updates of this task.
    #[getter]
    fn output_data<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        json::object_to_py(py, &self.held.task.output_data)
    }

    fn __repr__(&self) -> String {
        format!(
            "Task(task_type={:?}, task_id={:?}, workflow_instance_id={:?}, retry_count={}, poll_count={})",
            self.held.task.task_type,
            self.held.task.task_id,
            self.held.task.workflow_instance_id,
            self.held.task.retry_count,
            self.held.task.poll_count
        )
    }
}
