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
//! | `active_workers` | gauge | tasks running now |
//! | `worker_restart_total` | counter | poll loops restarted by the supervisor |
//! | `conductor_worker_pending_updates` | gauge | results accepted but not yet delivered |
//! | `external_payload_used_total` | counter | inputs downloaded (`READ`, `TASK_INPUT`) and outputs uploaded (`WRITE`, `TASK_OUTPUT`) from the server's external storage |
//! | `external_payload_time_seconds` | histogram | those downloads and uploads, by `operation` |
//!
//! Each worker owns its counters as atomics, so recording costs no lock.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

type CounterOf = fn(&WorkerMetrics) -> &AtomicU64;
type HistogramOf = fn(&WorkerMetrics) -> &Histogram;
/// Each worker still alive, with its `taskType`.
type LiveWorkers = [(String, Arc<WorkerMetrics>)];

const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A histogram of durations.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// The metrics of one worker (one `taskType` label value).
#[derive(Default)]
pub struct WorkerMetrics {
    /// `task_poll_total`
    pub polls: AtomicU64,
    /// `task_poll_error_total`
    pub poll_errors: AtomicU64,
    /// `task_poll_time_seconds`
    pub poll_time: Histogram,
    /// `task_execute_time_seconds`
    pub execute_time: Histogram,
    /// `task_execute_error_total`
    pub execute_errors: AtomicU64,
    /// `task_update_time_seconds`
    pub update_time: Histogram,
    /// `task_update_error_total`
    pub update_errors: AtomicU64,
    /// `active_workers`
    pub running: AtomicI64,
    /// `worker_restart_total`
    pub restarts: AtomicU64,
    /// `task_abandoned_total`: tasks an executor dropped without a result
    pub abandoned: AtomicU64,
    /// `external_payload_used_total{operation="READ",payloadType="TASK_INPUT"}`
    pub external_reads: AtomicU64,
    /// `external_payload_used_total{operation="WRITE",payloadType="TASK_OUTPUT"}`
    pub external_writes: AtomicU64,
    /// `external_payload_time_seconds{operation="READ"}`
    pub external_read_time: Histogram,
    /// `external_payload_time_seconds{operation="WRITE"}`
    pub external_write_time: Histogram,
}

/// All workers' metrics.
#[derive(Default)]
pub struct Registry {
    workers: Mutex<Vec<(String, Weak<WorkerMetrics>)>>,
    /// `conductor_worker_pending_updates`
    pub pending_updates: AtomicI64,
}

impl Registry {
    /// Metrics for a new worker labelled `task_type`.
    pub fn worker(&self, task_type: &str) -> Arc<WorkerMetrics> {
        let metrics = Arc::new(WorkerMetrics::default());
        if let Ok(mut workers) = self.workers.lock() {
            workers.push((task_type.to_owned(), Arc::downgrade(&metrics)));
        }
        metrics
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let workers = self.live_workers();
        let mut out = String::with_capacity(4096);
        render_counters(&mut out, &workers);
        render_histograms(&mut out, &workers);
        render_external_payloads(&mut out, &workers);
        render_active_workers(&mut out, &workers);
        let _ = writeln!(
            out,
            "# HELP conductor_worker_pending_updates Results not yet delivered\n# TYPE conductor_worker_pending_updates gauge\nconductor_worker_pending_updates {}",
            self.pending_updates.load(Ordering::Relaxed)
        );
        out
    }

