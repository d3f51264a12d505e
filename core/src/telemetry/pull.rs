//! How a host language takes what the core has to tell it (events for its listeners, log
//! records for its logger): one host thread pulls batches from a bounded queue, waiting with
//! its interpreter lock released, so no core thread ever calls into a host.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::EventField;
use crate::cancel::Cancel;

/// How often a wait looks at its [`Cancel`].
const SLICE: Duration = Duration::from_millis(100);

/// Up to `max` items of `rx`: waits up to `wait` for the first (less if `cancel` fires), then
/// takes what is already queued. Empty when nothing came.
pub(crate) fn drain<T>(rx: &Receiver<T>, max: usize, wait: Duration, cancel: &Cancel) -> Vec<T> {
    let until = Instant::now() + wait;
    let mut batch = Vec::new();
    while batch.is_empty() && !cancel.is_cancelled() {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(SLICE)) {
            Ok(item) => batch.push(item),
            Err(RecvTimeoutError::Timeout) if left > SLICE => {}
            Err(_) => break,
        }
    }
    while batch.len() < max {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    batch
}

/// One event as a host sees it: its name (`"poll_completed"`) and its fields.
pub type EventRecord = (&'static str, Vec<(&'static str, EventField)>);

/// Events since the queue was made, for a host to pull ([`Runtime::event_queue`](crate::Runtime::event_queue)).
/// Bounded: when the host does not keep up, the newest events are not kept.
pub struct EventQueue {
    rx: Mutex<Receiver<EventRecord>>,
}

/// Events a host has not taken yet; beyond this, new ones are not kept.
const EVENT_QUEUE: usize = 65_536;

impl EventQueue {
    /// A queue and the sender the runtime's listener feeds.
    pub(crate) fn new() -> (Arc<Self>, SyncSender<EventRecord>) {
        let (tx, rx) = sync_channel(EVENT_QUEUE);
        (Arc::new(Self { rx: Mutex::new(rx) }), tx)
    }

    /// Up to `max` events: waits up to `wait` for the first (less if `cancel` fires), then
    /// takes what is already queued. Empty when none came.
    pub fn next_batch(&self, max: usize, wait: Duration, cancel: &Cancel) -> Vec<EventRecord> {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
        drain(&rx, max, wait, cancel)
    }
}
