//! Handing tasks to executors and taking their results: the one way to take tasks
//! ([`Worker::take`], [`Worker::take_blocking`]), the [`Claim`] each handed-out task carries,
//! and what happens to a claim: completed with a result (to the update pipeline), or dropped
//! without one (abandoned: its lease is no longer extended, and the server hands the task out
//! again after its response timeout).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;
use tokio::task::AbortHandle;

use super::{Buffered, Cancel, InFlight, Worker, WorkerInner, WorkerState, sleep_until};
use crate::api::{Task, TaskResult, TaskStatus};
use crate::client::{ServerId, UpdateOutcome};
use crate::error::{Error, Result};
use crate::telemetry::Event;

/// A task handed to an executor: the task, the server it came from (its result goes back
/// there), and the claim to complete with its result.
#[derive(Debug)]
pub struct ClaimedTask {
    /// The task.
    pub task: Task,
    /// Where it came from.
    pub server: ServerId,
    /// Complete it with the task's result ([`Claim::complete`]); dropping it abandons the task.
    pub claim: Claim,
}

/// An executor's hold on a task it was handed. [`Claim::complete`] hands the result to the
/// runtime; dropping the claim without a result abandons the task: its lease stops being
/// extended, it is counted in `task_abandoned_total` and reported as
/// [`Event::TaskAbandoned`], and the server hands it out again after its response timeout.
#[derive(Debug)]
#[must_use = "dropping a claim abandons its task"]
pub struct Claim {
    worker: Option<Arc<WorkerInner>>,
    task_id: String,
    workflow_id: String,
    /// The task's large input permit, passed on to the delivery of its result.
    large_input: Option<OwnedSemaphorePermit>,
}

impl Claim {
    /// The id of the claimed task.
    pub fn task_id(&self) -> &str {
        &self.task_id
    }

    /// Hands back the task's result (its task and workflow ids are set from the claim). Never
    /// blocks: the result is sent, and retried, by the runtime (after `kill`, journalled).
    /// Fails with [`Error::UnknownTask`] when the runtime no longer holds the task: the server
    /// handed the same task out again (its lease had run out) and that claim was completed.
    pub fn complete(mut self, mut result: TaskResult) -> Result<()> {
        let Some(worker) = self.worker.take() else {
            return Err(Error::NotRunning("stopped"));
        };
        result.task_id = std::mem::take(&mut self.task_id);
        result.workflow_instance_id = std::mem::take(&mut self.workflow_id);
        worker.finish(result, self.large_input.take())
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.abandon(&self.task_id);
        }
    }
}

impl std::fmt::Debug for WorkerInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("task_type", &self.options.task_type)
            .finish_non_exhaustive()
    }
}

/// Unregisters waiting executors when `take` returns or its future is dropped.
struct WaitGuard<'a> {
    inner: &'a WorkerInner,
    count: usize,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if self.count > 0 {
            let mut slots = self.inner.lock_slots();
            slots.waiting = slots.waiting.saturating_sub(self.count);
        }
    }
}

