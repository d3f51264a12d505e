//! Events for listeners, delivered off the hot path: the runtime only pushes them into a
//! bounded queue, and one dedicated thread (not a tokio thread, so a listener may take the GIL
//! or block briefly) calls the listeners. When nobody listens, emitting costs one atomic load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::client::ServerId;
use crate::client::external::{Operation, PayloadType};
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
    /// An executor dropped a task without a result: its lease is no longer extended and the
    /// server hands it out again after its response timeout.
    TaskAbandoned {
        /// Task type.
        task_type: String,
        /// Task id.
        task_id: String,
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
    /// A payload was read from or written to the server's external storage: a task's input
    /// downloaded before it ran, or an output uploaded before its result was sent.
    ExternalPayloadUsed {
        /// Task type.
        task_type: String,
        /// Task id.
        task_id: String,
        /// Server whose storage it was.
        server: ServerId,
        /// `READ` or `WRITE`.
        operation: Operation,
        /// `TASK_INPUT` or `TASK_OUTPUT`.
        payload_type: PayloadType,
        /// Size of the JSON.
        bytes: u64,
        /// Time the transfer took (location and download or upload).
        duration: Duration,
    },
    /// A task's externalized input could not be had: the task was failed terminally without
    /// running.
    ExternalPayloadFailed {
        /// Task type.
        task_type: String,
        /// Task id.
        task_id: String,
        /// Server the task came from.
        server: ServerId,
        /// The storage path of the input.
        path: String,
        /// Why (also the task's `reasonForIncompletion`).
        error: String,
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

/// One field of an [`Event`] in a form every host language has: what the bindings hand to
/// Python and Ruby listeners.
#[derive(Debug, Clone, PartialEq)]
pub enum EventField {
    /// Text.
    Str(String),
    /// A count or a server index.
    Int(u64),
    /// Seconds.
    Float(f64),
    /// A flag.
    Bool(bool),
}

impl Event {
    /// The event's name in snake case (`"poll_completed"`), as host-language listeners see it.
    ///
    /// ```
    /// use conductor_worker::telemetry::{Event, EventField};
    /// let event = Event::PollLoopRestarted {
    ///     task_type: "greet".into(),
    ///     server: conductor_worker::ServerId(0),
    ///     reason: "stalled".into(),
    /// };
    /// assert_eq!(event.kind(), "poll_loop_restarted");
    /// assert_eq!(event.fields()[0], ("task_type", EventField::Str("greet".into())));
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Event::PollStarted { .. } => "poll_started",
            Event::PollCompleted { .. } => "poll_completed",
            Event::PollFailed { .. } => "poll_failed",
            Event::ExecutionStarted { .. } => "execution_started",
            Event::ExecutionCompleted { .. } => "execution_completed",
            Event::ExecutionFailed { .. } => "execution_failed",
            Event::TaskAbandoned { .. } => "task_abandoned",
            Event::UpdateDelivered { .. } => "update_delivered",
            Event::UpdateFailed { .. } => "update_failed",
            Event::WorkerStateChanged { .. } => "worker_state_changed",
            Event::CircuitStateChanged { .. } => "circuit_state_changed",
            Event::ExternalPayloadUsed { .. } => "external_payload_used",
            Event::ExternalPayloadFailed { .. } => "external_payload_failed",
            Event::PollLoopRestarted { .. } => "poll_loop_restarted",
        }
    }

    /// The event's fields by name; durations in seconds, servers by index.
    pub fn fields(&self) -> Vec<(&'static str, EventField)> {
        use EventField::{Bool, Float, Int, Str};
        let tt = |t: &str| ("task_type", Str(t.to_owned()));
        let id = |t: &str| ("task_id", Str(t.to_owned()));
        let server = |s: &ServerId| ("server", Int(s.0 as u64));
        let secs = |d: &Duration| ("duration", Float(d.as_secs_f64()));
        match self {
            Event::PollStarted {
                task_type,
                server: s,
                count,
            } => vec![tt(task_type), server(s), ("count", Int(*count as u64))],
            Event::PollCompleted {
                task_type,
                server: s,
                received,
                duration,
            } => vec![
                tt(task_type),
                server(s),
                ("received", Int(*received as u64)),
                secs(duration),
            ],
            Event::PollFailed {
                task_type,
                server: s,
                error,
            } => vec![tt(task_type), server(s), ("error", Str(error.clone()))],
            Event::ExecutionStarted {
                task_type,
                task_id,
                server: s,
            } => vec![tt(task_type), id(task_id), server(s)],
            Event::ExecutionCompleted {
                task_type,
                task_id,
                duration,
            } => vec![tt(task_type), id(task_id), secs(duration)],
            Event::TaskAbandoned { task_type, task_id } => vec![tt(task_type), id(task_id)],
            Event::ExecutionFailed {
                task_type,
                task_id,
                reason,
                duration,
            } => vec![
                tt(task_type),
                id(task_id),
                ("reason", Str(reason.clone())),
                secs(duration),
            ],
            Event::UpdateDelivered {
                task_type,
                task_id,
                server: s,
                attempts,
            } => vec![
                tt(task_type),
                id(task_id),
                server(s),
                ("attempts", Int(u64::from(*attempts))),
            ],
            Event::UpdateFailed {
                task_type,
                task_id,
                server: s,
                error,
                will_retry,
            } => vec![
                tt(task_type),
                id(task_id),
                server(s),
                ("error", Str(error.clone())),
                ("will_retry", Bool(*will_retry)),
            ],
            Event::WorkerStateChanged { task_type, state } => {
                vec![tt(task_type), ("state", Str(state.as_str().to_owned()))]
            }
            Event::CircuitStateChanged {
                server: s,
                url,
                state,
            } => vec![
                server(s),
                ("url", Str(url.clone())),
                ("state", Str(state.as_str().to_owned())),
            ],
            Event::ExternalPayloadUsed {
                task_type,
                task_id,
                server: s,
                operation,
                payload_type,
                bytes,
                duration,
            } => vec![
                tt(task_type),
                id(task_id),
                server(s),
                ("operation", Str(operation.as_str().to_owned())),
                ("payload_type", Str(payload_type.as_str().to_owned())),
                ("bytes", Int(*bytes)),
                secs(duration),
            ],
            Event::ExternalPayloadFailed {
                task_type,
                task_id,
                server: s,
                path,
                error,
            } => vec![
                tt(task_type),
                id(task_id),
                server(s),
                ("path", Str(path.clone())),
                ("error", Str(error.clone())),
            ],
            Event::PollLoopRestarted {
                task_type,
                server: s,
                reason,
            } => vec![tt(task_type), server(s), ("reason", Str(reason.clone()))],
        }
    }
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
