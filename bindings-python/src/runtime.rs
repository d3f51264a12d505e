//! The `Runtime` class: servers, workers and their lifecycle, status, metrics and events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use conductor_worker::api::JsonObject;
use conductor_worker::config::ProcessEnv;
use conductor_worker::host::ProcessBound;
use conductor_worker::telemetry::EventQueue;
use conductor_worker::{Cancel, RuntimeOptions, TaskDef, WorkerOptions};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use tokio::runtime::Handle;

use crate::errors;
use crate::gil::{fork_check, handle, wait};
use crate::json;
use crate::worker::PyWorker;

fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        PyValueError::new_err(format!(
            "{name} must be a number of seconds >= 0, not {value}"
        ))
    })
}

/// Options given as a dict of names to values, as JSON for the core (`None`: none given).
fn given_options(options: Option<Bound<'_, PyAny>>, what: &str) -> PyResult<JsonObject> {
    options.map_or_else(|| Ok(JsonObject::new()), |o| json::object_from_py(&o, what))
}

/// Checks worker options as `add_worker` would (without the environment): raises
/// `ConfigError` naming the first bad or unknown one.
#[pyfunction]
#[pyo3(signature = (task_type, options=None))]
pub(crate) fn check_worker_options(
    task_type: String,
    options: Option<Bound<'_, PyAny>>,
) -> PyResult<()> {
    let given = given_options(options, "worker options")?;
    WorkerOptions::from_host(task_type, &given)
        .map(drop)
        .map_err(errors::to_py)
}

/// Every option of the runtime and of a worker, as the core declares them:
/// `{"runtime": [...], "worker": [...]}`, each entry `{name, doc, python_type, env, default}`.
#[pyfunction]
pub(crate) fn option_tables(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    json::to_py(py, &conductor_worker::host::option_tables())
}

/// The worker runtime: servers, workers, start/stop, health and metrics.
#[pyclass(frozen, name = "Runtime", module = "conductor_worker._native")]
pub(crate) struct PyRuntime {
    inner: ProcessBound<conductor_worker::Runtime>,
    handle: Handle,
    events: Mutex<Option<Arc<EventQueue>>>,
}

#[pymethods]
impl PyRuntime {
    /// `options`: the runtime options by name (`conductor_worker::RuntimeOptions::options`);
    /// those not given come from the environment (`CONDUCTOR_SERVER_URL`, ...).
    #[new]
    #[pyo3(signature = (options=None))]
    fn new(options: Option<Bound<'_, PyAny>>) -> PyResult<Self> {
        let handle = handle()?;
        let given = given_options(options, "runtime options")?;
        let options = RuntimeOptions::from_host(&given, &ProcessEnv).map_err(errors::to_py)?;
        // Runtime::with_handle spawns nothing, but it must run inside the runtime's context for
        // the HTTP clients it builds.
        let _guard = handle.enter();
        let inner = conductor_worker::Runtime::with_handle(options, handle.clone())
            .map_err(errors::to_py)?;
        Ok(Self {
            inner: ProcessBound::new(inner),
            handle,
            events: Mutex::new(None),
        })
    }

    /// `options`: the worker options by name (`conductor_worker::WorkerOptions::options`);
    /// the environment overrides them.
    #[pyo3(signature = (task_type, options=None))]
    fn add_worker(
        &self,
        task_type: String,
        options: Option<Bound<'_, PyAny>>,
    ) -> PyResult<PyWorker> {
        fork_check(&self.inner, "Runtime")?;
        let given = given_options(options, "worker options")?;
        let options = WorkerOptions::from_host(task_type, &given).map_err(errors::to_py)?;
        let _guard = self.handle.enter();
        let worker = self.inner.add_worker(options).map_err(errors::to_py)?;
        Ok(PyWorker::new(worker, self.handle.clone()))
    }

    fn start(&self, py: Python<'_>) -> PyResult<()> {
        fork_check(&self.inner, "Runtime")?;
        let runtime = (*self.inner).clone();
        wait(py, &self.handle, async move { runtime.start().await })?.map_err(errors::to_py)
    }

    #[pyo3(signature = (timeout=30.0))]
    fn stop<'py>(&self, py: Python<'py>, timeout: f64) -> PyResult<Bound<'py, PyAny>> {
        fork_check(&self.inner, "Runtime")?;
        let deadline = seconds("timeout", timeout)?;
        let runtime = (*self.inner).clone();
        let report = wait(
            py,
            &self.handle,
            async move { runtime.stop(deadline).await },
        )?;
        json::serialized_to_py(py, &report)
    }

    fn kill<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        fork_check(&self.inner, "Runtime")?;
        let runtime = (*self.inner).clone();
        let report = wait(py, &self.handle, async move { runtime.kill().await })?;
        json::serialized_to_py(py, &report)
    }

    fn health<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json::serialized_to_py(py, &self.inner.health())
    }

    /// `{healthy, pending_results, metrics_addr: (host, port) | None, servers}`.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json::serialized_to_py(py, &self.inner.status())
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

    fn register_task_defs(&self, py: Python<'_>, defs: Vec<Bound<'_, PyAny>>) -> PyResult<()> {
        fork_check(&self.inner, "Runtime")?;
        let defs = defs
            .iter()
            .map(|d| {
                let name: String = d.get_item("name")?.extract()?;
                task_def(&name, d)
            })
            .collect::<PyResult<Vec<_>>>()?;
        let runtime = (*self.inner).clone();
        wait(py, &self.handle, async move {
            runtime.register_task_defs(&defs).await
        })?
        .map_err(errors::to_py)
    }

    /// Starts queueing the runtime's events for `next_events`.
    fn listen(&self) -> PyResult<()> {
        fork_check(&self.inner, "Runtime")?;
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.is_none() {
            *events = Some(self.inner.event_queue());
        }
        Ok(())
    }

    /// Up to `max` events as `(kind, fields)`, waiting up to `timeout` seconds for the first
    /// with the GIL released. `[]` when none came.
    fn next_events<'py>(
        &self,
        py: Python<'py>,
        max: usize,
        timeout: f64,
    ) -> PyResult<Bound<'py, PyList>> {
        let wait = seconds("timeout", timeout)?;
        let queue = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| errors::internal("call listen before next_events"))?;
        let batch = py.detach(|| queue.next_batch(max, wait, &Cancel::new()));
        let list = PyList::empty(py);
        for (kind, fields) in batch {
            let d = PyDict::new(py);
            for (name, value) in fields {
                d.set_item(name, json::field_to_py(py, value)?)?;
            }
            list.append((kind, d))?;
        }
        Ok(list)
    }
}

/// A task definition from a dict in the server's own field names, on top of the defaults of
/// [`TaskDef::new`].
fn task_def(name: &str, dict: &Bound<'_, PyAny>) -> PyResult<TaskDef> {
    let given = json::object_from_py(dict, "task definition")?;
    TaskDef::with_fields(name, given).map_err(errors::to_py)
}