impl Worker {
    /// Takes up to `max` tasks: at least one unless `wait` runs out (`None`: no limit) or
    /// `cancel` fires (then `Ok(vec![])`). An executor pool with `max` idle slots asks for all
    /// of them at once. With `wait` zero it takes only tasks already polled and buffered,
    /// without asking for more (so the poller never claims tasks nobody waits for): for an
    /// executor that just finished a task, since under load the next one is usually buffered.
    ///
    /// [`Error::NotRunning`] once the worker is stopping: an executor loop ends then.
    /// Cancel-safe: dropping the future gives the slots back.
    pub async fn take(
        &self,
        max: usize,
        wait: Option<Duration>,
        cancel: Option<&Cancel>,
    ) -> Result<Vec<ClaimedTask>> {
        let inner = &self.inner;
        if max == 0 {
            return Ok(Vec::new());
        }
        if wait == Some(Duration::ZERO) {
            return inner.take_buffered(max);
        }
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        let mut guard = WaitGuard { inner, count: 0 };
        let mut state = inner.state.subscribe();
        loop {
            let notified = inner.task_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if inner.is_stopping() {
                return Err(Error::NotRunning("stopping"));
            }
            let taken = inner.drain_or_wait(max, &mut guard);
            if !taken.is_empty() {
                return Ok(taken.into_iter().map(|b| inner.hand_out(b)).collect());
            }
            let cancelled = async {
                match cancel {
                    Some(c) => c.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut notified => {}
                _ = state.changed() => {}
                _ = sleep_until(deadline) => return Ok(Vec::new()),
                _ = cancelled => return Ok(Vec::new()),
            }
        }
    }

    /// [`take`](Self::take) for a host thread outside the runtime (a Python or Ruby thread):
    /// blocks the calling thread; another thread interrupts the wait through `cancel`.
    ///
    /// ```
    /// # use conductor_worker::runner::Cancel;
    /// let cancel = Cancel::new();
    /// let for_the_interrupt_handler = cancel.clone();
    /// for_the_interrupt_handler.cancel();
    /// assert!(cancel.is_cancelled());
    /// ```
    pub fn take_blocking(
        &self,
        max: usize,
        wait: Option<Duration>,
        cancel: &Cancel,
    ) -> Result<Vec<ClaimedTask>> {
        if wait == Some(Duration::ZERO) {
            // Nothing to wait for: no runtime round trip (the fast path of a busy executor).
            return self.inner.take_buffered(max);
        }
        self.inner
            .handle
            .block_on(self.take(max, wait, Some(cancel)))
    }
}

impl WorkerInner {
    pub(crate) fn is_stopping(&self) -> bool {
        matches!(
            *self.state.borrow(),
            WorkerState::Stopping | WorkerState::Stopped
        )
    }

    /// Up to `max` buffered tasks; when there are none, this executor's `max` slots are
    /// registered as waiting (once), which lets the poller claim tasks for them. In one critical
    /// section with the buffer: the slots must never look free for a task already taken, or the
    /// poller would claim a task that no executor waits for (its response timeout running while
    /// it sits in the buffer).
    fn drain_or_wait(&self, max: usize, guard: &mut WaitGuard<'_>) -> Vec<Buffered> {
        let mut slots = self.lock_slots();
        let n = max.min(slots.ready.len());
        let taken: Vec<Buffered> = slots.ready.drain(..n).collect();
        if !taken.is_empty() {
            slots.waiting = slots.waiting.saturating_sub(guard.count);
            guard.count = 0;
            if !slots.ready.is_empty() {
                self.task_ready.notify_last();
            }
        } else if guard.count == 0 {
            slots.waiting += max;
            guard.count = max;
            drop(slots);
            self.capacity.notify_waiters();
        }
        taken
    }

    /// Up to `max` buffered tasks, handed out (maybe none).
    fn take_buffered(self: &Arc<Self>, max: usize) -> Result<Vec<ClaimedTask>> {
        if self.is_stopping() {
            return Err(Error::NotRunning("stopping"));
        }
        let buffered: Vec<Buffered> = {
            let mut slots = self.lock_slots();
            let n = max.min(slots.ready.len());
            slots.ready.drain(..n).collect()
        };
        Ok(buffered.into_iter().map(|b| self.hand_out(b)).collect())
    }

    /// Records a task handed to an executor, starts its lease extension, and makes its claim.
    fn hand_out(self: &Arc<Self>, buffered: Buffered) -> ClaimedTask {
        let Buffered {
            task,
            server,
            large_input,
        } = buffered;
        let lease = self.lease_extension(&task, server);
        let flight = InFlight {
            server,
            started: Instant::now(),
            lease,
        };
        if let Some(previous) = self.lock_in_flight().insert(task.task_id.clone(), flight) {
            previous.stop_lease();
        }
        self.metrics.running.inc();
        self.metrics.started.inc();
        if self.events.enabled() {
            self.events.emit(Event::ExecutionStarted {
                task_type: self.options.task_type.clone(),
                task_id: task.task_id.clone(),
                server,
            });
        }
        let claim = Claim {
            worker: Some(Arc::clone(self)),
            task_id: task.task_id.clone(),
            workflow_id: task.workflow_instance_id.clone(),
            large_input,
        };
        ClaimedTask {
            task,
            server,
            claim,
        }
    }

