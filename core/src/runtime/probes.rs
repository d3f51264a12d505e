//! The verdicts of `/health/live` and `/health/ready`, from state already in memory.
//!
//! Live means the process can still do its work: paused, quiet, draining and a server that
//! cannot be reached are all alive. It is not when nothing would bring a poll loop back (the
//! supervisor has stopped ticking, or a loop it restarted keeps making no progress) or when a
//! result delivery has not tried again for far longer than its retries wait. Ready means a
//! server answered a poll or an update recently and the runtime takes new work.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use super::{CREATED, RUNNING, Runtime, STOPPED};
use crate::telemetry::endpoint::Probe;

/// A supervisor (it ticks every second) silent this long is dead or wedged.
const SUPERVISOR_SILENCE_MS: u64 = 15_000;
/// A poll loop restarted this many times in a row, with no progress in between, is beyond
/// what restarting can fix.
pub(super) const RESTARTS_WITHOUT_PROGRESS: u32 = 3;
/// Readiness looks back at least this far for a server's answer.
const READY_WINDOW_MIN: Duration = Duration::from_secs(30);

impl Runtime {
    /// The liveness probe (`/health/live`): fails only when the runtime cannot recover by
    /// itself, so that restarting the process is the right fix.
    pub fn liveness(&self) -> Probe {
        let mut reasons = Vec::new();
        if self.inner.state.load(Ordering::Acquire) == RUNNING {
            self.supervisor_reasons(&mut reasons);
        }
        let after = self.delivery_stall_after();
        let stalled = self.inner.deliveries.stalled(after);
        if stalled > 0 {
            reasons.push(format!(
                "{stalled} result deliveries have not been attempted for more than {} s",
                after.as_secs()
            ));
        }
        Probe {
            ok: reasons.is_empty(),
            reasons,
        }
    }

    /// The readiness probe (`/health/ready`, and `/health`): a server answered a poll or an
    /// update within the last `max(30 s, 3 × the longest poll timeout)`, and the runtime is
    /// running and not quiet.
    pub fn readiness(&self) -> Probe {
        let mut reasons = Vec::new();
        match self.inner.state.load(Ordering::Acquire) {
            RUNNING => {}
            CREATED => reasons.push("not started".to_owned()),
            STOPPED => reasons.push("stopped".to_owned()),
            _ => reasons.push("draining: stopping after the running tasks".to_owned()),
        }
        if self.is_quiet() {
            reasons.push("quiet: no worker polls (resume_all or SIGCONT undoes it)".to_owned());
        }
        let window = self.ready_window();
        let now = SystemTime::now();
        let answered = self.inner.servers.members().iter().any(|m| {
            m.client
                .last_answer()
                .is_some_and(|at| now.duration_since(at).unwrap_or_default() <= window)
        });
        if !answered {
            reasons.push(format!(
                "no server answered a poll or an update in the last {} s",
                window.as_secs()
            ));
        }
        Probe {
            ok: reasons.is_empty(),
            reasons,
        }
    }

    fn supervisor_reasons(&self, reasons: &mut Vec<String>) {
        let beat = self.inner.supervisor_beat.load(Ordering::Relaxed);
        let silent = (crate::api::now_millis() as u64).saturating_sub(beat);
        if silent > SUPERVISOR_SILENCE_MS {
            reasons.push(format!(
                "the supervisor has not run for {} s: failed poll loops are not restarted",
                silent / 1000
            ));
        }
        let Ok(loops) = self.inner.loops.lock() else {
            return;
        };
        for slot in loops
            .iter()
            .filter(|s| s.restarts_without_progress >= RESTARTS_WITHOUT_PROGRESS)
        {
            reasons.push(format!(
                "the poll loop of {} on {} was restarted {} times in a row without progress",
                slot.worker.task_type(),
                slot.server.url(),
                slot.restarts_without_progress
            ));
        }
    }

    fn ready_window(&self) -> Duration {
        let longest_poll = self
            .workers()
            .iter()
            .map(|w| w.options().poll_timeout)
            .max()
            .unwrap_or_default();
        READY_WINDOW_MIN.max(longest_poll * 3)
    }

    /// How long a delivery may go without an attempt before the pipeline counts as stuck:
    /// well past the longest retry delay plus a request's timeout.
    fn delivery_stall_after(&self) -> Duration {
        let options = &self.inner.options;
        (options.update_backoff.max + options.request_timeout) * 2 + Duration::from_secs(60)
    }
}
