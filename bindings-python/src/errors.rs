//! Core errors as the exceptions of `conductor_worker.errors`, with the fields a handler needs
//! (`setting`, `server`, `status`, ...) as attributes.

use conductor_worker::Error;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

const MODULE: &str = "conductor_worker.errors";

/// The exception for `error`. Falls back to `RuntimeError` only if the Python package itself
/// is broken (its errors module cannot be imported).
pub(crate) fn to_py(error: Error) -> PyErr {
    Python::attach(|py| build(py, &error).unwrap_or_else(|e| e))
}

fn build(py: Python<'_>, error: &Error) -> PyResult<PyErr> {
    let attrs = PyDict::new(py);
    let class = match error {
        Error::Config { setting, value, .. } => {
            attrs.set_item("setting", setting)?;
            attrs.set_item("value", value)?;
            "ConfigError"
        }
        Error::Transport {
            server, timed_out, ..
        } => {
            attrs.set_item("server", server)?;
            attrs.set_item("timed_out", timed_out)?;
            "TransportError"
        }
        Error::Status {
            server,
            status,
            endpoint,
            ..
        } => {
            attrs.set_item("server", server)?;
            attrs.set_item("status", status)?;
            attrs.set_item("endpoint", endpoint)?;
            "StatusError"
        }
        Error::Decode {
            server, endpoint, ..
        } => {
            attrs.set_item("server", server)?;
            attrs.set_item("endpoint", endpoint)?;
            "DecodeError"
        }
        Error::Auth {
            server, retry_in, ..
        } => {
            attrs.set_item("server", server)?;
            attrs.set_item("retry_in", retry_in.as_secs_f64())?;
            "AuthError"
        }
        Error::UnknownTask { worker, task_id } => {
            attrs.set_item("task_type", worker)?;
            attrs.set_item("task_id", task_id)?;
            "UnknownTaskError"
        }
        Error::UnknownWorker(task_type) => {
            attrs.set_item("task_type", task_type)?;
            "UnknownWorkerError"
        }
        Error::NotRunning(_) => "NotRunningError",
        Error::Journal { path, .. } => {
            attrs.set_item("path", path)?;
            "JournalError"
        }
        Error::Metrics { port, .. } => {
            attrs.set_item("port", port)?;
            "MetricsError"
        }
        _ => "ConductorWorkerError",
    };
    attrs.set_item("retryable", error.is_retryable())?;
    let class = py.import(MODULE)?.getattr(class)?;
    let exc = class.call1((error.to_string(),))?;
    for (k, v) in attrs.iter() {
        exc.setattr(k.cast::<pyo3::types::PyString>()?, v)?;
    }
    Ok(PyErr::from_value(exc))
}

/// Anything unexpected on the Rust side (a panicked task, a dead channel), as the package's
/// base exception.
pub(crate) fn internal(message: impl Into<String>) -> PyErr {
    let message = message.into();
    Python::attach(|py| {
        py.import(MODULE)
            .and_then(|m| m.getattr("ConductorWorkerError"))
            .and_then(|c| c.call1((message.clone(),)))
            .map(PyErr::from_value)
            .unwrap_or_else(|_| PyRuntimeError::new_err(message))
    })
}
