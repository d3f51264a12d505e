//! The process's tokio runtime and the fork check, and the `Runtime` class: servers,
//! workers and their lifecycle.

use std::future::Future;
use std::time::Duration;

use conductor_worker::config::{JournalConfig, ProcessEnv};
use conductor_worker::host::{ProcessBound, process_runtime};
use conductor_worker::runtime::StopReport;
use conductor_worker::{Credentials, RuntimeOptions, ServerConfig, TaskDef, WorkerOptions};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList};
use tokio::runtime::Handle;

use crate::errors;
use crate::worker::{PyWorker, health_dict};

/// How often a thread waiting in Rust comes back to let Python run signal handlers (Ctrl-C).
pub(crate) const SIGNAL_SLICE: Duration = Duration::from_millis(200);

/// The tokio runtime of this process (rebuilt in a forked child).
pub(crate) fn handle() -> PyResult<Handle> {
    process_runtime().map_err(|e| errors::internal(format!("cannot start the tokio runtime: {e}")))
}

/// Runs `future` on the runtime and waits for it with the GIL released, coming back every
/// [`SIGNAL_SLICE`] so that Ctrl-C raises `KeyboardInterrupt` (the future is then aborted).
pub(crate) fn wait<T, F>(py: Python<'_>, handle: &Handle, future: F) -> PyResult<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let task = handle.spawn(async move {
        let _ = tx.send(future.await);
    });
    let mut rx = rx;
    loop {
        // The receiver goes in and comes back out: a Receiver is not Sync, so it cannot be
        // borrowed across the detach.
        let (back, received) = py.detach(move || {
            let r = rx.recv_timeout(SIGNAL_SLICE);
            (rx, r)
        });
        rx = back;
        match received {
            Ok(value) => return Ok(value),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Err(e) = py.check_signals() {
                    task.abort();
                    return Err(e);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(errors::internal(
                    "the operation ended without a result (it panicked; see the logs)",
                ));
            }
        }
    }
}

pub(crate) fn fork_check<T>(bound: &ProcessBound<T>, what: &str) -> PyResult<()> {
    bound.check().map(|_| ()).map_err(|pid| {
        errors::internal(format!(
            "this {what} was created in process {pid} and cannot be used after fork(): \
             create a new Runner in the child process"
        ))
    })
}

fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        PyValueError::new_err(format!(
            "{name} must be a number of seconds >= 0, not {value}"
        ))
    })
}

/// The worker runtime: servers, workers, start/stop, health and metrics.
#[pyclass(frozen, name = "Runtime", module = "conductor_worker._native")]
pub(crate) struct PyRuntime {
    inner: ProcessBound<conductor_worker::Runtime>,
    handle: Handle,
}

type ServerSpec = (String, Option<String>, Option<String>);