    /// Heartbeats at 80 % of the task's response timeout while it runs, so a long task is not
    /// timed out and handed to another worker.
    fn lease_extension(&self, task: &Task, server: ServerId) -> Option<AbortHandle> {
        let timeout = task.response_timeout_seconds;
        if !self.options.lease_extend || timeout == 0 {
            return None;
        }
        let server = self.servers.client(server).cloned()?;
        let interval = Duration::from_millis(timeout * 800).max(Duration::from_millis(200));
        let (task_id, workflow_id) = (task.task_id.clone(), task.workflow_instance_id.clone());
        let task = self.handle.spawn(async move {
            let mut next = interval;
            loop {
                tokio::time::sleep(next).await;
                match server.extend_lease(&task_id, &workflow_id).await {
                    Ok(UpdateOutcome::Delivered { .. }) => next = interval,
                    Ok(UpdateOutcome::TaskGone) => return,
                    Err(e) => {
                        tracing::warn!(task_id, error = %e, "lease extension failed; retrying sooner");
                        next = (interval / 4).max(Duration::from_millis(200));
                    }
                }
            }
        });
        Some(task.abort_handle())
    }

    /// The task is no longer running here: its record, with its lease extension stopped.
    fn end_flight(&self, task_id: &str) -> Option<InFlight> {
        let flight = self.lock_in_flight().remove(task_id)?;
        flight.stop_lease();
        self.metrics.running.dec();
        Some(flight)
    }

    /// A result from a claim: recorded, then handed to the update pipeline.
    fn finish(
        self: &Arc<Self>,
        mut result: TaskResult,
        large_input: Option<OwnedSemaphorePermit>,
    ) -> Result<()> {
        let flight = self
            .end_flight(&result.task_id)
            .ok_or_else(|| Error::UnknownTask {
                worker: self.options.task_type.clone(),
                task_id: result.task_id.clone(),
            })?;
        let duration = flight.started.elapsed();
        self.metrics.execute_time.observe(duration.as_secs_f64());
        let failed = matches!(
            result.status,
            TaskStatus::Failed | TaskStatus::FailedWithTerminalError
        );
        if failed {
            self.metrics.execute_errors.inc();
        }
        if self.events.enabled() {
            self.events.emit(execution_ended(
                &self.options.task_type,
                &result,
                failed,
                duration,
            ));
        }
        if result.worker_id.is_none() {
            result.worker_id = Some(self.options.worker_id.clone());
        }
        self.deliveries
            .submit_holding(flight.server, result, self.origin(), None, large_input);
        Ok(())
    }

    /// A claim dropped without a result.
    fn abandon(&self, task_id: &str) {
        if self.end_flight(task_id).is_none() {
            // Killed or stopped: the runtime let go of the task already.
            return;
        }
        self.metrics.abandoned.inc();
        tracing::warn!(
            task_type = %self.options.task_type,
            task_id,
            "a task was dropped by its executor without a result; the server hands it out \
             again after its response timeout"
        );
        if self.events.enabled() {
            self.events.emit(Event::TaskAbandoned {
                task_type: self.options.task_type.clone(),
                task_id: task_id.to_owned(),
            });
        }
    }
}

fn execution_ended(
    task_type: &str,
    result: &TaskResult,
    failed: bool,
    duration: Duration,
) -> Event {
    let (task_type, task_id) = (task_type.to_owned(), result.task_id.clone());
    if failed {
        Event::ExecutionFailed {
            task_type,
            task_id,
            reason: result.reason_for_incompletion.clone().unwrap_or_default(),
            duration,
        }
    } else {
        Event::ExecutionCompleted {
            task_type,
            task_id,
            duration,
        }
    }
}
