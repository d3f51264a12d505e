//! The poll loop of one worker on one server: wait for free capacity, batch poll that many
//! tasks with the server's long poll, buffer them for the executors; back off on empty polls
//! (up to the worker's `poll_interval`, which is honoured) and on errors (exponentially, with
//! jitter).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Reservation, WorkerInner, WorkerState};
use crate::api::now_millis;
use crate::backoff::Backoff;
use crate::client::{Polled, ServerClient};
use crate::cluster::{Admission, Cluster, Member};
use crate::error::{Error, Result};
use crate::telemetry::Event;

/// No progress is expected (the loop waits for capacity or for a resume).
pub(crate) const NO_DEADLINE: u64 = u64::MAX;

/// Slack on top of the longest a step can legitimately take, before the supervisor calls the
/// loop stuck.
const STALL_SLACK: Duration = Duration::from_secs(10);

/// How often a server that waits for full batches looks at its queue during a long poll
/// (measured on 3.32.3, SQLite and Postgres: pickups spread evenly over 0-100 ms).
const SERVER_QUEUE_CHECKS: Duration = Duration::from_millis(100);

/// How long past its long-poll time a poll may hold its slots.
const LATE_MARGIN: Duration = Duration::from_millis(500);

/// The delay before the next poll after `empty_streak` empty polls in a row: exponential from
/// 2 ms up to `poll_interval`, less the time the (long) poll itself took, so that an idle
/// worker sends about one poll per `poll_interval` when that is longer than the long poll.
///
/// ```text
/// assert_eq!(empty_poll_delay(1, 5 s, 1 s elapsed), 0);       // early empties: poll again
/// assert_eq!(empty_poll_delay(20, 5 s, 1 s elapsed), 4 s);    // idle: one poll per 5 s
/// ```
pub(crate) fn empty_poll_delay(
    empty_streak: u32,
    poll_interval: Duration,
    elapsed: Duration,
) -> Duration {
    let ramp = Duration::from_millis(1u64 << empty_streak.min(30));
    ramp.min(poll_interval).saturating_sub(elapsed)
}

pub(crate) struct PollLoop {
    pub(crate) worker: Arc<WorkerInner>,
    pub(crate) server: Arc<ServerClient>,
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) error_backoff: Backoff,
    /// When the loop must next show progress (ms since the epoch), for the supervisor.
    pub(crate) deadline: Arc<AtomicU64>,
    /// When each lane's long poll now out was sent (ms since the epoch; 0: none).
    pub(crate) long_polls: [AtomicU64; 2],
}

impl PollLoop {
    pub(crate) async fn run(self) {
        let second = AtomicU64::new(NO_DEADLINE);
        tokio::join!(self.lane(0, &self.deadline), self.second_lane(&second));
    }

    /// A second poll on a server whose batch long poll waits for a full batch. Such a server
    /// looks for a task about every 100 ms during a long poll, so one long poll picks a task up
    /// 50 ms after it arrives on average; two, out of step, in 25 ms. Idle until the server is
    /// known to wait (and only with two slots or more). Its progress is not watched
    /// by the supervisor: its requests are bounded by their timeouts, and the first lane is.
    async fn second_lane(&self, deadline: &AtomicU64) {
        let options = &self.worker.options;
        if options.concurrency < 2 {
            return;
        }
        let mut state = self.worker.state.subscribe();
        while !self.server.batch_waits_for_count() {
            if matches!(
                *state.borrow_and_update(),
                WorkerState::Stopping | WorkerState::Stopped
            ) {
                return;
            }
            sleep_unless_state_changes(&mut state, options.poll_timeout).await;
        }
        self.lane(1, deadline).await;
    }

    /// On a server that waits for full batches, a long poll looks at the queue about every
    /// 100 ms from when it was sent. A lane sends its long poll half that after the other
    /// lane's, so that between them the queue is looked at every 50 ms or so (the other lane
    /// covers the wait).
    async fn keep_out_of_step(&self, lane: usize) {
        if !self.server.batch_waits_for_count() {
            return;
        }
        let other = self.long_polls[1 - lane].load(Ordering::Relaxed);
        if other == 0 {
            return;
        }
        let period = SERVER_QUEUE_CHECKS.as_millis() as u64;
        let phase = (now_millis() as u64).saturating_sub(other) % period;
        let wait = (period / 2 + period - phase) % period;
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }

