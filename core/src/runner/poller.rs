//! The poll loop of one worker on one server: wait for free capacity, batch poll that many
//! tasks with the server's long poll, buffer them for the executors; back off on empty polls
//! (up to the worker's `poll_interval`, which is honoured) and on errors (exponentially, with
//! jitter).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{WorkerInner, WorkerState};
use crate::api::now_millis;
use crate::backoff::Backoff;
use crate::client::ServerClient;
use crate::error::Error;
use crate::telemetry::Event;

/// No progress is expected (the loop waits for capacity or for a resume).
pub(crate) const NO_DEADLINE: u64 = u64::MAX;

/// Slack on top of the longest a step can legitimately take, before the supervisor calls the
/// loop stuck.
const STALL_SLACK: Duration = Duration::from_secs(10);

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
    pub(crate) server_count: usize,
    pub(crate) error_backoff: Backoff,
    /// When the loop must next show progress (ms since the epoch), for the supervisor.
    pub(crate) deadline: Arc<AtomicU64>,
}

impl PollLoop {
    fn expect_progress_within(&self, d: Duration) {
        let at = now_millis() as u64 + (d + STALL_SLACK).as_millis() as u64;
        self.deadline.store(at, Ordering::Relaxed);
    }

    /// This server's part of `free` slots: an even split across servers, the remainder going
    /// to servers in turn so that none starves (with one free slot and three servers, each
    /// server gets it every third time).
    fn share(&self, free: usize) -> usize {
        let n = self.server_count.max(1);
        let base = free / n;
        let remainder = free % n;
        if remainder == 0 {
            return base;
        }
        let turn = self.worker.rotation.load(Ordering::Relaxed) as usize;
        let position = (self.server.id().0 + n - turn % n) % n;
        let extra = usize::from(position < remainder);
        if base + extra > 0 && extra > 0 {
            self.worker.rotation.fetch_add(1, Ordering::Relaxed);
        }
        base + extra
    }

    pub(crate) async fn run(self) {
        let worker = Arc::clone(&self.worker);
        let options = &worker.options;
        let task_type = options.task_type.as_str();
        let mut state = worker.state.subscribe();
        let mut empty_streak: u32 = 0;
        let mut error_streak: u32 = 0;
        loop {
            let current = *state.borrow_and_update();
            match current {
                WorkerState::Stopping | WorkerState::Stopped => return,
                WorkerState::Created | WorkerState::Paused => {
                    self.deadline.store(NO_DEADLINE, Ordering::Relaxed);
                    if state.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                WorkerState::Running => {}
            }
            self.deadline.store(NO_DEADLINE, Ordering::Relaxed);
            let Some(reservation) = worker.reserve(|free| self.share(free)).await else {
                continue;
            };
            self.expect_progress_within(options.poll_timeout + Duration::from_secs(35));
            let count = reservation.count;
            if worker.events.enabled() {
                worker.events.emit(Event::PollStarted {
                    task_type: task_type.to_owned(),
                    server: self.server.id(),
                    count,
                });
            }
            let started = Instant::now();
            let polled = {
                let span =
                    tracing::debug_span!("poll", task_type, server = %self.server.url(), count);
                let _entered = span.enter();
                self.server
                    .batch_poll(
                        task_type,
                        options.domain.as_deref(),
                        &options.worker_id,
                        count,
                        options.poll_timeout,
                    )
                    .await
            };
            let elapsed = started.elapsed();
            worker.metrics.polls.fetch_add(1, Ordering::Relaxed);
            worker.metrics.poll_time.observe(elapsed);
            let delay = match polled {
                Ok(tasks) => {
                    if error_streak > 0 {
                        tracing::info!(task_type, server = %self.server.url(), "polling works again");
                    }
                    error_streak = 0;
                    worker.consecutive_errors.store(0, Ordering::Relaxed);
                    worker
                        .last_poll_ok
                        .store(now_millis() as u64, Ordering::Relaxed);
                    let received = tasks.len();
                    if worker.events.enabled() {
                        worker.events.emit(Event::PollCompleted {
                            task_type: task_type.to_owned(),
                            server: self.server.id(),
                            received,
                            duration: elapsed,
                        });
                    }
                    worker.accept_tasks(self.server.id(), tasks);
                    drop(reservation);
                    if received == 0 {
                        empty_streak = empty_streak.saturating_add(1);
                        empty_poll_delay(empty_streak, options.poll_interval, elapsed)
                    } else {
                        empty_streak = 0;
                        Duration::ZERO
                    }
                }
                Err(e) => {
                    drop(reservation);
                    error_streak = error_streak.saturating_add(1);
                    worker.consecutive_errors.fetch_add(1, Ordering::Relaxed);
                    worker.metrics.poll_errors.fetch_add(1, Ordering::Relaxed);
                    if error_streak == 1 || error_streak % 20 == 0 {
                        tracing::warn!(task_type, server = %self.server.url(), errors_in_a_row = error_streak, error = %e, "poll failed");
                    } else {
                        tracing::debug!(task_type, server = %self.server.url(), error = %e, "poll failed");
                    }
                    if worker.events.enabled() {
                        worker.events.emit(Event::PollFailed {
                            task_type: task_type.to_owned(),
                            server: self.server.id(),
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
            };
            if !delay.is_zero() {
                self.expect_progress_within(delay);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = state.changed() => {}
                }
            }
        }
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
