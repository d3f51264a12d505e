//! The core's log records (`telemetry::host_log`) for Python's `logging` (logger
//! `conductor_worker`): a Python thread of `conductor_worker._logging` pulls them in batches
//! with the GIL released.

use std::time::Duration;

use conductor_worker::Cancel;
use conductor_worker::telemetry::host_log;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use tracing::Level;

fn python_level(level: Level) -> u8 {
    match level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        Level::TRACE => 5,
    }
}

fn tracing_level(python: u8) -> Option<Level> {
    match python {
        0..=5 => Some(Level::TRACE),
        6..=10 => Some(Level::DEBUG),
        11..=20 => Some(Level::INFO),
        21..=30 => Some(Level::WARN),
        31..=40 => Some(Level::ERROR),
        _ => None,
    }
}

/// Collects the core's records at Python level `level` and above.
#[pyfunction]
pub(crate) fn set_log_level(level: u8) {
    host_log::collect(tracing_level(level));
}

/// Up to `max` records as `(level, target, message, created)`, waiting up to `timeout`
/// seconds for the first with the GIL released. `[]` when none came.
#[pyfunction]
pub(crate) fn next_log_records(
    py: Python<'_>,
    max: usize,
    timeout: f64,
) -> PyResult<Vec<(u8, String, String, f64)>> {
    let wait = Duration::try_from_secs_f64(timeout).map_err(|_| {
        PyValueError::new_err(format!("timeout must be >= 0 seconds, not {timeout}"))
    })?;
    let records = py.detach(|| host_log::next_batch(max, wait, &Cancel::new()));
    Ok(records
        .into_iter()
        .map(|r| (python_level(r.level), r.target, r.message, r.created))
        .collect())
}
