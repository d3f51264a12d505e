//! Per task type: the handle executors pull tasks from ([`Worker`]), the capacity that drives
//! polling, lease extension of running tasks, and hand-off of results to the update pipeline.
//!
//! Capacity is the number of executors waiting in [`Worker::take`], less the tasks already
//! buffered for them and the slots claimed by polls in flight; a poll never asks for more, so a
//! task is not polled before an executor can start it.

pub(crate) mod delivery;
mod handout;
pub(crate) mod payloads;
pub(crate) mod poller;

pub use crate::cancel::Cancel;
pub use crate::state::WorkerState;
pub use handout::{Claim, ClaimedTask};

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::runtime::Handle;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::AbortHandle;

use crate::api::{JsonObject, Task, TaskResult};
use crate::client::external::{Operation, PayloadType};
use crate::client::{ServerClient, ServerId, Undecodable};
use crate::cluster::{Cluster, split};
use crate::config::WorkerOptions;
use crate::error::{Error, Result};
use crate::telemetry::metrics::WorkerMetrics;
use crate::telemetry::{Event, EventBus};
use delivery::{Deliveries, Origin};

/// A polled task waiting for an executor, with the server it came from.
#[derive(Debug)]
pub(crate) struct Buffered {
    pub(crate) task: Task,
    pub(crate) server: ServerId,
    /// Held from the download of a large input until the task's result is delivered.
    pub(crate) large_input: Option<OwnedSemaphorePermit>,
}

/// What a task function returns in the Rust API.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOutcome {
    /// Done, with this output.
    Completed(JsonObject),
    /// Failed; the server retries per the task definition.
    Failed(String),
    /// Failed; the server never retries.
    FailedTerminal(String),
    /// Not done: the server offers the task again after `callback_after` (with this output
    /// stored so far).
    InProgress {
        /// Delay before the server offers the task again.
        callback_after: Duration,
        /// Output so far.
        output: JsonObject,
    },
    /// A complete result, as is (its ids are set from the task).
    Result(TaskResult),
}

impl TaskOutcome {
    /// The result for the task `id` of workflow `wf`.
    pub fn into_result(self, id: &str, wf: &str) -> TaskResult {
        match self {
            Self::Completed(output) => TaskResult::completed(id, wf, output),
            Self::Failed(reason) => TaskResult::failed(id, wf, reason),
            Self::FailedTerminal(reason) => TaskResult::failed_terminal(id, wf, reason),
            Self::InProgress {
                callback_after,
                output,
            } => {
                let mut r = TaskResult::in_progress(id, wf, callback_after.as_secs());
                r.output_data = output;
                r
            }
            Self::Result(mut r) => {
                r.task_id = id.to_owned();
                r.workflow_instance_id = wf.to_owned();
                r
            }
        }
    }
}

impl<E: std::fmt::Display> From<std::result::Result<JsonObject, E>> for TaskOutcome {
    fn from(r: std::result::Result<JsonObject, E>) -> Self {
        match r {
            Ok(output) => Self::Completed(output),
            Err(e) => Self::Failed(e.to_string()),
        }
    }
}

/// A snapshot of a worker's health. Hosts get it as JSON (`serde_json::to_value`): the state
/// as its name, the last successful poll in seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WorkerHealth {
    /// Task type.
    pub task_type: String,
    /// Domain, if any.
    pub domain: Option<String>,
    /// State.
    #[serde(serialize_with = "state_name")]
    pub state: WorkerState,
    /// When a poll last succeeded (empty or not), on any server.
    #[serde(serialize_with = "unix_seconds")]
    pub last_successful_poll: Option<SystemTime>,
    /// Polls that failed in a row (0 after any success).
    pub consecutive_poll_errors: u32,
    /// Tasks being executed now.
    pub running: usize,
    /// Tasks polled and waiting for an executor.
    pub buffered: usize,
    /// Executors waiting for a task.
    pub idle_executors: usize,
    /// Poll loops the supervisor restarted.
    pub restarts: u64,
}

