//! The update pipeline: results are accepted without blocking, sent on the runtime's threads
//! (an output above the external payload threshold uploaded first), retried with backoff and
//! jitter until the server accepts them or says the task is gone, and journalled when they
//! cannot be delivered (first failure, or the runtime stopping).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::task::AbortHandle;

use super::{WorkerInner, payloads};
use crate::api::{Task, TaskResult};
use crate::backoff::Backoff;
use crate::client::external::{Operation, PayloadType};
use crate::client::{ServerClient, ServerId, UpdateOutcome};
use crate::cluster::Cluster;
use crate::journal::{Journal, JournalEntry};
use crate::telemetry::metrics::{Registry, WorkerMetrics};
use crate::telemetry::{Event, EventBus};

struct Pending {
    server: ServerId,
    result: Arc<TaskResult>,
    journal_id: Option<String>,
    abort: Option<AbortHandle>,
    /// When the delivery last started an attempt: one long past shows a stuck pipeline.
    attempted: Instant,
}

/// All results on their way to a server.
pub(crate) struct Deliveries {
    handle: Handle,
    servers: Arc<Cluster>,
    journal: Option<Journal>,
    pub(crate) backoff: Backoff,
    /// Outputs larger than this (bytes of JSON) are uploaded to the server's external storage.
    output_threshold: usize,
    events: Arc<EventBus>,
    metrics: Arc<Registry>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    killed: AtomicBool,
    drained: Notify,
    journal_removals: Mutex<Vec<String>>,
    removal_scheduled: AtomicBool,
}

/// What a delivery needs to know about the worker its task came from.
pub(crate) struct Origin {
    pub(crate) worker: Weak<WorkerInner>,
    pub(crate) task_type: String,
}

impl Deliveries {
    pub(crate) fn new(
        handle: Handle,
        servers: Arc<Cluster>,
        journal: Option<Journal>,
        backoff: Backoff,
        output_threshold: usize,
        events: Arc<EventBus>,
        metrics: Arc<Registry>,
    ) -> Self {
        Self {
            handle,
            servers,
            journal,
            backoff,
            output_threshold,
            events,
            metrics,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            killed: AtomicBool::new(false),
            drained: Notify::new(),
            journal_removals: Mutex::new(Vec::new()),
            removal_scheduled: AtomicBool::new(false),
        }
    }

