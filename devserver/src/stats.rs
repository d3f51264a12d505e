//! Counters behind `GET /admin/stats`: lock-free, one atomic per counter.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// Endpoint keys of `requests` in `/admin/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Poll,
    BatchPoll,
    Update,
    UpdateV2,
    LogAdd,
    LogGet,
    TaskGet,
    QueueSize,
    Taskdefs,
    WorkflowDefs,
    WorkflowStart,
    WorkflowGet,
    Token,
    Health,
    ExternalLocation,
    ExternalGet,
    ExternalPut,
}

const ENDPOINT_NAMES: [&str; 17] = [
    "poll",
    "batch_poll",
    "update",
    "update_v2",
    "log_add",
    "log_get",
    "task_get",
    "queue_size",
    "taskdefs",
    "workflow_defs",
    "workflow_start",
    "workflow_get",
    "token",
    "health",
    "external_location",
    "external_get",
    "external_put",
];

/// Snapshot of `/admin/stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests received per endpoint key (faulted ones included).
    pub requests: BTreeMap<String, u64>,
    pub tasks: TaskStats,
    pub updates: UpdateStats,
    pub faults_injected: FaultStats,
    /// External payload storage (top-level keys on the wire).
    #[serde(flatten)]
    pub payloads: PayloadStats,
}

/// What went through external payload storage, so tests can tell which path a payload took.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PayloadStats {
    /// `GET /api/external/{key}` answered with a stored payload.
    pub external_reads: u64,
    /// `PUT /api/external/{key}` stored a payload.
    pub external_writes: u64,
    /// Task inputs the server stored externally when it scheduled the task.
    pub externalized_inputs: u64,
    /// Task outputs sent inline that the server stored externally itself.
    pub externalized_outputs: u64,
}

/// Task counts. `in_progress` and `queued` are current values; the others count events since
/// the last reset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskStats {
    /// Tasks created (first attempts and retries).
    pub scheduled: u64,
    /// Tasks updated to COMPLETED.
    pub completed: u64,
    /// Tasks updated to FAILED.
    pub failed: u64,
    /// Tasks updated to FAILED_WITH_TERMINAL_ERROR.
    pub failed_terminal: u64,
    /// Tasks the server timed out (response timeout).
    pub timed_out: u64,
    /// Tasks IN_PROGRESS now.
    pub in_progress: u64,
    /// Task ids waiting in queues now (delayed re-queues not included until due).
    pub queued: u64,
    /// Times a task was handed to a worker (by a poll or as update-v2's next task).
    #[serde(default)]
    pub deliveries: u64,
    /// Deliveries of a task that had been handed out before (after `IN_PROGRESS`, a callback,
    /// or a worker handing it back): the times a worker may rightly run the same task again.
    #[serde(default)]
    pub redelivered: u64,
}

/// Update outcomes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateStats {
    /// Updates applied to a non-terminal task (lease extensions included).
    pub accepted: u64,
    /// Updates of a task or workflow already terminal: answered 200 and ignored.
    pub terminal_task: u64,
    /// Updates of an unknown task id (404).
    pub unknown_task: u64,
    /// Updates with `extendLease: true`.
    pub lease_extensions: u64,
    /// Updates with status IN_PROGRESS (call me back later).
    pub in_progress: u64,
    /// Terminal results for a task whose terminal result the server had already applied AND
    /// answered: the worker was told it was delivered and sent it again (a result resent after
    /// an unanswered update, e.g. `reset_after_rate`, does not count).
    #[serde(default)]
    pub duplicate_results: u64,
}

/// Faults actually injected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultStats {
    pub latency: u64,
    pub fail: u64,
    pub drop: u64,
    pub malformed: u64,
    /// Requests handled whose answer was withheld (`reset_after_rate`).
    #[serde(default)]
    pub reset_after: u64,
}

