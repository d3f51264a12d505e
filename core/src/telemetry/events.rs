//! Events for listeners, delivered off the hot path: the runtime only pushes them into a
//! bounded queue, and one dedicated thread (not a tokio thread, so a listener may take the GIL
//! or block briefly) calls the listeners. When nobody listens, emitting costs one atomic load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::client::ServerId;
use crate::client::external::{Operation, PayloadType};
use crate::field::Field as EventField;
use crate::state::{CircuitState, WorkerState};

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
        state: CircuitState,
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

    /// The event's fields by name; durations in seconds, servers by index. First what the
    /// event is about (`task_type`, `task_id`, `server`: those it has, in that order), then
    /// what happened.
    pub fn fields(&self) -> Vec<(&'static str, EventField)> {
        use EventField::{Int, Str};
        let subject = [
            self.task_type().map(|t| ("task_type", Str(t.to_owned()))),
            self.task_id().map(|t| ("task_id", Str(t.to_owned()))),
            self.server().map(|s| ("server", Int(s.0 as u64))),
        ];
        let details = self.details();
        subject.into_iter().flatten().chain(details).collect()
    }

    fn task_type(&self) -> Option<&str> {
        match self {
            Event::PollStarted { task_type, .. }
            | Event::PollCompleted { task_type, .. }
            | Event::PollFailed { task_type, .. }
            | Event::ExecutionStarted { task_type, .. }
            | Event::ExecutionCompleted { task_type, .. }
            | Event::ExecutionFailed { task_type, .. }
            | Event::TaskAbandoned { task_type, .. }
            | Event::UpdateDelivered { task_type, .. }
            | Event::UpdateFailed { task_type, .. }
            | Event::WorkerStateChanged { task_type, .. }
            | Event::ExternalPayloadUsed { task_type, .. }
            | Event::ExternalPayloadFailed { task_type, .. }
            | Event::PollLoopRestarted { task_type, .. } => Some(task_type),
            Event::CircuitStateChanged { .. } => None,
        }
    }

    fn task_id(&self) -> Option<&str> {
        match self {
            Event::ExecutionStarted { task_id, .. }
            | Event::ExecutionCompleted { task_id, .. }
            | Event::ExecutionFailed { task_id, .. }
            | Event::TaskAbandoned { task_id, .. }
            | Event::UpdateDelivered { task_id, .. }
            | Event::UpdateFailed { task_id, .. }
            | Event::ExternalPayloadUsed { task_id, .. }
            | Event::ExternalPayloadFailed { task_id, .. } => Some(task_id),
            Event::PollStarted { .. }
            | Event::PollCompleted { .. }
            | Event::PollFailed { .. }
            | Event::WorkerStateChanged { .. }
            | Event::CircuitStateChanged { .. }
            | Event::PollLoopRestarted { .. } => None,
        }
    }

    fn server(&self) -> Option<ServerId> {
        match self {
            Event::PollStarted { server, .. }
            | Event::PollCompleted { server, .. }
            | Event::PollFailed { server, .. }
            | Event::ExecutionStarted { server, .. }
            | Event::UpdateDelivered { server, .. }
            | Event::UpdateFailed { server, .. }
            | Event::CircuitStateChanged { server, .. }
            | Event::ExternalPayloadUsed { server, .. }
            | Event::ExternalPayloadFailed { server, .. }
            | Event::PollLoopRestarted { server, .. } => Some(*server),
            Event::ExecutionCompleted { .. }
            | Event::ExecutionFailed { .. }
            | Event::TaskAbandoned { .. }
            | Event::WorkerStateChanged { .. } => None,
        }
    }

    /// The fields after the subject's.
    fn details(&self) -> Vec<(&'static str, EventField)> {
        use EventField::{Bool, Float, Int, Str};
        let secs = |d: &Duration| ("duration", Float(d.as_secs_f64()));
        let text = |name, s: &str| (name, Str(s.to_owned()));
        match self {
            Event::PollStarted { count, .. } => vec![("count", Int(*count as u64))],
            Event::PollCompleted {
                received, duration, ..
            } => vec![("received", Int(*received as u64)), secs(duration)],
            Event::PollFailed { error, .. } => vec![text("error", error)],
            Event::ExecutionStarted { .. } | Event::TaskAbandoned { .. } => vec![],
            Event::ExecutionCompleted { duration, .. } => vec![secs(duration)],
            Event::ExecutionFailed {
                reason, duration, ..
            } => vec![text("reason", reason), secs(duration)],
            Event::UpdateDelivered { attempts, .. } => {
                vec![("attempts", Int(u64::from(*attempts)))]
            }
            Event::UpdateFailed {
                error, will_retry, ..
            } => vec![text("error", error), ("will_retry", Bool(*will_retry))],
            Event::WorkerStateChanged { state, .. } => vec![text("state", state.as_str())],
            Event::CircuitStateChanged { url, state, .. } => {
                vec![text("url", url), text("state", state.as_str())]
            }
            Event::ExternalPayloadUsed {
                operation,
                payload_type,
                bytes,
                duration,
                ..
            } => vec![
                text("operation", operation.as_str()),
                text("payload_type", payload_type.as_str()),
                ("bytes", Int(*bytes)),
                secs(duration),
            ],
            Event::ExternalPayloadFailed { path, error, .. } => {
                vec![text("path", path), text("error", error)]
            }
            Event::PollLoopRestarted { reason, .. } => vec![text("reason", reason)],
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

#[cfg(test)]
mod tests {
    //! Hosts read events by field name, and by position: every variant's fields, in order.

    use super::*;
    use EventField::{Bool, Float, Int, Str};

    const SERVER: ServerId = ServerId(2);
    const TIME: Duration = Duration::from_millis(1500);

    fn task_type() -> String {
        "greet".to_owned()
    }

    fn task_id() -> String {
        "t1".to_owned()
    }

    fn text(s: &str) -> EventField {
        Str(s.to_owned())
    }

    /// `event`'s fields are `task_type` and `task_id` as made above (those it has), `server`,
    /// then `details`.
    fn assert_fields(event: Event, subject: &[&str], details: &[(&str, EventField)]) {
        let mut expected: Vec<(&str, EventField)> = subject
            .iter()
            .map(|&name| match name {
                "task_type" => (name, text("greet")),
                "task_id" => (name, text("t1")),
                "server" => (name, Int(2)),
                other => panic!("{other} is not a subject field"),
            })
            .collect();
        expected.extend_from_slice(details);
        assert_eq!(event.fields(), expected, "{}", event.kind());
    }

    const TYPE_SERVER: &[&str] = &["task_type", "server"];
    const TYPE_ID: &[&str] = &["task_type", "task_id"];
    const TYPE_ID_SERVER: &[&str] = &["task_type", "task_id", "server"];

    #[test]
    fn poll_events() {
        let poll_started = Event::PollStarted {
            task_type: task_type(),
            server: SERVER,
            count: 3,
        };
        assert_fields(poll_started, TYPE_SERVER, &[("count", Int(3))]);
        let poll_completed = Event::PollCompleted {
            task_type: task_type(),
            server: SERVER,
            received: 4,
            duration: TIME,
        };
        let details = [("received", Int(4)), ("duration", Float(1.5))];
        assert_fields(poll_completed, TYPE_SERVER, &details);
        let poll_failed = Event::PollFailed {
            task_type: task_type(),
            server: SERVER,
            error: "e".into(),
        };
        assert_fields(poll_failed, TYPE_SERVER, &[("error", text("e"))]);
        let restarted = Event::PollLoopRestarted {
            task_type: task_type(),
            server: SERVER,
            reason: "r".into(),
        };
        assert_fields(restarted, TYPE_SERVER, &[("reason", text("r"))]);
    }

    #[test]
    fn execution_events() {
        let started = Event::ExecutionStarted {
            task_type: task_type(),
            task_id: task_id(),
            server: SERVER,
        };
        assert_fields(started, TYPE_ID_SERVER, &[]);
        let completed = Event::ExecutionCompleted {
            task_type: task_type(),
            task_id: task_id(),
            duration: TIME,
        };
        assert_fields(completed, TYPE_ID, &[("duration", Float(1.5))]);
        let failed = Event::ExecutionFailed {
            task_type: task_type(),
            task_id: task_id(),
            reason: "r".into(),
            duration: TIME,
        };
        let details = [("reason", text("r")), ("duration", Float(1.5))];
        assert_fields(failed, TYPE_ID, &details);
        let abandoned = Event::TaskAbandoned {
            task_type: task_type(),
            task_id: task_id(),
        };
        assert_fields(abandoned, TYPE_ID, &[]);
    }

    #[test]
    fn update_and_state_events() {
        let delivered = Event::UpdateDelivered {
            task_type: task_type(),
            task_id: task_id(),
            server: SERVER,
            attempts: 5,
        };
        assert_fields(delivered, TYPE_ID_SERVER, &[("attempts", Int(5))]);
        let failed = Event::UpdateFailed {
            task_type: task_type(),
            task_id: task_id(),
            server: SERVER,
            error: "e".into(),
            will_retry: true,
        };
        let details = [("error", text("e")), ("will_retry", Bool(true))];
        assert_fields(failed, TYPE_ID_SERVER, &details);
        let worker = Event::WorkerStateChanged {
            task_type: task_type(),
            state: WorkerState::Paused,
        };
        assert_fields(worker, &["task_type"], &[("state", text("paused"))]);
        let circuit = Event::CircuitStateChanged {
            server: SERVER,
            url: "http://x".into(),
            state: CircuitState::HalfOpen,
        };
        let state = text(CircuitState::HalfOpen.as_str());
        let details = [("url", text("http://x")), ("state", state)];
        assert_fields(circuit, &["server"], &details);
    }

    #[test]
    fn external_payload_events() {
        let used = Event::ExternalPayloadUsed {
            task_type: task_type(),
            task_id: task_id(),
            server: SERVER,
            operation: Operation::Write,
            payload_type: PayloadType::TaskOutput,
            bytes: 7,
            duration: TIME,
        };
        let details = [
            ("operation", text("WRITE")),
            ("payload_type", text("TASK_OUTPUT")),
            ("bytes", Int(7)),
            ("duration", Float(1.5)),
        ];
        assert_fields(used, TYPE_ID_SERVER, &details);
        let failed = Event::ExternalPayloadFailed {
            task_type: task_type(),
            task_id: task_id(),
            server: SERVER,
            path: "p".into(),
            error: "e".into(),
        };
        let details = [("path", text("p")), ("error", text("e"))];
        assert_fields(failed, TYPE_ID_SERVER, &details);
    }
}
