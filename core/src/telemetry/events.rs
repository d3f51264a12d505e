//! Events for listeners, delivered off the hot path: the runtime only pushes them into a
//! bounded queue, and one dedicated thread (not a tokio thread, so a listener may take the GIL
//! or block briefly) calls the listeners. When nobody listens, emitting costs one atomic load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::client::ServerId;
use crate::runner::WorkerState;

/// Something that happened in the runtime.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A poll was sent.
    PollStarted {
        /// Task type polled.
        task_type: String,
        /// Server polled.
        server: ServerId,
        /// Number of tasks asked for.
        count: usize,
    },
    /// A poll answered.
    PollCompleted {
        /// Task type polled.
        task_type: String,
        /// Server polled.
        server: ServerId,
        /// Tasks received.
        received: usize,
        /// Time the poll took.
        duration: Duration,
    },
    /// A poll failed.
    PollFailed {
        /// Task type polled.
        task_type: String,
        /// Server polled.
        server: ServerId,
        /// The error.
        error: String,
    },
    /// An executor took a task.
    ExecutionStarted {
        /// Task type.
        task_type: String,
        /// Task id.
        task_id: String,
        /// Server the task came from.
        server: ServerId,
    },
    /// An executor handed back a result that is not a failure.
    ExecutionCompleted {
        /// Task type.
        task_type: String,
        /// Task id.
        task_id: String,
        /// Time from hand-out to result.
        duration: Duration,
    },
    /// An executor handed back a failure.
    ExecutionFailed {
        /// Task type.
        task_type: String,
        /// Task id.
        task_id: String,
        /// The reason given.
        reason: String,
        /// Time from hand-out to result.
        duration: Duration,
    },
    /// The server accepted a result.
    UpdateDelivered {
        /// Task type.
        task_type: String,
        /// Task id.
        task_id: String,
        /// Server it went to.
        server: ServerId,
        /// Attempts it took.
        attempts: u32,
    },
    /// Sending a result failed; it will be retried unless `will_retry` is false.
    UpdateFailed {
        /// Task type.
        task_type: String,
        /// Task id.
        task_id: String,
        /// Server it was sent to.
        server: ServerId,
        /// The error.
        error: String,
        /// Whether the runtime tries again.
        will_retry: bool,
    },
    /// A worker changed state (started, paused, resumed, stopping, stopped).
    WorkerStateChanged {
        /// Task type.
        task_type: String,
        /// New state.
        state: WorkerState,
    },
    /// A server's circuit breaker changed state.
    CircuitStateChanged {
        /// The server.
        server: ServerId,
        /// Its URL.
        url: String,
        /// The new state.
        state: crate::cluster::CircuitState,
    },
    /// The supervisor restarted a poll loop that died or stopped making progress.
    PollLoopRestarted {
        /// Task type.
        task_type: String,
        /// Server of that loop.
        server: ServerId,
        /// Why.
        reason: String,
    },
}

/// A listener: called on the runtime's event thread, one event at a time, in order.
pub type Listener = Arc<dyn Fn(&Event) + Send + Sync>;

const QUEUE: usize = 65_536;

/// The listener registry and the queue to the event thread.
#[derive(Default)]
pub(crate) struct EventBus {
    enabled: AtomicBool,
    listeners: Arc<RwLock<Vec<Listener>>>,
    sender: Mutex<Option<SyncSender<Event>>>,
    dropped: AtomicU64,
}

impl EventBus {
    pub(crate) fn add_listener(&self, listener: Listener) {
        if let Ok(mut listeners) = self.listeners.write() {
            listeners.push(listener);
        }
        let Ok(mut sender) = self.sender.lock() else {
            return;
        };
        if sender.is_none() {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Event>(QUEUE);
            let listeners = Arc::clone(&self.listeners);
            let spawned = std::thread::Builder::new()
                .name("conductor-events".into())
                .spawn(move || {
                    while let Ok(event) = rx.recv() {
                        let Ok(listeners) = listeners.read() else {
                            return;
                        };
                        for listener in listeners.iter() {
                            // A panicking listener must not take the others down with it.
                            let call = std::panic::AssertUnwindSafe(|| listener(&event));
                            if std::panic::catch_unwind(call).is_err() {
                                tracing::error!(?event, "an event listener panicked");
                            }
                        }
                    }
                });
            match spawned {
                Ok(_) => *sender = Some(tx),
                Err(e) => tracing::error!(error = %e, "cannot start the event thread"),
            }
        }
        self.enabled.store(sender.is_some(), Ordering::Release);
    }

    /// Whether anybody listens; check before building an event.
    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    pub(crate) fn emit(&self, event: Event) {
        if !self.enabled() {
            return;
        }
        let Ok(sender) = self.sender.lock() else {
            return;
        };
        if let Some(tx) = sender.as_ref()
            && let Err(TrySendError::Full(_)) = tx.try_send(event)
            // Listeners that cannot keep up lose events rather than slow task delivery.
            && self.dropped.fetch_add(1, Ordering::Relaxed).is_multiple_of(10_000)
        {
            tracing::warn!("event listeners are too slow: events are being dropped");
        }
    }
}
