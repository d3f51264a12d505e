//! Prometheus metrics with conductor-python's canonical names and its `taskType` label, so
//! existing dashboards keep working:
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | `task_poll_total` | counter | polls sent |
//! | `task_poll_error_total` | counter | polls that failed |
//! | `task_poll_time_seconds` | histogram | poll round trips (long polls included) |
//! | `task_execute_time_seconds` | histogram | hand-out to result, per task |
//! | `task_execute_error_total` | counter | tasks whose result is a failure |
//! | `task_update_time_seconds` | histogram | result delivery round trips |
//! | `task_update_error_total` | counter | delivery attempts that failed (each is retried) |
//! | `task_abandoned_total` | counter | tasks an executor dropped without a result |
//! | `active_workers` | gauge | tasks running now |
//! | `worker_restart_total` | counter | poll loops restarted by the supervisor |
//! | `external_payload_used_total` | counter | inputs downloaded (`READ`, `TASK_INPUT`) and outputs uploaded (`WRITE`, `TASK_OUTPUT`) from the server's external storage |
//! | `external_payload_time_seconds` | histogram | those downloads and uploads, by `operation` |
//! | `task_queue_depth` | gauge | tasks waiting in the server's queue, by `taskType`, `domain` (and `server` with several), read every `queue_depth_interval` |
//! | `task_queue_depth_error_total` | counter | reads of the queue depth that failed (the gauge keeps its last value) |
//! | `conductor_worker_pending_updates` | gauge | results accepted but not yet delivered |
//! | `conductor_worker_circuit_state` | gauge | each server's circuit breaker: 0 closed, 1 open, 2 half-open |
//! | `conductor_worker_circuit_transitions_total` | counter | its state changes |
//!
//! The `prometheus` crate keeps them and writes the text exposition format (0.0.4), which
//! Prometheus and the `prometheus_client` Python parser both read. Each worker holds its own
//! labelled series, whose updates are atomic operations: recording takes no lock.

use std::sync::Arc;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    TextEncoder,
};

/// Bucket bounds (seconds) of every duration histogram.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric family; each worker takes its series from them.
struct Families {
    polls: IntCounterVec,
    poll_errors: IntCounterVec,
    poll_time: HistogramVec,
    execute_time: HistogramVec,
    execute_errors: IntCounterVec,
    update_time: HistogramVec,
    update_errors: IntCounterVec,
    abandoned: IntCounterVec,
    running: IntGaugeVec,
    restarts: IntCounterVec,
    external_used: IntCounterVec,
    external_time: HistogramVec,
    queue_depth: IntGaugeVec,
    queue_depth_errors: IntCounterVec,
    /// Whether series that tell servers apart carry a `server` label.
    several_servers: bool,
}

/// The label of almost every family.
const TASK_TYPE: &[&str] = &["taskType"];

impl Families {
    fn new(registry: &prometheus::Registry, several_servers: bool) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let vec = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(vec.clone()))?;
            Ok::<_, prometheus::Error>(vec)
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(BUCKETS.to_vec());
            let vec = HistogramVec::new(opts, labels)?;
            registry.register(Box::new(vec.clone()))?;
            Ok::<_, prometheus::Error>(vec)
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let vec = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(vec.clone()))?;
            Ok::<_, prometheus::Error>(vec)
        };
        Ok(Self {
            polls: counter("task_poll_total", "Polls sent", TASK_TYPE)?,
            poll_errors: counter("task_poll_error_total", "Polls that failed", TASK_TYPE)?,
            poll_time: histogram("task_poll_time_seconds", "Poll round trips", TASK_TYPE)?,
            execute_time: histogram(
                "task_execute_time_seconds",
                "Task execution time",
                TASK_TYPE,
            )?,
            execute_errors: counter(
                "task_execute_error_total",
                "Tasks whose result is a failure",
                TASK_TYPE,
            )?,
            update_time: histogram(
                "task_update_time_seconds",
                "Result delivery round trips",
                TASK_TYPE,
            )?,
            update_errors: counter(
                "task_update_error_total",
                "Result deliveries that failed",
                TASK_TYPE,
            )?,
            abandoned: counter(
                "task_abandoned_total",
                "Tasks an executor dropped without a result",
                TASK_TYPE,
            )?,
            running: gauge("active_workers", "Tasks running now", TASK_TYPE)?,
            restarts: counter(
                "worker_restart_total",
                "Poll loops restarted by the supervisor",
                TASK_TYPE,
            )?,
            external_used: counter(
                "external_payload_used_total",
                "Payloads read from or written to the server's external storage",
                &["taskType", "operation", "payloadType"],
            )?,
            external_time: histogram(
                "external_payload_time_seconds",
                "Downloads and uploads of external payloads",
                &["taskType", "operation"],
            )?,
            queue_depth: gauge(
                "task_queue_depth",
                "Tasks waiting in the server's queue",
                if several_servers {
                    &["taskType", "domain", "server"]
                } else {
                    &["taskType", "domain"]
                },
            )?,
            queue_depth_errors: counter(
                "task_queue_depth_error_total",
                "Queue depth reads that failed",
                TASK_TYPE,
            )?,
            several_servers,
        })
    }
}