fn state_name<S: serde::Serializer>(state: &WorkerState, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(state.as_str())
}

fn unix_seconds<S: serde::Serializer>(at: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    let seconds = at
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64());
    serde::Serialize::serialize(&seconds, s)
}

struct InFlight {
    server: ServerId,
    started: Instant,
    lease: Option<AbortHandle>,
}

impl InFlight {
    fn stop_lease(&self) {
        if let Some(lease) = &self.lease {
            lease.abort();
        }
    }
}

#[derive(Default)]
struct Slots {
    /// Slots asked for by executors waiting in `next_tasks`.
    waiting: usize,
    /// Slots claimed by polls in flight.
    reserved: usize,
    /// Polled tasks whose externalized input is being downloaded.
    downloading: usize,
    ready: VecDeque<Buffered>,
    /// Servers whose poll loop waits for capacity, sorted: free slots are split among them.
    asking: Vec<usize>,
}

impl Slots {
    fn free(&self) -> usize {
        self.waiting
            .saturating_sub(self.ready.len() + self.reserved + self.downloading)
    }
}

pub(crate) struct WorkerInner {
    pub(crate) options: WorkerOptions,
    pub(crate) servers: Arc<Cluster>,
    pub(crate) deliveries: Arc<Deliveries>,
    pub(crate) events: Arc<EventBus>,
    pub(crate) metrics: Arc<WorkerMetrics>,
    pub(crate) handle: Handle,
    pub(crate) state: watch::Sender<WorkerState>,
    slots: Mutex<Slots>,
    task_ready: Notify,
    capacity: Notify,
    /// One permit per executor: a task whose input was stored externally holds one from its
    /// download until its result is delivered, so a worker holds at most `concurrency` large
    /// payloads at once (the next input is not fetched while an output is still uploading).
    large_inputs: Arc<Semaphore>,
    in_flight: Mutex<HashMap<String, InFlight>>,
    /// Milliseconds since the epoch of the last successful poll (0: never).
    pub(crate) last_poll_ok: AtomicU64,
    pub(crate) consecutive_errors: AtomicU32,
    /// Rotates the server that gets the remainder when capacity is split.
    pub(crate) rotation: AtomicU64,
}

/// A worker: one task type (optionally in one domain) on every server of the runtime.
///
/// Executors [`take`](Self::take) tasks and complete each one's [`Claim`] with its result.
/// Cloning is cheap; clones share the worker.
#[derive(Clone)]
pub struct Worker {
    pub(crate) inner: Arc<WorkerInner>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("task_type", &self.inner.options.task_type)
            .field("state", &self.state())
            .finish()
    }
}

impl Worker {
    pub(crate) fn new(
        options: WorkerOptions,
        servers: Arc<Cluster>,
        deliveries: Arc<Deliveries>,
        events: Arc<EventBus>,
        metrics: Arc<WorkerMetrics>,
        handle: Handle,
    ) -> Self {
        let (state, _) = watch::channel(WorkerState::Created);
        let large_inputs = Arc::new(Semaphore::new(options.concurrency));
        Self {
            inner: Arc::new(WorkerInner {
                options,
                servers,
                deliveries,
                events,
                metrics,
                handle,
                state,
                slots: Mutex::new(Slots::default()),
                task_ready: Notify::new(),
                capacity: Notify::new(),
                large_inputs,
                in_flight: Mutex::new(HashMap::new()),
                last_poll_ok: AtomicU64::new(0),
                consecutive_errors: AtomicU32::new(0),
                rotation: AtomicU64::new(0),
            }),
        }
    }

    /// The options this worker runs with (after environment overrides).
    pub fn options(&self) -> &WorkerOptions {
        &self.inner.options
    }

    /// The task type.
    pub fn task_type(&self) -> &str {
        &self.inner.options.task_type
    }

