//! The `conductor_worker._native` extension module: the Rust core seen from Python.

use pyo3::prelude::*;

/// The version of the Rust core this extension was built from.
#[pyfunction]
fn core_version() -> &'static str {
    conductor_worker::VERSION
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(core_version, m)?)?;
    Ok(())
}