    /// The workers not dropped yet, with their `taskType`.
    fn live_workers(&self) -> Vec<(String, Arc<WorkerMetrics>)> {
        self.workers
            .lock()
            .map(|w| {
                w.iter()
                    .filter_map(|(t, m)| Some((t.clone(), m.upgrade()?)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The counters labelled by `taskType` alone.
fn render_counters(out: &mut String, workers: &LiveWorkers) {
    let counters: [(&str, &str, CounterOf); 6] = [
        ("task_poll_total", "Polls sent", |m| &m.polls),
        ("task_poll_error_total", "Polls that failed", |m| {
            &m.poll_errors
        }),
        (
            "task_execute_error_total",
            "Tasks whose result is a failure",
            |m| &m.execute_errors,
        ),
        (
            "task_update_error_total",
            "Result deliveries that failed",
            |m| &m.update_errors,
        ),
        (
            "worker_restart_total",
            "Poll loops restarted by the supervisor",
            |m| &m.restarts,
        ),
        (
            "task_abandoned_total",
            "Tasks an executor dropped without a result",
            |m| &m.abandoned,
        ),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (t, m) in workers {
            let _ = writeln!(
                out,
                "{name}{{taskType=\"{}\"}} {}",
                escape(t),
                get(m).load(Ordering::Relaxed)
            );
        }
    }
}

/// The histograms labelled by `taskType` alone.
fn render_histograms(out: &mut String, workers: &LiveWorkers) {
    let histograms: [(&str, &str, HistogramOf); 3] = [
        ("task_poll_time_seconds", "Poll round trips", |m| {
            &m.poll_time
        }),
        ("task_execute_time_seconds", "Task execution time", |m| {
            &m.execute_time
        }),
        (
            "task_update_time_seconds",
            "Result delivery round trips",
            |m| &m.update_time,
        ),
    ];
    for (name, help, get) in histograms {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (t, m) in workers {
            render_histogram(out, name, &format!("taskType=\"{}\"", escape(t)), get(m));
        }
    }
}

/// `active_workers`: the tasks each worker runs now.
fn render_active_workers(out: &mut String, workers: &LiveWorkers) {
    let _ = writeln!(
        out,
        "# HELP active_workers Tasks running now\n# TYPE active_workers gauge"
    );
    for (t, m) in workers {
        let _ = writeln!(
            out,
            "active_workers{{taskType=\"{}\"}} {}",
            escape(t),
            m.running.load(Ordering::Relaxed)
        );
    }
}

/// One histogram's series, `labels` already rendered (`taskType="x",operation="READ"`).
fn render_histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let mut cumulative = 0;
    for (i, bound) in BUCKETS.iter().enumerate() {
        cumulative += h.buckets[i].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
    }
    let count = h.count.load(Ordering::Relaxed);
    let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
}

/// `external_payload_used_total` and `external_payload_time_seconds`, with the official SDKs'
/// `operation` and `payloadType` labels.
fn render_external_payloads(out: &mut String, workers: &LiveWorkers) {
    type Transfers = (&'static str, &'static str, CounterOf, HistogramOf);
    let kinds: [Transfers; 2] = [
        (
            "READ",
            "TASK_INPUT",
            |m| &m.external_reads,
            |m| &m.external_read_time,
        ),
        (
            "WRITE",
            "TASK_OUTPUT",
            |m| &m.external_writes,
            |m| &m.external_write_time,
        ),
    ];
    let _ = writeln!(
        out,
        "# HELP external_payload_used_total Payloads read from or written to the server's external storage\n# TYPE external_payload_used_total counter"
    );
    for (t, m) in workers {
        for (operation, payload_type, count, _) in kinds {
            let _ = writeln!(
                out,
                "external_payload_used_total{{taskType=\"{}\",operation=\"{operation}\",payloadType=\"{payload_type}\"}} {}",
                escape(t),
                count(m).load(Ordering::Relaxed)
            );
        }
    }
    let name = "external_payload_time_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Downloads and uploads of external payloads\n# TYPE {name} histogram"
    );
    for (t, m) in workers {
        for (operation, _, _, time) in kinds {
            let labels = format!("taskType=\"{}\",operation=\"{operation}\"", escape(t));
            render_histogram(out, name, &labels, time(m));
        }
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_canonical_names_with_cumulative_buckets() {
        let registry = Registry::default();
        let m = registry.worker("gr\"eet");
        m.polls.fetch_add(3, Ordering::Relaxed);
        m.poll_time.observe(Duration::from_millis(3));
        m.poll_time.observe(Duration::from_millis(700));
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
        m.external_reads.fetch_add(2, Ordering::Relaxed);
        m.external_write_time.observe(Duration::from_millis(40));
        let text = registry.render();
        assert!(text.contains("external_payload_used_total{taskType=\"gr\\\"eet\",operation=\"READ\",payloadType=\"TASK_INPUT\"} 2"), "{text}");
        assert!(text.contains("external_payload_used_total{taskType=\"gr\\\"eet\",operation=\"WRITE\",payloadType=\"TASK_OUTPUT\"} 0"));
        assert!(text.contains("external_payload_time_seconds_bucket{taskType=\"gr\\\"eet\",operation=\"WRITE\",le=\"0.05\"} 1"));
        drop(m);
        assert!(
            !registry.render().contains("gr\\\"eet"),
            "a dropped worker is still listed"
        );
    }
}
