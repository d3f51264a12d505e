//! The `conductor_worker._native` extension module: the Rust core seen from Python. Each
//! module here matches a concept of the Python package; the Python layer on top
//! (`conductor_worker`) is what users import.

mod devserver;
mod errors;
mod gil;
mod json;
mod logging;
mod runtime;
mod task;
mod worker;

use pyo3::prelude::*;

/// The version of the Rust core this extension was built from.
#[pyfunction]
fn core_version() -> &'static str {
    conductor_worker::VERSION
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(core_version, m)?)?;
    m.add_function(wrap_pyfunction!(logging::set_log_level, m)?)?;
    m.add_function(wrap_pyfunction!(logging::next_log_records, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::option_tables, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::check_worker_options, m)?)?;
    m.add_function(wrap_pyfunction!(errors::error_kinds, m)?)?;
    m.add_function(wrap_pyfunction!(devserver::run_devserver, m)?)?;
    m.add_class::<runtime::PyRuntime>()?;
    m.add_class::<worker::PyWorker>()?;
    m.add_class::<task::PyTask>()?;
    Ok(())
}
