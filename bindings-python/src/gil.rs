//! Waiting in Rust from Python: the process's tokio runtime, waits with the GIL released that
//! come back often enough for Python to run its signal handlers, and the fork check. The one
//! place that decides how a Python thread waits (Ruby's counterpart is `gvl.rs`).

use std::future::Future;
use std::time::Duration;

use conductor_worker::host::{ProcessBound, process_runtime};
use pyo3::prelude::*;
use tokio::runtime::Handle;

use crate::errors;

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