    /// Results not yet delivered.
    pub(crate) fn pending(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Queues `result` for the server `server`. Never blocks.
    pub(crate) fn submit(
        self: &Arc<Self>,
        server: ServerId,
        result: TaskResult,
        origin: Origin,
        journal_id: Option<String>,
    ) {
        self.submit_holding(server, result, origin, journal_id, None);
    }

    /// [`submit`](Self::submit), keeping `held` until the delivery has ended: the permit of a
    /// task whose large input is still in memory, so that the next large input is not fetched
    /// while this result's output is uploaded.
    pub(crate) fn submit_holding(
        self: &Arc<Self>,
        server: ServerId,
        result: TaskResult,
        origin: Origin,
        journal_id: Option<String>,
        held: Option<OwnedSemaphorePermit>,
    ) {
        if self.killed.load(Ordering::Acquire) {
            // After kill nothing is sent any more; the journal keeps it for the next start.
            self.journal_now(server, &result, journal_id.as_deref());
            return;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let result = Arc::new(result);
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        pending.insert(
            id,
            Pending {
                server,
                result: Arc::clone(&result),
                journal_id,
                abort: None,
                attempted: Instant::now(),
            },
        );
        self.metrics.pending_updates.inc();
        let span = tracing::debug_span!("update", task_type = %origin.task_type, task_id = %result.task_id, %server);
        let delivery = Arc::clone(self).deliver(id, server, result, origin);
        let delivery = async move {
            delivery.await;
            drop(held);
        };
        let task = self
            .handle
            .spawn(tracing::Instrument::instrument(delivery, span));
        if let Some(entry) = pending.get_mut(&id) {
            entry.abort = Some(task.abort_handle());
        }
    }

    /// Hands a task that no executor will run back to its server (`IN_PROGRESS`, callback 0:
    /// the server queues it again at once for any worker).
    pub(crate) fn give_back(self: &Arc<Self>, server: ServerId, task: &Task, origin: Origin) {
        let result = TaskResult::in_progress(&task.task_id, &task.workflow_instance_id, 0);
        self.submit(server, result, origin, None);
    }

    async fn deliver(
        self: Arc<Self>,
        id: u64,
        server_id: ServerId,
        mut result: Arc<TaskResult>,
        origin: Origin,
    ) {
        let Some(server) = self.servers.client(server_id).cloned() else {
            tracing::error!(%server_id, task_id = %result.task_id, "result for an unknown server dropped");
            self.finish(id);
            return;
        };
        let metrics = origin.worker.upgrade().map(|w| Arc::clone(&w.metrics));
        // The result as sent: its output uploaded once, on the first attempt that gets that
        // far; until then the journal keeps the original with its output.
        let mut sendable: Option<Arc<TaskResult>> = None;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let outcome = match &sendable {
                Some(sent) => self.send(&server, sent, &origin, metrics.as_deref()).await,
                None => match self
                    .prepare(&server, &result, &origin, metrics.as_deref())
                    .await
                {
                    Ok(sent) => {
                        if !Arc::ptr_eq(&sent, &result) {
                            // Uploaded: from now on a kill journals the result with its path,
                            // and the output itself is freed before the next task's arrives.
                            self.replace_pending(id, &sent);
                            result = Arc::clone(&sent);
                        }
                        let outcome = self.send(&server, &sent, &origin, metrics.as_deref()).await;
                        sendable = Some(sent);
                        outcome
                    }
                    Err(e) => Err(e),
                },
            };
            match outcome {
                Ok(UpdateOutcome::Delivered { next }) => {
                    self.delivered(server_id, &result, &origin, next, attempt);
                    break;
                }
                Ok(UpdateOutcome::TaskGone) => {
                    tracing::warn!(
                        status = %result.status,
                        "the server no longer knows this task (404): result dropped"
                    );
                    self.emit_failure(
                        &origin,
                        &result,
                        server_id,
                        "task not found (404)".into(),
                        false,
                    );
                    break;
                }
                Err(e) if !e.is_retryable() => {
                    tracing::error!(error = %e, status = %result.status,
                        "the server rejected this result as invalid: dropped (this is a bug; please report it)");
                    if let Some(m) = &metrics {
                        m.update_errors.inc();
                    }
                    self.emit_failure(&origin, &result, server_id, e.to_string(), false);
                    break;
                }
                Err(e) => {
                    if let Some(m) = &metrics {
                        m.update_errors.inc();
                    }
                    self.emit_failure(&origin, &result, server_id, e.to_string(), true);
                    self.wait_to_retry(id, attempt, &e).await;
                }
            }
        }
        self.finish(id);
    }

    /// After failed attempt `attempt` of delivery `id`: journals it (the first time), then
    /// waits out the backoff (at least what an auth failure asks for).
    async fn wait_to_retry(self: &Arc<Self>, id: u64, attempt: u32, e: &crate::Error) {
        if attempt == 1 {
            self.journal_pending(id);
        }
        if attempt == 1 || attempt.is_multiple_of(10) {
            tracing::warn!(attempt, error = %e, "result delivery failed; retrying");
        }
        let delay = match e {
            crate::Error::Auth { retry_in, .. } => (*retry_in).max(self.backoff.delay(attempt - 1)),
            _ => self.backoff.delay(attempt - 1),
        };
        tokio::time::sleep(delay).await;
        self.note_attempt(id);
    }

    fn note_attempt(&self, id: u64) {
        if let Ok(mut pending) = self.pending.lock()
            && let Some(p) = pending.get_mut(&id)
        {
            p.attempted = Instant::now();
        }
    }

    /// Results on their way whose copy is in the journal (their delivery failed once).
    pub(crate) fn journalled(&self) -> usize {
        self.pending
            .lock()
            .map(|p| p.values().filter(|d| d.journal_id.is_some()).count())
            .unwrap_or(0)
    }

    /// Deliveries that have not started an attempt for longer than `after`: a delivery task
    /// that died, or a runtime too wedged to run it (retries start every 30 s at most).
    pub(crate) fn stalled(&self, after: Duration) -> usize {
        self.pending
            .lock()
            .map(|p| p.values().filter(|d| d.attempted.elapsed() > after).count())
            .unwrap_or(0)
    }

    /// What a kill or a failed attempt journals for delivery `id` from now on.
    fn replace_pending(&self, id: u64, result: &Arc<TaskResult>) {
        if let Ok(mut pending) = self.pending.lock()
            && let Some(p) = pending.get_mut(&id)
        {
            p.result = Arc::clone(result);
        }
    }

    /// The result to send: with its output uploaded when it is above the threshold.
    async fn prepare(
        &self,
        server: &ServerClient,
        result: &Arc<TaskResult>,
        origin: &Origin,
        metrics: Option<&WorkerMetrics>,
    ) -> crate::Result<Arc<TaskResult>> {
        if let Some(size) = payloads::serialized_size(&result.output_data, self.output_threshold) {
            // Small enough to go inline, the common case: counted once, never uploaded.
            if let Some(m) = metrics {
                m.result_size.set(i64::try_from(size).unwrap_or(i64::MAX));
            }
            return Ok(Arc::clone(result));
        }
        let (sent, upload) =
            payloads::externalize_output(server, result, self.output_threshold).await?;
        if let Some(m) = metrics {
            let size = upload.as_ref().map_or_else(
                || payloads::serialized_size(&result.output_data, usize::MAX),
                |u| Some(u.bytes),
            );
            m.result_size
                .set(size.and_then(|n| i64::try_from(n).ok()).unwrap_or(i64::MAX));
        }
        if let Some(upload) = upload {
            if let Some(m) = metrics {
                m.external_writes.inc();
                m.external_write_time.observe(upload.duration.as_secs_f64());
            }
            if self.events.enabled() {
                self.events.emit(Event::ExternalPayloadUsed {
                    task_type: origin.task_type.clone(),
                    task_id: result.task_id.clone(),
                    server: server.id(),
                    operation: Operation::Write,
                    payload_type: PayloadType::TaskOutput,
                    bytes: upload.bytes as u64,
                    duration: upload.duration,
                });
            }
        }
        Ok(sent)
    }

    /// One attempt to send `result`.
    async fn send(
        &self,
        server: &ServerClient,
        result: &TaskResult,
        origin: &Origin,
        metrics: Option<&WorkerMetrics>,
    ) -> crate::Result<UpdateOutcome> {
        let started = Instant::now();
        // A result without a live worker (journal replay, a worker gone) or of a worker that
        // is paused (pause, quiet) or stopping (SIGTERM, a deploy) goes by `POST /api/tasks`:
        // update-v2 would claim a next task, which a paused worker must not take and a
        // stopping one would hand back at the cost of a round trip and a redelivery.
        let no_next = origin.worker.upgrade().is_none_or(|w| {
            matches!(
                *w.state.borrow(),
                super::WorkerState::Paused
                    | super::WorkerState::Stopping
                    | super::WorkerState::Stopped
            )
        });
        let outcome = if no_next {
            server.update_v1(result).await
        } else {
            server.update(result).await
        };
        if let Some(m) = metrics {
            m.update_time.observe(started.elapsed().as_secs_f64());
        }
        outcome
    }

    /// The server has the result: run the next task it handed out, if any, and say so.
    fn delivered(
        self: &Arc<Self>,
        server_id: ServerId,
        result: &TaskResult,
        origin: &Origin,
        next: Option<Box<Task>>,
        attempts: u32,
    ) {
        if let Some(task) = next {
            match origin.worker.upgrade() {
                Some(worker) => worker.accept_tasks(server_id, vec![*task]),
                None => self.give_back(
                    server_id,
                    &task,
                    Origin {
                        worker: Weak::new(),
                        task_type: origin.task_type.clone(),
                    },
                ),
            }
        }
        if self.events.enabled() {
            self.events.emit(Event::UpdateDelivered {
                task_type: origin.task_type.clone(),
                task_id: result.task_id.clone(),
                server: server_id,
                attempts,
            });
        }
        if attempts > 1 {
            tracing::info!(attempts, "result delivered after retries");
        }
    }

    fn emit_failure(
        &self,
        origin: &Origin,
        result: &TaskResult,
        server: ServerId,
        error: String,
        will_retry: bool,
    ) {
        if self.events.enabled() {
            self.events.emit(Event::UpdateFailed {
                task_type: origin.task_type.clone(),
                task_id: result.task_id.clone(),
                server,
                error,
                will_retry,
            });
        }
    }

    /// Writes a pending result to the journal now (after its first failed attempt), so that a
    /// crash during a long outage does not lose it.
    fn journal_pending(self: &Arc<Self>, id: u64) {
        let Some(journal) = self.journal.clone() else {
            return;
        };
        let entry = {
            let Ok(mut pending) = self.pending.lock() else {
                return;
            };
            let Some(p) = pending.get_mut(&id) else {
                return;
            };
            if p.journal_id.is_some() {
                return;
            }
            let Some(server) = self.servers.client(p.server) else {
                return;
            };
            let entry = JournalEntry::new(server.url(), (*p.result).clone());
            p.journal_id = Some(entry.id.clone());
            entry
        };
        self.handle.spawn_blocking(move || {
            if let Err(e) = journal.append(&[entry]) {
                tracing::error!(error = %e, "cannot journal an undelivered result");
            }
        });
    }

    fn finish(self: &Arc<Self>, id: u64) {
        let removed = self.pending.lock().ok().and_then(|mut p| {
            let removed = p.remove(&id);
            if p.is_empty() {
                self.drained.notify_waiters();
            }
            removed
        });
        if let Some(p) = removed {
            self.metrics.pending_updates.dec();
            if let Some(journal_id) = p.journal_id {
                self.schedule_journal_removal(journal_id);
            }
        }
    }

    /// Removals are batched: one rewrite of the journal per 100 ms at most, however many
    /// journalled results a recovering server accepts.
    fn schedule_journal_removal(self: &Arc<Self>, journal_id: String) {
        let Some(journal) = self.journal.clone() else {
            return;
        };
        if let Ok(mut removals) = self.journal_removals.lock() {
            removals.push(journal_id);
        }
        if self.removal_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        self.handle.spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            this.flush_journal_removals(&journal).await;
        });
    }

    async fn flush_journal_removals(self: &Arc<Self>, journal: &Journal) {
        self.removal_scheduled.store(false, Ordering::Release);
        let ids = self
            .journal_removals
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        if ids.is_empty() {
            return;
        }
        let journal = journal.clone();
        let outcome = tokio::task::spawn_blocking(move || journal.remove(&ids)).await;
        match outcome {
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot remove delivered results from the journal (they will be sent again, harmlessly)")
            }
            Err(e) => tracing::error!(error = %e, "journal removal task failed"),
            Ok(Ok(())) => {}
        }
    }

    /// Waits until every result is delivered, or `deadline` passes. True if all were.
    pub(crate) async fn drain(&self, deadline: Instant) -> bool {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pending() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline.into(), notified)
                .await
                .is_err()
            {
                return self.pending() == 0;
            }
        }
    }

    /// Stops every delivery now and journals what is left. Returns how many were journalled.
    pub(crate) async fn kill(self: &Arc<Self>) -> usize {
        self.killed.store(true, Ordering::Release);
        let left: Vec<Pending> = self
            .pending
            .lock()
            .map(|mut p| p.drain().map(|(_, v)| v).collect())
            .unwrap_or_default();
        for p in &left {
            if let Some(abort) = &p.abort {
                abort.abort();
            }
        }
        (self.metrics.pending_updates).sub(left.len() as i64);
        let entries: Vec<JournalEntry> = left
            .iter()
            .filter(|p| p.journal_id.is_none())
            .filter_map(|p| {
                Some(JournalEntry::new(
                    self.servers.client(p.server)?.url(),
                    (*p.result).clone(),
                ))
            })
            .collect();
        let already = left.len() - entries.len();
        if let Some(journal) = &self.journal {
            self.flush_journal_removals(journal).await;
            let count = entries.len();
            let journal = journal.clone();
            match tokio::task::spawn_blocking(move || journal.append(&entries)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %e, count, "results LOST: cannot write them to the journal")
                }
                Err(e) => tracing::error!(error = %e, count, "results LOST: journal task failed"),
            }
            if !left.is_empty() {
                tracing::warn!(
                    journalled = left.len(),
                    "undelivered results kept in the journal for the next start"
                );
            }
            left.len()
        } else {
            for p in &left {
                tracing::error!(task_id = %p.result.task_id, status = %p.result.status,
                    "result LOST: undelivered at shutdown and the journal is disabled");
            }
            already
        }
    }

    fn journal_now(&self, server: ServerId, result: &TaskResult, journal_id: Option<&str>) {
        if journal_id.is_some() {
            return; // already in the journal
        }
        let (Some(journal), Some(server)) = (&self.journal, self.servers.client(server)) else {
            tracing::error!(task_id = %result.task_id, "result LOST: completed after kill and the journal is disabled");
            return;
        };
        if let Err(e) = journal.append(&[JournalEntry::new(server.url(), result.clone())]) {
            tracing::error!(error = %e, task_id = %result.task_id, "result LOST: cannot journal it");
        }
    }
}
