//! Prometheus metrics with conductor-python's canonical names and its `taskType` label, so
//! existing dashboards keep working:
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | `task_poll_total` | counter | polls sent |
//! | `task_poll_error_total` | counter | polls that failed |
//! | `task_poll_time_seconds` | histogram | poll round trips (long polls included) |
//! | `task_paused_total` | counter | times a poll loop found its worker paused and waited |
//! | `task_execution_queue_full_total` | counter | times a poll loop waited because every executor was busy |
//! | `task_execution_started_total` | counter | tasks handed to an executor |
//! | `task_execute_time_seconds` | histogram | hand-out to result, per task |
//! | `task_execute_error_total` | counter | tasks whose result is a failure |
//! | `task_update_time_seconds` | histogram | result delivery round trips |
//! | `task_update_error_total` | counter | delivery attempts that failed (each is retried) |
//! | `task_abandoned_total` | counter | tasks an executor dropped without a result |
//! | `task_result_size_bytes` | gauge | the JSON size of the last result's output |
//! | `task_ack_error_total`, `task_ack_failed_total` | counter | always 0, for dashboards: the batch poll acknowledges tasks, so there is no ack call to fail |
//! | `thread_uncaught_exceptions_total` | counter | task functions that panicked and poll loops that died (each restarted) |
//! | `http_api_client_request_seconds` | histogram | every request to a server, by `method`, `uri` (the route template, never an id) and `status` (`error` when no answer came) |
//! | `active_workers` | gauge | tasks running now |
//! | `worker_restart_total` | counter | poll loops restarted by the supervisor |
//! | `external_payload_used_total` | counter | inputs downloaded (`READ`, `TASK_INPUT`) and outputs uploaded (`WRITE`, `TASK_OUTPUT`) from the server's external storage |
//! | `external_payload_time_seconds` | histogram | those downloads and uploads, by `operation` |
//! | `task_queue_depth` | gauge | tasks waiting in the server's queue, by `taskType`, `domain` (and `server` with several), read every `queue_depth_interval` |
//! | `task_queue_depth_error_total` | counter | reads of the queue depth that failed (the gauge keeps its last value) |
//! | `conductor_worker_pending_updates` | gauge | results accepted but not yet delivered |
//! | `conductor_worker_circuit_state` | gauge | each server's circuit breaker: 0 closed, 1 open, 2 half-open |
//! | `conductor_worker_circuit_transitions_total` | counter | its state changes |
//! | `conductor_worker_in_flight_tasks` | gauge | tasks a worker holds: running, or polled and waiting for an executor |
//! | `conductor_worker_journal_entries` | gauge | undelivered results kept in the journal now |
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
    paused: IntCounterVec,
    queue_full: IntCounterVec,
    started: IntCounterVec,
    result_size: IntGaugeVec,
    ack_errors: IntCounterVec,
    ack_failures: IntCounterVec,
    uncaught: IntCounterVec,
    in_flight: IntGaugeVec,
    /// Whether series that tell servers apart carry a `server` label.
    several_servers: bool,
}

/// The label of almost every family.
const TASK_TYPE: &[&str] = &["taskType"];

/// Registers families on one registry.
struct Define<'r>(&'r prometheus::Registry);

impl Define<'_> {
    fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        let vec = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(vec.clone()))?;
        Ok(vec)
    }

    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
        let vec = IntGaugeVec::new(Opts::new(name, help), labels)?;
        self.0.register(Box::new(vec.clone()))?;
        Ok(vec)
    }

    fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<HistogramVec> {
        let opts = HistogramOpts::new(name, help).buckets(BUCKETS.to_vec());
        let vec = HistogramVec::new(opts, labels)?;
        self.0.register(Box::new(vec.clone()))?;
        Ok(vec)
    }
}

/// Said of `task_ack_error_total` and `task_ack_failed_total`, kept for dashboards.
const NO_ACK: &str = "Always 0: the batch poll acknowledges tasks (no ack call)";