    /// One poll after another while the worker runs: the breaker admits the server, free slots
    /// are reserved, one poll fills them, and the answer sets the pause before the next.
    async fn lane(&self, lane: usize, deadline: &AtomicU64) {
        let mut state = self.worker.state.subscribe();
        let mut streaks = Streaks::default();
        loop {
            if !wait_until_running(&mut state, deadline, &self.worker.metrics.paused).await {
                return;
            }
            let server_id = self.server.id();
            let Some(member) = self.cluster.member(server_id) else {
                return;
            };
            let Some(admission) = self.admit(member, &mut state, deadline).await else {
                continue;
            };
            deadline.store(NO_DEADLINE, Ordering::Relaxed);
            if self.worker.free_slots() == 0 {
                self.worker.metrics.queue_full.inc(); // it waits for an executor to be free
            }
            let Some(reservation) = self.worker.reserve(server_id).await else {
                if admission == Admission::Probe {
                    member.breaker.on_probe_abandoned();
                }
                continue;
            };
            let (polled, reservation, elapsed) = self.poll(lane, reservation, deadline).await;
            let delay = match polled {
                Ok(polled) => self.on_polled(member, polled, reservation, elapsed, &mut streaks),
                Err(e) => self.on_poll_failed(member, e, reservation, &mut streaks),
            };
            if !delay.is_zero() {
                expect_progress_within(deadline, delay);
                sleep_unless_state_changes(&mut state, delay).await;
            }
        }
    }

    /// Asks the server's breaker whether to poll it now. While the breaker is open, waits as
    /// long as it says (less if the worker's state changes) and returns `None`.
    async fn admit(
        &self,
        member: &Member,
        state: &mut watch::Receiver<WorkerState>,
        deadline: &AtomicU64,
    ) -> Option<Admission> {
        let (admission, change) = member.breaker.admit(Instant::now());
        self.cluster
            .report(&self.worker.events, self.server.id(), change);
        if let Admission::Wait(wait) = admission {
            expect_progress_within(deadline, wait);
            sleep_unless_state_changes(state, wait).await;
            return None;
        }
        Some(admission)
    }

    /// Sends one poll for the reserved slots and awaits its answer. Returns the answer, the
    /// slots if they are still held (a late server's went back early), and the poll's time.
    async fn poll<'w>(
        &'w self,
        lane: usize,
        reservation: Reservation<'w>,
        deadline: &AtomicU64,
    ) -> (Result<Polled>, Option<Reservation<'w>>, Duration) {
        let worker = &self.worker;
        let options = &worker.options;
        let task_type = options.task_type.as_str();
        expect_progress_within(deadline, options.poll_timeout + Duration::from_secs(35));
        let count = reservation.count;
        if worker.events.enabled() {
            worker.events.emit(Event::PollStarted {
                task_type: task_type.to_owned(),
                server: self.server.id(),
                count,
            });
        }
        self.keep_out_of_step(lane).await;
        self.long_polls[lane].store(now_millis() as u64, Ordering::Relaxed);
        let started = Instant::now();
        let span = tracing::debug_span!("poll", task_type, server = %self.server.url(), count);
        let poll = self.server.poll(
            task_type,
            options.domain.as_deref(),
            &options.worker_id,
            count,
            options.poll_timeout,
        );
        let poll = tracing::Instrument::instrument(poll, span);
        tokio::pin!(poll);
        let mut reservation = Some(reservation);
        // A server that has not answered within its long-poll time (plus a margin) is
        // late: its slots go back to the other servers while its answer is awaited, so a
        // slow server never holds a task slot.
        let polled = tokio::select! {
            polled = &mut poll => polled,
            _ = tokio::time::sleep(options.poll_timeout + LATE_MARGIN) => {
                reservation = None;
                poll.await
            }
        };
        self.long_polls[lane].store(0, Ordering::Relaxed);
        let elapsed = started.elapsed();
        worker.metrics.polls.inc();
        worker.metrics.poll_time.observe(elapsed.as_secs_f64());
        (polled, reservation, elapsed)
    }

    /// Hands a poll's tasks to the executors (and fails those that cannot be decoded), then
    /// releases the slots. Returns the delay before the next poll: none after tasks, growing
    /// while polls come back empty.
    fn on_polled(
        &self,
        member: &Member,
        Polled { tasks, undecodable }: Polled,
        reservation: Option<Reservation<'_>>,
        elapsed: Duration,
        streaks: &mut Streaks,
    ) -> Duration {
        let worker = &self.worker;
        let task_type = worker.options.task_type.as_str();
        let server_id = self.server.id();
        if streaks.errors > 0 {
            tracing::info!(task_type, server = %self.server.url(), "polling works again");
        }
        streaks.errors = 0;
        worker.consecutive_errors.store(0, Ordering::Relaxed);
        worker
            .last_poll_ok
            .store(now_millis() as u64, Ordering::Relaxed);
        let received = tasks.len() + undecodable.len();
        worker.fail_undecodable(server_id, undecodable);
        if worker.events.enabled() {
            worker.events.emit(Event::PollCompleted {
                task_type: task_type.to_owned(),
                server: server_id,
                received,
                duration: elapsed,
            });
        }
        let change = member.breaker.on_success();
        self.cluster.report(&worker.events, server_id, change);
        worker.accept_tasks(server_id, tasks);
        drop(reservation);
        if received == 0 {
            streaks.empty = streaks.empty.saturating_add(1);
            empty_poll_delay(streaks.empty, worker.options.poll_interval, elapsed)
        } else {
            streaks.empty = 0;
            Duration::ZERO
        }
    }

    /// Releases the slots of a failed poll and records the failure. Returns the delay before
    /// the next poll: the error backoff, or longer if the server's credentials say so.
    fn on_poll_failed(
        &self,
        member: &Member,
        e: Error,
        reservation: Option<Reservation<'_>>,
        streaks: &mut Streaks,
    ) -> Duration {
        let worker = &self.worker;
        let task_type = worker.options.task_type.as_str();
        let server_id = self.server.id();
        drop(reservation);
        let change = member.breaker.on_failure(Instant::now());
        self.cluster.report(&worker.events, server_id, change);
        streaks.errors = streaks.errors.saturating_add(1);
        let error_streak = streaks.errors;
        worker.consecutive_errors.fetch_add(1, Ordering::Relaxed);
        worker.metrics.poll_errors.inc();
        if error_streak == 1 || error_streak.is_multiple_of(20) {
            tracing::warn!(task_type, server = %self.server.url(), errors_in_a_row = error_streak, error = %e, "poll failed");
        } else {
            tracing::debug!(task_type, server = %self.server.url(), error = %e, "poll failed");
        }
        if worker.events.enabled() {
            worker.events.emit(Event::PollFailed {
                task_type: task_type.to_owned(),
                server: server_id,
                error: e.to_string(),
            });
        }
        match e {
            Error::Auth { retry_in, .. } => {
                retry_in.max(self.error_backoff.delay(error_streak - 1))
            }
            _ => self.error_backoff.delay(error_streak - 1),
        }
    }
}

