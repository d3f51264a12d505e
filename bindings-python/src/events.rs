//! Runtime events to a Python callback, in batches: the core calls its listeners one event
//! at a time on its event thread; here they are queued and a thread of ours takes the GIL once
//! per batch.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use conductor_worker::cluster::CircuitState;
use conductor_worker::telemetry::Event;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

const QUEUE: usize = 65_536;
const BATCH: usize = 1024;
const LINGER: Duration = Duration::from_millis(10);

enum Field {
    Str(String),
    Int(u64),
    Float(f64),
    Bool(bool),
}

type Fields = Vec<(&'static str, Field)>;

fn fields(event: &Event) -> (&'static str, Fields) {
    use Field::*;
    let tt = |t: &str| ("task_type", Str(t.to_owned()));
    let id = |t: &str| ("task_id", Str(t.to_owned()));
    let secs = |d: &Duration| ("duration", Float(d.as_secs_f64()));
    match event {
        Event::PollStarted {
            task_type,
            server,
            count,
        } => (
            "poll_started",
            vec![
                tt(task_type),
                ("server", Int(server.0 as u64)),
                ("count", Int(*count as u64)),
            ],
        ),
        Event::PollCompleted {
            task_type,
            server,
            received,
            duration,
        } => (
            "poll_completed",
            vec![
                tt(task_type),
                ("server", Int(server.0 as u64)),
                ("received", Int(*received as u64)),
                secs(duration),
            ],
        ),
        Event::PollFailed {
            task_type,
            server,
            error,
        } => (
            "poll_failed",
            vec![
                tt(task_type),
                ("server", Int(server.0 as u64)),
                ("error", Str(error.clone())),
            ],
        ),
        Event::ExecutionStarted {
            task_type,
            task_id,
            server,
        } => (
            "execution_started",
            vec![tt(task_type), id(task_id), ("server", Int(server.0 as u64))],
        ),
        Event::ExecutionCompleted {
            task_type,
            task_id,
            duration,
        } => (
            "execution_completed",
            vec![tt(task_type), id(task_id), secs(duration)],
        ),
        Event::ExecutionFailed {
            task_type,
            task_id,
            reason,
            duration,
        } => (
            "execution_failed",
            vec![
                tt(task_type),
                id(task_id),
                ("reason", Str(reason.clone())),
                secs(duration),
            ],
        ),
        Event::UpdateDelivered {
            task_type,
            task_id,
            server,
            attempts,
        } => (
            "update_delivered",
            vec![
                tt(task_type),
                id(task_id),
                ("server", Int(server.0 as u64)),
                ("attempts", Int(u64::from(*attempts))),
            ],
        ),
        Event::UpdateFailed {
            task_type,
            task_id,
            server,
            error,
            will_retry,
        } => (
            "update_failed",
            vec![
                tt(task_type),
                id(task_id),
                ("server", Int(server.0 as u64)),
                ("error", Str(error.clone())),
                ("will_retry", Bool(*will_retry)),
            ],
        ),
        Event::WorkerStateChanged { task_type, state } => (
            "worker_state_changed",
            vec![tt(task_type), ("state", Str(state.as_str().to_owned()))],
        ),
        Event::CircuitStateChanged { server, url, state } => (
            "circuit_state_changed",
            vec![
                ("server", Int(server.0 as u64)),
                ("url", Str(url.clone())),
                (
                    "state",
                    Str(match state {
                        CircuitState::Closed => "closed",
                        CircuitState::Open => "open",
                        CircuitState::HalfOpen => "half_open",
                    }
                    .to_owned()),
                ),
            ],
        ),
        Event::PollLoopRestarted {
            task_type,
            server,
            reason,
        } => (
            "poll_loop_restarted",
            vec![
                tt(task_type),
                ("server", Int(server.0 as u64)),
                ("reason", Str(reason.clone())),
            ],
        ),
        other => ("other", vec![("debug", Str(format!("{other:?}")))]),
    }
}

pub(crate) fn add_listener(runtime: &conductor_worker::Runtime, callback: Py<PyAny>) {
    let (tx, rx) = sync_channel::<(&'static str, Fields)>(QUEUE);
    runtime.add_listener(move |event| {
        let _ = tx.try_send(fields(event));
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
                                Field::Str(s) => d.set_item(k, s)?,
                                Field::Int(i) => d.set_item(k, i)?,
                                Field::Float(f) => d.set_item(k, f)?,
                                Field::Bool(b) => d.set_item(k, b)?,
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