#[pymethods]
impl PyRuntime {
    /// Options not given here come from the environment (`CONDUCTOR_SERVER_URL`, ...).
    #[new]
    #[pyo3(signature = (servers=None, *, journal=None, metrics_port=None, request_timeout=None,
                        breaker_failures=None, breaker_reset=None,
                        external_payload_threshold_kb=None))]
    fn new(
        servers: Option<Vec<ServerSpec>>,
        journal: Option<String>,
        metrics_port: Option<u16>,
        request_timeout: Option<f64>,
        breaker_failures: Option<u32>,
        breaker_reset: Option<f64>,
        external_payload_threshold_kb: Option<u64>,
    ) -> PyResult<Self> {
        let handle = handle()?;
        let mut options = RuntimeOptions::from_env(&ProcessEnv).map_err(errors::to_py)?;
        if let Some(servers) = servers {
            options.servers = servers
                .into_iter()
                .map(|(url, key, secret)| {
                    let server = ServerConfig::new(&url).map_err(errors::to_py)?;
                    Ok(match (key, secret) {
                        (Some(k), Some(s)) => server.with_credentials(Credentials::new(k, s)),
                        (None, None) => server,
                        _ => {
                            return Err(PyValueError::new_err(format!(
                                "server {url}: give both key_id and key_secret, or neither"
                            )));
                        }
                    })
                })
                .collect::<PyResult<_>>()?;
        }
        if let Some(journal) = journal {
            options.journal = JournalConfig::parse(&journal);
        }
        if metrics_port.is_some() {
            options.metrics_port = metrics_port;
        }
        if let Some(t) = request_timeout {
            options.request_timeout = seconds("request_timeout", t)?;
        }
        if let Some(n) = breaker_failures {
            options.breaker_failure_threshold = n.max(1);
        }
        if let Some(t) = breaker_reset {
            options.breaker_reset = seconds("breaker_reset", t)?;
        }
        if let Some(kb) = external_payload_threshold_kb {
            options
                .set_external_payload_threshold_kb(kb)
                .map_err(errors::to_py)?;
        }
        // Runtime::with_handle spawns nothing, but it must run inside the runtime's context for
        // the HTTP clients it builds.
        let _guard = handle.enter();
        let inner = conductor_worker::Runtime::with_handle(options, handle.clone())
            .map_err(errors::to_py)?;
        Ok(Self {
            inner: ProcessBound::new(inner),
            handle,
        })
    }

    #[pyo3(signature = (task_type, *, concurrency=None, poll_interval=None, poll_timeout=None,
                        domain=None, worker_id=None, lease_extend=None, paused=None, register=None))]
    #[allow(clippy::too_many_arguments)]
    fn add_worker(
        &self,
        task_type: String,
        concurrency: Option<usize>,
        poll_interval: Option<f64>,
        poll_timeout: Option<f64>,
        domain: Option<String>,
        worker_id: Option<String>,
        lease_extend: Option<bool>,
        paused: Option<bool>,
        register: Option<Bound<'_, PyAny>>,
    ) -> PyResult<PyWorker> {
        fork_check(&self.inner, "Runtime")?;
        let mut options = WorkerOptions::new(task_type);
        if let Some(n) = concurrency {
            options.concurrency = n;
        }
        if let Some(t) = poll_interval {
            options.poll_interval = seconds("poll_interval", t)?;
        }
        if let Some(t) = poll_timeout {
            options.poll_timeout = seconds("poll_timeout", t)?;
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
        if let Some(register) = register {
            if let Ok(b) = register.cast::<PyBool>() {
                if b.is_true() {
                    options.task_def = Some(TaskDef::new(options.task_type.clone()));
                }
            } else {
                options.task_def = Some(task_def(&options.task_type, &register)?);
            }
        }
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
    fn stop<'py>(&self, py: Python<'py>, timeout: f64) -> PyResult<Bound<'py, PyDict>> {
        fork_check(&self.inner, "Runtime")?;
        let deadline = seconds("timeout", timeout)?;
        let runtime = (*self.inner).clone();
        let report = wait(
            py,
            &self.handle,
            async move { runtime.stop(deadline).await },
        )?;
        report_dict(py, report)
    }

    fn kill<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        fork_check(&self.inner, "Runtime")?;
        let runtime = (*self.inner).clone();
        let report = wait(py, &self.handle, async move { runtime.kill().await })?;
        report_dict(py, report)
    }

    fn health<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for h in self.inner.health() {
            list.append(health_dict(py, &h)?)?;
        }
        Ok(list)
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

    /// `(host, port)` of the metrics and health endpoint, once started.
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

    /// Calls `callback(events)` with batches of `(kind, fields)` tuples, on a thread of its own.
    fn add_listener(&self, callback: Py<PyAny>) -> PyResult<()> {
        fork_check(&self.inner, "Runtime")?;
        crate::events::add_listener(&self.inner, callback);
        Ok(())
    }
}

/// A task definition from a dict in the server's own field names, on top of the defaults of
/// [`TaskDef::new`].
fn task_def(name: &str, dict: &Bound<'_, PyAny>) -> PyResult<TaskDef> {
    let given = crate::json::object_from_py(dict, "register")?;
    TaskDef::with_fields(name, given).map_err(errors::to_py)
}

fn report_dict(py: Python<'_>, report: StopReport) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("abandoned_tasks", report.abandoned_tasks)?;
    d.set_item("journalled_results", report.journalled_results)?;
    d.set_item("returned_tasks", report.returned_tasks)?;
    Ok(d)
}