/// The metrics of one worker (one `taskType` label value). Its series leave the exposition
/// when it is dropped.
pub struct WorkerMetrics {
    /// `task_poll_total`
    pub polls: IntCounter,
    /// `task_poll_error_total`
    pub poll_errors: IntCounter,
    /// `task_poll_time_seconds`
    pub poll_time: Histogram,
    /// `task_execute_time_seconds`
    pub execute_time: Histogram,
    /// `task_execute_error_total`
    pub execute_errors: IntCounter,
    /// `task_update_time_seconds`
    pub update_time: Histogram,
    /// `task_update_error_total`
    pub update_errors: IntCounter,
    /// `active_workers`
    pub running: IntGauge,
    /// `worker_restart_total`
    pub restarts: IntCounter,
    /// `task_abandoned_total`
    pub abandoned: IntCounter,
    /// `external_payload_used_total{operation="READ",payloadType="TASK_INPUT"}`
    pub external_reads: IntCounter,
    /// `external_payload_used_total{operation="WRITE",payloadType="TASK_OUTPUT"}`
    pub external_writes: IntCounter,
    /// `external_payload_time_seconds{operation="READ"}`
    pub external_read_time: Histogram,
    /// `external_payload_time_seconds{operation="WRITE"}`
    pub external_write_time: Histogram,
    /// `task_queue_depth_error_total`
    pub queue_depth_errors: IntCounter,
    task_type: String,
    domain: String,
    /// The servers whose queue depth is recorded (their series go when the worker does).
    depth_servers: std::sync::Mutex<Vec<String>>,
    families: Arc<Families>,
}

impl WorkerMetrics {
    fn new(families: Arc<Families>, task_type: &str, domain: &str) -> Self {
        let t = &[task_type];
        let f = &families;
        Self {
            polls: f.polls.with_label_values(t),
            poll_errors: f.poll_errors.with_label_values(t),
            poll_time: f.poll_time.with_label_values(t),
            execute_time: f.execute_time.with_label_values(t),
            execute_errors: f.execute_errors.with_label_values(t),
            update_time: f.update_time.with_label_values(t),
            update_errors: f.update_errors.with_label_values(t),
            running: f.running.with_label_values(t),
            restarts: f.restarts.with_label_values(t),
            abandoned: f.abandoned.with_label_values(t),
            external_reads: (f.external_used).with_label_values(&[task_type, "READ", "TASK_INPUT"]),
            external_writes: (f.external_used).with_label_values(&[
                task_type,
                "WRITE",
                "TASK_OUTPUT",
            ]),
            external_read_time: f.external_time.with_label_values(&[task_type, "READ"]),
            external_write_time: f.external_time.with_label_values(&[task_type, "WRITE"]),
            queue_depth_errors: f.queue_depth_errors.with_label_values(t),
            task_type: task_type.to_owned(),
            domain: domain.to_owned(),
            depth_servers: std::sync::Mutex::default(),
            families,
        }
    }

    /// Records the queue depth `server` reported.
    pub fn set_queue_depth(&self, server: &str, depth: u64) {
        (self.families.queue_depth)
            .with_label_values(&self.depth_labels(server))
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
        if let Ok(mut servers) = self.depth_servers.lock()
            && !servers.iter().any(|s| s == server)
        {
            servers.push(server.to_owned());
        }
    }

    fn depth_labels<'a>(&'a self, server: &'a str) -> Vec<&'a str> {
        let mut labels = vec![self.task_type.as_str(), self.domain.as_str()];
        if self.families.several_servers {
            labels.push(server);
        }
        labels
    }
}

impl Drop for WorkerMetrics {
    fn drop(&mut self) {
        let f = &self.families;
        let t = &[self.task_type.as_str()];
        for vec in [
            &f.polls,
            &f.poll_errors,
            &f.execute_errors,
            &f.update_errors,
            &f.restarts,
            &f.abandoned,
            &f.queue_depth_errors,
        ] {
            let _ = vec.remove_label_values(t);
        }
        for vec in [&f.poll_time, &f.execute_time, &f.update_time] {
            let _ = vec.remove_label_values(t);
        }
        let _ = f.running.remove_label_values(t);
        let _ = (f.external_used).remove_label_values(&[t[0], "READ", "TASK_INPUT"]);
        let _ = (f.external_used).remove_label_values(&[t[0], "WRITE", "TASK_OUTPUT"]);
        let _ = f.external_time.remove_label_values(&[t[0], "READ"]);
        let _ = f.external_time.remove_label_values(&[t[0], "WRITE"]);
        let servers = self
            .depth_servers
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        for server in &servers {
            let _ = f
                .queue_depth
                .remove_label_values(&self.depth_labels(server));
        }
    }
}