/// The live counters.
#[derive(Default)]
pub struct Counters {
    requests: [AtomicU64; 17],
    pub scheduled: AtomicU64,
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    pub failed_terminal: AtomicU64,
    pub timed_out: AtomicU64,
    /// A gauge, so it survives resets.
    pub in_progress: AtomicI64,
    pub accepted: AtomicU64,
    pub terminal_task: AtomicU64,
    pub unknown_task: AtomicU64,
    pub lease_extensions: AtomicU64,
    pub update_in_progress: AtomicU64,
    pub duplicate_results: AtomicU64,
    pub deliveries: AtomicU64,
    pub redelivered: AtomicU64,
    pub f_latency: AtomicU64,
    pub f_fail: AtomicU64,
    pub f_drop: AtomicU64,
    pub f_malformed: AtomicU64,
    pub f_reset_after: AtomicU64,
    pub external_reads: AtomicU64,
    pub external_writes: AtomicU64,
    pub externalized_inputs: AtomicU64,
    pub externalized_outputs: AtomicU64,
}

/// Adds one to a counter.
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

impl Counters {
    pub fn request(&self, e: Endpoint) {
        inc(&self.requests[e as usize]);
    }

    /// A snapshot; `queued` is filled in by the caller, which knows the queues.
    pub fn snapshot(&self, queued: u64) -> Stats {
        let g = |c: &AtomicU64| c.load(Relaxed);
        Stats {
            requests: ENDPOINT_NAMES
                .iter()
                .zip(&self.requests)
                .map(|(n, c)| (n.to_string(), g(c)))
                .collect(),
            tasks: TaskStats {
                scheduled: g(&self.scheduled),
                completed: g(&self.completed),
                failed: g(&self.failed),
                failed_terminal: g(&self.failed_terminal),
                timed_out: g(&self.timed_out),
                in_progress: self.in_progress.load(Relaxed).max(0) as u64,
                queued,
                deliveries: g(&self.deliveries),
                redelivered: g(&self.redelivered),
            },
            updates: UpdateStats {
                accepted: g(&self.accepted),
                terminal_task: g(&self.terminal_task),
                unknown_task: g(&self.unknown_task),
                lease_extensions: g(&self.lease_extensions),
                in_progress: g(&self.update_in_progress),
                duplicate_results: g(&self.duplicate_results),
            },
            faults_injected: FaultStats {
                latency: g(&self.f_latency),
                fail: g(&self.f_fail),
                drop: g(&self.f_drop),
                malformed: g(&self.f_malformed),
                reset_after: g(&self.f_reset_after),
            },
            payloads: PayloadStats {
                external_reads: g(&self.external_reads),
                external_writes: g(&self.external_writes),
                externalized_inputs: g(&self.externalized_inputs),
                externalized_outputs: g(&self.externalized_outputs),
            },
        }
    }

    /// Zeroes every event counter; gauges keep their values.
    pub fn reset(&self) {
        for c in self.requests.iter().chain([
            &self.scheduled,
            &self.completed,
            &self.failed,
            &self.failed_terminal,
            &self.timed_out,
            &self.accepted,
            &self.terminal_task,
            &self.unknown_task,
            &self.lease_extensions,
            &self.update_in_progress,
            &self.duplicate_results,
            &self.deliveries,
            &self.redelivered,
            &self.f_latency,
            &self.f_fail,
            &self.f_drop,
            &self.f_malformed,
            &self.f_reset_after,
            &self.external_reads,
            &self.external_writes,
            &self.externalized_inputs,
            &self.externalized_outputs,
        ]) {
            c.store(0, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_keeps_gauges() {
        let c = Counters::default();
        c.request(Endpoint::BatchPoll);
        inc(&c.completed);
        inc(&c.externalized_outputs);
        c.in_progress.fetch_add(2, Relaxed);
        let s = c.snapshot(7);
        assert_eq!(s.requests["batch_poll"], 1);
        assert_eq!(s.requests.len(), 17);
        assert_eq!(s.tasks.completed, 1);
        assert_eq!(s.tasks.queued, 7);
        let wire = serde_json::to_value(&s).unwrap();
        assert_eq!(wire["externalized_outputs"], 1);
        assert_eq!(wire["external_reads"], 0);
        c.reset();
        let s = c.snapshot(0);
        assert_eq!(s.requests["batch_poll"], 0);
        assert_eq!(s.tasks.completed, 0);
        assert_eq!(s.tasks.in_progress, 2);
    }
}
