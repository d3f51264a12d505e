//! The bundled dev server: the `conductor-devserver` console script runs its command line here.

use pyo3::prelude::*;

use crate::gil;

/// Runs the dev server's command line (`args` with the program name first) with the GIL
/// released until SIGINT or SIGTERM; returns the exit status.
#[pyfunction]
pub(crate) fn run_devserver(py: Python<'_>, args: Vec<String>) -> PyResult<u8> {
    let handle = gil::handle()?;
    gil::wait(py, &handle, conductor_devserver::command::run(args))
}