/// All workers' metrics, and the runtime's own.
pub struct Registry {
    registry: prometheus::Registry,
    families: Arc<Families>,
    /// `conductor_worker_pending_updates`
    pub pending_updates: IntGauge,
    circuit_state: IntGaugeVec,
    circuit_transitions: IntCounterVec,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(false)
    }
}

impl Registry {
    /// The metrics of a runtime with one server, or `several_servers` (whose series that tell
    /// servers apart then carry a `server` label).
    pub fn new(several_servers: bool) -> Self {
        Self::define(several_servers)
            .unwrap_or_else(|e| unreachable!("the metric definitions are fixed: {e}"))
    }

    fn define(several_servers: bool) -> prometheus::Result<Self> {
        let registry = prometheus::Registry::new();
        let families = Arc::new(Families::new(&registry, several_servers)?);
        let pending_updates = IntGauge::new(
            "conductor_worker_pending_updates",
            "Results not yet delivered",
        )?;
        registry.register(Box::new(pending_updates.clone()))?;
        let circuit_state = IntGaugeVec::new(
            Opts::new(
                "conductor_worker_circuit_state",
                "Circuit breaker of each server: 0 closed, 1 open, 2 half-open",
            ),
            &["server"],
        )?;
        registry.register(Box::new(circuit_state.clone()))?;
        let circuit_transitions = IntCounterVec::new(
            Opts::new(
                "conductor_worker_circuit_transitions_total",
                "Circuit breaker state changes",
            ),
            &["server"],
        )?;
        registry.register(Box::new(circuit_transitions.clone()))?;
        Ok(Self {
            registry,
            families,
            pending_updates,
            circuit_state,
            circuit_transitions,
        })
    }

    /// Metrics for a new worker labelled `task_type`.
    pub fn worker(&self, task_type: &str) -> Arc<WorkerMetrics> {
        self.worker_in(task_type, None)
    }

    /// Metrics for a new worker labelled `task_type` that polls `domain`.
    pub fn worker_in(&self, task_type: &str, domain: Option<&str>) -> Arc<WorkerMetrics> {
        Arc::new(WorkerMetrics::new(
            Arc::clone(&self.families),
            task_type,
            domain.unwrap_or_default(),
        ))
    }

    /// Records a server's breaker as of now: `state` (0 closed, 1 open, 2 half-open) and its
    /// `transitions` so far (the breaker counts them; the counter catches up to it).
    pub fn set_circuit(&self, server: &str, state: i64, transitions: u64) {
        self.circuit_state.with_label_values(&[server]).set(state);
        let counter = self.circuit_transitions.with_label_values(&[server]);
        counter.inc_by(transitions.saturating_sub(counter.get()));
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# the metrics could not be encoded: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_canonical_names_with_cumulative_buckets() {
        let registry = Registry::default();
        let m = registry.worker("gr\"eet");
        m.polls.inc_by(3);
        m.poll_time.observe(0.003);
        m.poll_time.observe(0.7);
        let text = registry.render();
        assert!(
            text.contains("task_poll_total{taskType=\"gr\\\"eet\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("task_poll_time_seconds_bucket{taskType=\"gr\\\"eet\",le=\"0.005\"} 1")
        );
        assert!(text.contains("task_poll_time_seconds_bucket{taskType=\"gr\\\"eet\",le=\"1\"} 2"));
        assert!(text.contains("task_poll_time_seconds_count{taskType=\"gr\\\"eet\"} 2"));
        m.external_reads.inc_by(2);
        m.external_write_time.observe(0.04);
        let text = registry.render();
        assert!(text.contains("external_payload_used_total{operation=\"READ\",payloadType=\"TASK_INPUT\",taskType=\"gr\\\"eet\"} 2"), "{text}");
        assert!(text.contains("external_payload_used_total{operation=\"WRITE\",payloadType=\"TASK_OUTPUT\",taskType=\"gr\\\"eet\"} 0"));
        assert!(text.contains("external_payload_time_seconds_bucket{operation=\"WRITE\",taskType=\"gr\\\"eet\",le=\"0.05\"} 1"));
        m.set_queue_depth("http://a/api", 7);
        assert!(
            registry
                .render()
                .contains("task_queue_depth{domain=\"\",taskType=\"gr\\\"eet\"} 7")
        );
        drop(m);
        assert!(
            !registry.render().contains("gr\\\"eet"),
            "a dropped worker is still listed"
        );
    }
}
