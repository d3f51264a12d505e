//! Runtime events to a Python callback, in batches: the core calls its listeners one event
//! at a time on its event thread; here they are queued and a thread of ours takes the GIL once
//! per batch.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use conductor_worker::telemetry::EventField;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

const QUEUE: usize = 65_536;
const BATCH: usize = 1024;
const LINGER: Duration = Duration::from_millis(10);

type Fields = Vec<(&'static str, EventField)>;

pub(crate) fn add_listener(runtime: &conductor_worker::Runtime, callback: Py<PyAny>) {
    let (tx, rx) = sync_channel::<(&'static str, Fields)>(QUEUE);
    runtime.add_listener(move |event| {
        let _ = tx.try_send((event.kind(), event.fields()));
    });
    let spawned = std::thread::Builder::new()
        .name("conductor-worker-events".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                let until = Instant::now() + LINGER;
                while batch.len() < BATCH {
                    match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                        Ok(e) => batch.push(e),
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
                if crate::logging::CLOSED.load(Ordering::Acquire) {
                    return;
                }
                let delivered = Python::try_attach(|py| -> PyResult<()> {
                    let list = PyList::empty(py);
                    for (kind, fields) in batch {
                        let d = PyDict::new(py);
                        for (k, v) in fields {
                            match v {
                                EventField::Str(s) => d.set_item(k, s)?,
                                EventField::Int(i) => d.set_item(k, i)?,
                                EventField::Float(f) => d.set_item(k, f)?,
                                EventField::Bool(b) => d.set_item(k, b)?,
                            }
                        }
                        list.append((kind, d))?;
                    }
                    callback.call1(py, (list,))?;
                    Ok(())
                });
                if let Some(Err(e)) = delivered {
                    tracing::error!(error = %e, "an event listener raised");
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the event forwarding thread");
    }
}