/// What a lane's backoffs grow with.
#[derive(Default)]
struct Streaks {
    /// Polls in a row that brought no task.
    empty: u32,
    /// Polls in a row that failed.
    errors: u32,
}

/// Tells the supervisor that the loop shows progress within `d` (plus slack) or is stuck.
fn expect_progress_within(deadline: &AtomicU64, d: Duration) {
    let at = now_millis() as u64 + (d + STALL_SLACK).as_millis() as u64;
    deadline.store(at, Ordering::Relaxed);
}

/// Waits while the worker is created or paused (no progress is expected meanwhile), counting
/// each wait of a paused worker in `paused`. Returns whether it runs: false once it stops.
async fn wait_until_running(
    state: &mut watch::Receiver<WorkerState>,
    deadline: &AtomicU64,
    paused: &prometheus::IntCounter,
) -> bool {
    loop {
        let current = *state.borrow_and_update();
        match current {
            WorkerState::Stopping | WorkerState::Stopped => return false,
            WorkerState::Created | WorkerState::Paused => {
                if current == WorkerState::Paused {
                    paused.inc();
                }
                deadline.store(NO_DEADLINE, Ordering::Relaxed);
                if state.changed().await.is_err() {
                    return false;
                }
            }
            WorkerState::Running => return true,
        }
    }
}

/// Sleeps for `d`, or less if the worker's state changes (so that a pause or stop is seen).
async fn sleep_unless_state_changes(state: &mut watch::Receiver<WorkerState>, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = state.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_poll_backoff_honours_long_poll_intervals() {
        let five = Duration::from_secs(5);
        let one = Duration::from_secs(1);
        assert_eq!(
            empty_poll_delay(1, five, Duration::ZERO),
            Duration::from_millis(2)
        );
        assert_eq!(
            empty_poll_delay(3, five, Duration::ZERO),
            Duration::from_millis(8)
        );
        assert_eq!(empty_poll_delay(1, five, one), Duration::ZERO);
        // The official SDKs stop at 1.024 s; this keeps growing to the interval.
        assert_eq!(
            empty_poll_delay(12, five, Duration::ZERO),
            Duration::from_millis(4096)
        );
        assert_eq!(empty_poll_delay(13, five, Duration::ZERO), five);
        assert_eq!(empty_poll_delay(200, five, one), Duration::from_secs(4));
        assert_eq!(
            empty_poll_delay(200, Duration::from_millis(100), one),
            Duration::ZERO
        );
    }
}
