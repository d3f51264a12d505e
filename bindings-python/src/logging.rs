//! The core's log records (`telemetry::host_log`), forwarded to Python's `logging` (logger
//! `conductor_worker`): one thread per process drains the core's queue and takes the GIL once
//! per batch to hand the records to `conductor_worker._logging.forward`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use conductor_worker::telemetry::host_log;
use pyo3::prelude::*;
use pyo3::types::PyList;
use tracing::Level;

const BATCH: usize = 512;
/// How long the forwarding thread waits before checking whether the interpreter is exiting.
const WAIT: Duration = Duration::from_millis(200);

/// Set at interpreter exit: from then on nothing may take the GIL.
pub(crate) static CLOSED: AtomicBool = AtomicBool::new(false);
/// The process whose forwarding thread is running (a forked child needs its own).
static FORWARDER: Mutex<Option<u32>> = Mutex::new(None);

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

fn forward() {
    while !CLOSED.load(Ordering::Acquire) {
        let batch = host_log::next_batch(BATCH, WAIT);
        if batch.is_empty() || CLOSED.load(Ordering::Acquire) {
            continue;
        }
        let _ = Python::try_attach(|py| -> PyResult<()> {
            let records = PyList::empty(py);
            for r in batch {
                records.append((python_level(r.level), r.target, r.message, r.created))?;
            }
            py.import("conductor_worker._logging")?
                .getattr("forward")?
                .call1((records,))?;
            Ok(())
        });
    }
}

/// Collects the core's records at Python level `level` and above, and starts this process's
/// forwarding thread if it is not running.
#[pyfunction]
pub(crate) fn set_log_level(level: u8) {
    host_log::collect(tracing_level(level));
    let pid = std::process::id();
    let mut forwarder = FORWARDER.lock().unwrap_or_else(|p| p.into_inner());
    if *forwarder != Some(pid) {
        let spawned = std::thread::Builder::new()
            .name("conductor-worker-logs".into())
            .spawn(forward);
        if spawned.is_ok() {
            *forwarder = Some(pid);
        }
    }
}

/// Called at interpreter exit: the forwarding threads must not take the GIL any more.
#[pyfunction]
pub(crate) fn close_forwarding() {
    CLOSED.store(true, Ordering::Release);
}