    /// The current state.
    pub fn state(&self) -> WorkerState {
        *self.inner.state.borrow()
    }

    /// Stops polling; running tasks go on and their results are delivered.
    pub fn pause(&self) {
        self.inner
            .set_state_if(WorkerState::Paused, |s| s == WorkerState::Running);
    }

    /// Starts polling again after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.inner
            .set_state_if(WorkerState::Running, |s| s == WorkerState::Paused);
    }

    /// Sends a line to the execution log of a running task at once (results carry their own
    /// log lines; this is for progress reports during long tasks).
    pub fn log(&self, task_id: &str, line: impl Into<String>) -> Result<()> {
        let server = self.inner.server_of(task_id)?;
        let (task_id, line) = (task_id.to_owned(), line.into());
        self.inner.handle.spawn(async move {
            if let Err(e) = server.add_log(&task_id, &line).await {
                tracing::warn!(task_id, error = %e, "task log not delivered");
            }
        });
        Ok(())
    }

    /// A snapshot of this worker's health.
    pub fn health(&self) -> WorkerHealth {
        let inner = &self.inner;
        let (buffered, idle) = {
            let slots = inner.lock_slots();
            (slots.ready.len(), slots.waiting)
        };
        let last = inner.last_poll_ok.load(Ordering::Relaxed);
        WorkerHealth {
            task_type: inner.options.task_type.clone(),
            domain: inner.options.domain.clone(),
            state: self.state(),
            last_successful_poll: (last > 0)
                .then(|| SystemTime::UNIX_EPOCH + Duration::from_millis(last)),
            consecutive_poll_errors: inner.consecutive_errors.load(Ordering::Relaxed),
            running: inner.in_flight.lock().map(|f| f.len()).unwrap_or(0),
            buffered,
            idle_executors: idle,
            restarts: inner.metrics.restarts.get(),
        }
    }
}