impl Families {
    fn new(registry: &prometheus::Registry, several_servers: bool) -> prometheus::Result<Self> {
        let d = Define(registry);
        let t = TASK_TYPE;
        let depth_labels: &[&str] = if several_servers {
            &["taskType", "domain", "server"]
        } else {
            &["taskType", "domain"]
        };
        Ok(Self {
            polls: d.counter("task_poll_total", "Polls sent", t)?,
            poll_errors: d.counter("task_poll_error_total", "Polls that failed", t)?,
            poll_time: d.histogram("task_poll_time_seconds", "Poll round trips", t)?,
            execute_time: d.histogram("task_execute_time_seconds", "Task execution time", t)?,
            execute_errors: d.counter("task_execute_error_total", "Failed results", t)?,
            update_time: d.histogram("task_update_time_seconds", "Result deliveries", t)?,
            update_errors: d.counter("task_update_error_total", "Failed deliveries", t)?,
            abandoned: d.counter("task_abandoned_total", "Tasks dropped without a result", t)?,
            running: d.gauge("active_workers", "Tasks running now", t)?,
            restarts: d.counter("worker_restart_total", "Poll loops restarted", t)?,
            external_used: d.counter(
                "external_payload_used_total",
                "Payloads read from or written to the server's external storage",
                &["taskType", "operation", "payloadType"],
            )?,
            external_time: d.histogram(
                "external_payload_time_seconds",
                "Downloads and uploads of external payloads",
                &["taskType", "operation"],
            )?,
            queue_depth: d.gauge(
                "task_queue_depth",
                "Tasks waiting in the queue",
                depth_labels,
            )?,
            queue_depth_errors: d.counter("task_queue_depth_error_total", "Failed reads", t)?,
            paused: d.counter("task_paused_total", "Poll loop waits while paused", t)?,
            queue_full: d.counter(
                "task_execution_queue_full_total",
                "Waits for an executor",
                t,
            )?,
            started: d.counter("task_execution_started_total", "Tasks handed out", t)?,
            result_size: d.gauge("task_result_size_bytes", "Last output's JSON size", t)?,
            ack_errors: d.counter("task_ack_error_total", NO_ACK, t)?,
            ack_failures: d.counter("task_ack_failed_total", NO_ACK, t)?,
            uncaught: d.counter("thread_uncaught_exceptions_total", "Panics", t)?,
            in_flight: d.gauge("conductor_worker_in_flight_tasks", "Tasks held", t)?,
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
    /// `task_paused_total`
    pub paused: IntCounter,
    /// `task_execution_queue_full_total`
    pub queue_full: IntCounter,
    /// `task_execution_started_total`
    pub started: IntCounter,
    /// `task_result_size_bytes`
    pub result_size: IntGauge,
    /// `thread_uncaught_exceptions_total`
    pub uncaught: IntCounter,
    /// `conductor_worker_in_flight_tasks` (set when the metrics are rendered)
    pub in_flight: IntGauge,
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
        // Series of their own at 0, so that a dashboard's query for them finds the worker.
        f.ack_errors.with_label_values(t);
        f.ack_failures.with_label_values(t);
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
            paused: f.paused.with_label_values(t),
            queue_full: f.queue_full.with_label_values(t),
            started: f.started.with_label_values(t),
            result_size: f.result_size.with_label_values(t),
            uncaught: f.uncaught.with_label_values(t),
            in_flight: f.in_flight.with_label_values(t),
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
            &f.paused,
            &f.queue_full,
            &f.started,
            &f.ack_errors,
            &f.ack_failures,
            &f.uncaught,
        ] {
            let _ = vec.remove_label_values(t);
        }
        for vec in [&f.poll_time, &f.execute_time, &f.update_time] {
            let _ = vec.remove_label_values(t);
        }
        for vec in [&f.running, &f.result_size, &f.in_flight] {
            let _ = vec.remove_label_values(t);
        }
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
    /// `http_api_client_request_seconds{method,uri,status}`
    pub requests: HistogramVec,
    /// `conductor_worker_journal_entries` (set when the metrics are rendered)
    pub journal_entries: IntGauge,
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
        let requests = HistogramVec::new(
            HistogramOpts::new(
                "http_api_client_request_seconds",
                "Requests to the servers, by route template",
            )
            .buckets(BUCKETS.to_vec()),
            &["method", "uri", "status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        let journal_entries = IntGauge::new(
            "conductor_worker_journal_entries",
            "Undelivered results kept in the journal",
        )?;
        registry.register(Box::new(journal_entries.clone()))?;
        Ok(Self {
            registry,
            families,
            pending_updates,
            circuit_state,
            circuit_transitions,
            requests,
            journal_entries,
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
