//! Core errors as the exceptions of `conductor_worker.errors`: the class is the one named by the
//! error's kind (the module defines one per kind of `conductor_worker::ERROR_KINDS`, which the
//! tests check), and the error's fields (`setting`, `server`, `status`, ..., `retryable`) are its
//! attributes.

use conductor_worker::Error;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::json;

const MODULE: &str = "conductor_worker.errors";

/// The exception for `error`. Falls back to `RuntimeError` only if the Python package itself
/// is broken (its errors module cannot be imported).
pub(crate) fn to_py(error: Error) -> PyErr {
    Python::attach(|py| build(py, &error).unwrap_or_else(|e| e))
}

fn build(py: Python<'_>, error: &Error) -> PyResult<PyErr> {
    let exception = py
        .import(MODULE)?
        .getattr(error.kind())?
        .call1((error.to_string(),))?;
    for (name, value) in error.fields() {
        exception.setattr(name, json::field_to_py(py, value)?)?;
    }
    Ok(PyErr::from_value(exception))
}

/// The kinds of core errors with their fields, for the tests to check the classes against.
#[pyfunction]
pub(crate) fn error_kinds() -> Vec<(&'static str, Vec<&'static str>)> {
    conductor_worker::ERROR_KINDS
        .iter()
        .map(|(kind, fields)| (*kind, fields.to_vec()))
        .collect()
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
