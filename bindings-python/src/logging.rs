//! The core's `tracing` records, forwarded to Python's `logging` (logger `conductor_worker`).
//!
//! The hot path never touches Python: a record is formatted and pushed into a bounded queue
//! (dropped when the queue is full); one thread per process drains it and takes the GIL once
//! per batch to hand the records to `conductor_worker._logging.forward`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant, SystemTime};

use pyo3::prelude::*;
use pyo3::types::PyList;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

const QUEUE: usize = 4096;
const BATCH: usize = 512;
const LINGER: Duration = Duration::from_millis(20);

/// Python's level number below which records are not even formatted.
static LEVEL: AtomicU8 = AtomicU8::new(20);
/// Set at interpreter exit: from then on nothing may take the GIL.
pub(crate) static CLOSED: AtomicBool = AtomicBool::new(false);
static SENDER: Mutex<Option<(u32, SyncSender<Record>)>> = Mutex::new(None);
static INSTALL: Once = Once::new();

struct Record {
    level: u8,
    target: String,
    message: String,
    created: f64,
}

fn python_level(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        Level::TRACE => 5,
    }
}

struct PyLogLayer;

impl<S: Subscriber> Layer<S> for PyLogLayer {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if metadata.target().starts_with("conductor_worker") {
            // The level can change at run time (`set_log_level`), so ask every time.
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        python_level(metadata.level()) >= LEVEL.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if !event.metadata().is_event() {
            return;
        }
        let mut visitor = Message::default();
        event.record(&mut visitor);
        let record = Record {
            level: python_level(event.metadata().level()),
            target: event.metadata().target().to_owned(),
            message: visitor.message + &visitor.fields,
            created: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        };
        if let Some(tx) = sender() {
            // A full queue means Python cannot keep up: lose records, never stall the core.
            let _ = tx.try_send(record);
        }
    }
}

#[derive(Default)]
struct Message {
    message: String,
    fields: String,
}

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

/// The queue of this process. After `fork` the parent's forwarding thread does not exist in
/// the child, so the child starts its own.
fn sender() -> Option<SyncSender<Record>> {
    let pid = std::process::id();
    let mut slot = SENDER.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((owner, tx)) = slot.as_ref()
        && *owner == pid
    {
        return Some(tx.clone());
    }
    let (tx, rx) = sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("conductor-worker-logs".into())
        .spawn(move || forward(rx))
        .ok()?;
    *slot = Some((pid, tx.clone()));
    Some(tx)
}

fn forward(rx: Receiver<Record>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let until = Instant::now() + LINGER;
        while batch.len() < BATCH {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(r) => batch.push(r),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if CLOSED.load(Ordering::Acquire) {
            return;
        }
        let _ = Python::try_attach(|py| -> PyResult<()> {
            let records = PyList::empty(py);
            for r in batch {
                records.append((r.level, r.target, r.message, r.created))?;
            }
            py.import("conductor_worker._logging")?
                .getattr("forward")?
                .call1((records,))?;
            Ok(())
        });
    }
}

/// Installs the forwarding subscriber (once per process) and sets the level.
#[pyfunction]
pub(crate) fn set_log_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(PyLogLayer);
        // Another library of this process may have installed its own subscriber first; then
        // the core logs go there instead.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
    tracing::callsite::rebuild_interest_cache();
}

/// Called at interpreter exit: the forwarding threads must not take the GIL any more.
#[pyfunction]
pub(crate) fn close_forwarding() {
    CLOSED.store(true, Ordering::Release);
}