/// Until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl WorkerInner {
    fn lock_slots(&self) -> MutexGuard<'_, Slots> {
        // A panic while holding this lock cannot leave the counters half-updated in a way that
        // matters more than stopping the worker would, so poisoning is ignored.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_in_flight(&self) -> MutexGuard<'_, HashMap<String, InFlight>> {
        // As for the slots: a record is inserted or removed whole.
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn origin(self: &Arc<Self>) -> Origin {
        Origin {
            worker: Arc::downgrade(self),
            task_type: self.options.task_type.clone(),
        }
    }

    fn server_of(&self, task_id: &str) -> Result<Arc<ServerClient>> {
        let server = self
            .in_flight
            .lock()
            .ok()
            .and_then(|f| f.get(task_id).map(|t| t.server))
            .ok_or_else(|| Error::UnknownTask {
                worker: self.options.task_type.clone(),
                task_id: task_id.to_owned(),
            })?;
        self.servers
            .client(server)
            .cloned()
            .ok_or_else(|| Error::UnknownTask {
                worker: self.options.task_type.clone(),
                task_id: task_id.to_owned(),
            })
    }

    pub(crate) fn set_state(&self, new: WorkerState) {
        self.set_state_if(new, |_| true);
    }

    fn set_state_if(&self, new: WorkerState, allowed: impl Fn(WorkerState) -> bool) {
        let changed = self.state.send_if_modified(|s| {
            if *s != new && allowed(*s) {
                *s = new;
                true
            } else {
                false
            }
        });
        if changed {
            tracing::info!(task_type = %self.options.task_type, state = new.as_str(), "worker state changed");
            self.events.emit(Event::WorkerStateChanged {
                task_type: self.options.task_type.clone(),
                state: new,
            });
            self.capacity.notify_waiters();
        }
    }

    /// Claims this server's share of the free slots for a poll; waits until it is at least one.
    /// The share is an even split across the servers whose loops are asking for capacity now
    /// (a server that is backing off or whose breaker is open does not ask), the remainder
    /// rotating so that no server starves, even with a concurrency of 1.
    /// Returns `None` when the worker stops or pauses.
    pub(crate) async fn reserve(&self, server: ServerId) -> Option<Reservation<'_>> {
        let mut state = self.state.subscribe();
        let _asking = AskingGuard::new(self, server.0);
        loop {
            let notified = self.capacity.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if *state.borrow_and_update() != WorkerState::Running {
                return None;
            }
            {
                let mut slots = self.lock_slots();
                let turn = self.rotation.load(Ordering::Relaxed);
                let n = split(slots.free(), &slots.asking, server.0, turn);
                if n > 0 {
                    slots.reserved += n;
                    self.rotation.fetch_add(1, Ordering::Relaxed);
                    return Some(Reservation {
                        inner: self,
                        count: n,
                    });
                }
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = state.changed() => {}
            }
        }
    }

    /// Free slots now (for the supervisor and the capacity split).
    pub(crate) fn free_slots(&self) -> usize {
        self.lock_slots().free()
    }

    /// Buffers polled tasks for the executors, or gives them back if the worker is stopping.
    /// A task whose input the server stored externally is buffered once its input is here.
    pub(crate) fn accept_tasks(self: &Arc<Self>, server: ServerId, mut tasks: Vec<Task>) {
        let external: Vec<Task> = tasks
            .extract_if(.., |t| t.external_input_payload_storage_path.is_some())
            .collect();
        if !external.is_empty() && !self.is_stopping() {
            self.lock_slots().downloading += external.len();
            for task in external {
                self.handle
                    .spawn(Arc::clone(self).download_then_buffer(server, task));
            }
        } else {
            tasks.extend(external);
        }
        self.buffer(server, tasks, 0, None);
    }

    /// Buffers tasks whose input is complete (`downloaded` of them just downloaded), or gives
    /// them back if the worker is stopping.
    fn buffer(
        self: &Arc<Self>,
        server: ServerId,
        tasks: Vec<Task>,
        downloaded: usize,
        large_input: Option<OwnedSemaphorePermit>,
    ) {
        let mut slots = self.lock_slots();
        // In the same critical section as the push: the slot must not look free in between.
        slots.downloading = slots.downloading.saturating_sub(downloaded);
        if tasks.is_empty() {
            return;
        }
        if self.is_stopping() {
            drop(slots);
            for task in &tasks {
                self.deliveries.give_back(server, task, self.origin());
            }
            return;
        }
        let mut large_input = large_input;
        for task in tasks {
            let large_input = large_input.take();
            slots.ready.push_back(Buffered {
                task,
                server,
                large_input,
            });
        }
        drop(slots);
        // The executor that waited last gets the task: under load that is the one that just
        // finished a task and is still warm, so one executor thread keeps running while the
        // others sleep (first-in-first-out wakes a different host thread per task, and with
        // Python threads each wake is a GIL hand-off).
        self.task_ready.notify_last();
    }

    /// Downloads a task's externalized input, then buffers the task; a task whose input cannot
    /// be had is failed terminally, never run on an empty input.
    async fn download_then_buffer(self: Arc<Self>, server: ServerId, mut task: Task) {
        // Never closed, so this waits only for a task of this worker to deliver its result.
        let permit = Arc::clone(&self.large_inputs).acquire_owned().await.ok();
        let downloaded = match self.servers.client(server) {
            Some(client) => {
                payloads::download_input(client, &mut task, &self.deliveries.backoff).await
            }
            None => {
                self.buffer(server, Vec::new(), 1, None);
                return;
            }
        };
        match downloaded {
            Ok(transfer) => {
                self.metrics.external_reads.inc();
                self.metrics
                    .external_read_time
                    .observe(transfer.duration.as_secs_f64());
                if self.events.enabled() {
                    self.events.emit(Event::ExternalPayloadUsed {
                        task_type: self.options.task_type.clone(),
                        task_id: task.task_id.clone(),
                        server,
                        operation: Operation::Read,
                        payload_type: PayloadType::TaskInput,
                        bytes: transfer.bytes as u64,
                        duration: transfer.duration,
                    });
                }
                self.buffer(server, vec![task], 1, permit);
            }
            Err(e) => {
                self.buffer(server, Vec::new(), 1, None);
                self.fail_unreadable_input(server, &task, &e);
            }
        }
        self.capacity.notify_waiters();
    }

    fn fail_unreadable_input(
        self: &Arc<Self>,
        server: ServerId,
        task: &Task,
        error: &payloads::InputUnavailable,
    ) {
        let path = task
            .external_input_payload_storage_path
            .clone()
            .unwrap_or_default();
        let reason = error.reason(&path);
        tracing::error!(task_id = %task.task_id, reason, "failing a task whose input cannot be read");
        if self.events.enabled() {
            self.events.emit(Event::ExternalPayloadFailed {
                task_type: self.options.task_type.clone(),
                task_id: task.task_id.clone(),
                server,
                path,
                error: reason.clone(),
            });
        }
        let mut result =
            TaskResult::failed_terminal(&task.task_id, &task.workflow_instance_id, reason);
        result.worker_id = Some(self.options.worker_id.clone());
        self.metrics.execute_errors.inc();
        self.deliveries.submit(server, result, self.origin(), None);
    }

    /// Fails tasks the server handed out but this runtime cannot decode, terminally (their
    /// input would not decode on a retry either), so the workflow learns why at once instead
    /// of after the response timeout.
    pub(crate) fn fail_undecodable(self: &Arc<Self>, server: ServerId, tasks: Vec<Undecodable>) {
        for bad in tasks {
            tracing::error!(task_id = %bad.task_id, error = %bad.error, "a polled task could not be decoded; failing it");
            let mut result = TaskResult::failed_terminal(
                &bad.task_id,
                &bad.workflow_instance_id,
                format!("conductor-worker could not decode this task: {}", bad.error),
            );
            result.worker_id = Some(self.options.worker_id.clone());
            self.metrics.execute_errors.inc();
            self.deliveries.submit(server, result, self.origin(), None);
        }
    }

    /// Gives every buffered task back to its server (at stop: no executor will start them).
    pub(crate) fn give_back_buffered(self: &Arc<Self>) -> usize {
        let tasks: Vec<Buffered> = self.lock_slots().ready.drain(..).collect();
        for t in &tasks {
            self.deliveries.give_back(t.server, &t.task, self.origin());
        }
        tasks.len()
    }

    pub(crate) fn running(&self) -> usize {
        self.in_flight.lock().map(|f| f.len()).unwrap_or(0)
    }
}

