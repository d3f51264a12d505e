//! The core's `tracing` records for a host language's logger (Python `logging`, Ruby
//! `Logger`), pulled in batches.
//!
//! The hot path never touches the host: a record at or above the level the host asked for is
//! formatted and pushed into a bounded per-process queue (dropped when the queue is full, so a
//! slow logger never stalls polling); one host thread drains it with [`next_batch`]. Records
//! of other crates are not collected.
//!
//! Fork-safe: the queue is found through an atomic pointer tagged with the process's place in
//! its fork lineage (counted by a `pthread_atfork` handler, so no `getpid` per record), and no
//! lock is taken on the way in. A forked child, which may have inherited the parent's queue
//! with its receiving lock held, makes a queue of its own and leaks the parent's.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicPtr, AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, Once};
use std::time::{Duration, SystemTime};

use super::pull::drain;
use crate::cancel::Cancel;
use crate::host::lineage;

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

/// The queue of one process: made by the first record or drain in it.
struct Queue {
    lineage: (u32, Option<u32>),
    tx: SyncSender<LogRecord>,
    rx: Mutex<Receiver<LogRecord>>,
}

static QUEUE_OF_PROCESS: AtomicPtr<Queue> = AtomicPtr::new(std::ptr::null_mut());

fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// This process's queue, made on first use (in a forked child: made anew).
fn queue() -> &'static Queue {
    let lineage = lineage();
    let current = QUEUE_OF_PROCESS.load(Ordering::Acquire);
    // SAFETY: a non-null pointer was made by `Box::leak` below and is never freed.
    if let Some(queue) = unsafe { current.as_ref() }
        && queue.lineage == lineage
    {
        return queue;
    }
    let (tx, rx) = sync_channel(QUEUE);
    let fresh = Box::into_raw(Box::new(Queue {
        lineage,
        tx,
        rx: Mutex::new(rx),
    }));
    match QUEUE_OF_PROCESS.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: `fresh` was just leaked above; the inherited queue is leaked, never freed.
        Ok(_) => unsafe { &*fresh },
        Err(installed) => {
            // Another thread of this process made one first: use it, free ours.
            // SAFETY: `fresh` was never shared; `installed` is a leaked queue.
            unsafe {
                drop(Box::from_raw(fresh));
                &*installed
            }
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
/// let never = conductor_worker::Cancel::new();
/// assert!(host_log::next_batch(10, std::time::Duration::ZERO, &never).is_empty());
/// ```
pub fn collect(level: Option<Level>) {
    MAX_LEVEL.store(level.as_ref().map_or(0, severity), Ordering::Relaxed);
    INSTALL.call_once(|| {
        let _ =
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(HostLayer));
    });
    tracing::callsite::rebuild_interest_cache();
}

/// Up to `max` records: waits up to `wait` for the first (less if `cancel` fires), then takes
/// what is already queued. Empty when nothing came. One host thread should drain; several may,
/// each getting some.
pub fn next_batch(max: usize, wait: Duration, cancel: &Cancel) -> Vec<LogRecord> {
    let rx = queue().rx.lock().unwrap_or_else(|p| p.into_inner());
    drain(&rx, max, wait, cancel)
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
        let _ = queue().tx.try_send(record);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A child forked while the parent's drain thread waits on the queue (holding its lock)
    /// logs and drains on a queue of its own instead of waiting forever for the parent's.
    #[test]
    fn a_forked_child_gets_a_queue_of_its_own() {
        collect(Some(Level::WARN));
        let never = Cancel::new();
        let drainer = std::thread::spawn(move || next_batch(1, Duration::from_secs(3), &never));
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: the child only logs through the core's subscriber, drains and exits.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            tracing::warn!(target: "conductor_worker::fork_test", "from the child");
            let got = next_batch(10, Duration::from_secs(2), &Cancel::new());
            let ok = got.iter().any(|r| r.message == "from the child");
            // SAFETY: ends the child at once, running nothing of the parent's.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut status = 0;
        // SAFETY: polls the child made above.
        while unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) } == 0 {
            if std::time::Instant::now() > deadline {
                // SAFETY: the child made above, stuck.
                unsafe { libc::kill(child, libc::SIGKILL) };
                panic!("the forked child hung on the parent's log queue");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "{status}"
        );
        let _ = drainer.join();
    }
}
