//! The core's `tracing` records for a host language's logger (Python `logging`, Ruby
//! `Logger`), pulled in batches.
//!
//! The hot path never touches the host: a record at or above the level the host asked for is
//! formatted and pushed into a bounded per-process queue (dropped when the queue is full, so a
//! slow logger never stalls polling); one host thread drains it with [`next_batch`]. Records
//! of other crates are not collected. After `fork` the child starts with an empty queue of its
//! own.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant, SystemTime};

use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

const QUEUE: usize = 4096;

/// One log record of the core.
#[derive(Debug, Clone)]
pub struct LogRecord {
    /// Its level.
    pub level: Level,
    /// The module it comes from (`conductor_worker::runner::delivery`).
    pub target: String,
    /// The message, then the record's fields as ` name=value`.
    pub message: String,
    /// When it was recorded, in seconds since the Unix epoch.
    pub created: f64,
}

/// The least severe level collected, as a number: 0 collects nothing, 1 is ERROR ... 5 TRACE.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(0);
static INSTALL: Once = Once::new();

type Queue = (SyncSender<LogRecord>, Arc<Mutex<Receiver<LogRecord>>>);
static QUEUES: Mutex<Option<(u32, Queue)>> = Mutex::new(None);

fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

fn queue() -> Queue {
    let pid = std::process::id();
    let mut slot = QUEUES.lock().unwrap_or_else(|p| p.into_inner());
    match slot.as_ref() {
        Some((owner, q)) if *owner == pid => q.clone(),
        _ => {
            let (tx, rx) = sync_channel(QUEUE);
            let q = (tx, Arc::new(Mutex::new(rx)));
            *slot = Some((pid, q.clone()));
            q
        }
    }
}

/// Starts collecting the core's records at `level` and above (`None`: none at all). The first
/// call installs the collecting subscriber as the process's global default; if another
/// library installed one first, the core's records go there instead and none are collected.
///
/// ```
/// use conductor_worker::telemetry::host_log;
/// host_log::collect(Some(tracing::Level::INFO));
/// assert!(host_log::next_batch(10, std::time::Duration::ZERO).is_empty());
/// ```
pub fn collect(level: Option<Level>) {
    MAX_LEVEL.store(level.as_ref().map_or(0, severity), Ordering::Relaxed);
    INSTALL.call_once(|| {
        let _ =
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(HostLayer));
    });
    tracing::callsite::rebuild_interest_cache();
}

/// Up to `max` records: waits up to `wait` for the first, then takes what is already queued.
/// Empty when nothing came. One host thread should drain; several may, each getting some.
pub fn next_batch(max: usize, wait: Duration) -> Vec<LogRecord> {
    let (_, rx) = queue();
    let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
    let mut batch = Vec::new();
    let until = Instant::now() + wait;
    match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        Ok(r) => batch.push(r),
        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return batch,
    }
    while batch.len() < max {
        match rx.try_recv() {
            Ok(r) => batch.push(r),
            Err(_) => break,
        }
    }
    batch
}

struct HostLayer;

impl<S: Subscriber> Layer<S> for HostLayer {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if metadata.target().starts_with("conductor_worker") {
            // The level can change at run time, so ask every time.
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        severity(metadata.level()) <= MAX_LEVEL.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut visitor = Message::default();
        event.record(&mut visitor);
        let record = LogRecord {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message: visitor.message + &visitor.fields,
            created: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        };
        // A full queue means the host cannot keep up: lose records, never stall the core.
        let _ = queue().0.try_send(record);
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