/// Registers a server's loop as asking for capacity while it waits in `reserve`.
struct AskingGuard<'a> {
    inner: &'a WorkerInner,
    server: usize,
}

impl<'a> AskingGuard<'a> {
    /// A server is listed once per loop asking (two when it has a second poll lane, which then
    /// gets a share of its own).
    fn new(inner: &'a WorkerInner, server: usize) -> Self {
        let mut slots = inner.lock_slots();
        let at = slots.asking.partition_point(|&s| s <= server);
        slots.asking.insert(at, server);
        Self { inner, server }
    }
}

impl Drop for AskingGuard<'_> {
    fn drop(&mut self) {
        let mut slots = self.inner.lock_slots();
        if let Ok(at) = slots.asking.binary_search(&self.server) {
            slots.asking.remove(at);
        }
        drop(slots);
        // The others' shares grow now.
        self.inner.capacity.notify_waiters();
    }
}

/// Slots claimed by one poll; released when dropped (after the tasks were buffered).
pub(crate) struct Reservation<'a> {
    inner: &'a WorkerInner,
    pub(crate) count: usize,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut slots = self.inner.lock_slots();
        slots.reserved = slots.reserved.saturating_sub(self.count);
        drop(slots);
        self.inner.capacity.notify_waiters();
    }
}
