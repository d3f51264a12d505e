//! Every metric name of the official SDKs' worker metrics (their METRICS.md; the Java SDK uses
//! the same names), and ours, is in a scrape after a run that exercised it: a team's existing
//! dashboards keep working when it switches.

mod common;

use std::time::{Duration, Instant};

use common::{Server, init_tracing};
use conductor_worker::{Runtime, TaskOutcome, WorkerOptions};
use serde_json::{Map, json};

/// The official SDKs' canonical worker metrics (the client-side workflow ones are not a
/// worker's: a worker starts no workflows).
const CANONICAL: [&str; 17] = [
    "task_poll_total",
    "task_poll_error_total",
    "task_poll_time_seconds",
    "task_execution_started_total",
    "task_execute_time_seconds",
    "task_execute_error_total",
    "task_execution_queue_full_total",
    "task_paused_total",
    "task_update_time_seconds",
    "task_update_error_total",
    "task_ack_error_total",
    "task_ack_failed_total",
    "task_result_size_bytes",
    "external_payload_used_total",
    "thread_uncaught_exceptions_total",
    "worker_restart_total",
    "http_api_client_request_seconds",
];

/// Ours: results on their way and in the journal, each server's breaker, what a worker holds.
const OURS: [&str; 8] = [
    "conductor_worker_pending_updates",
    "conductor_worker_journal_entries",
    "conductor_worker_circuit_state",
    "conductor_worker_circuit_transitions_total",
    "conductor_worker_in_flight_tasks",
    "active_workers",
    "task_queue_depth",
    "external_payload_time_seconds",
];

/// The value of the first sample of `name` whose labels contain `labels` (text format).
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| l.contains(labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_canonical_metric_is_served_after_a_run_that_exercised_it() {
    init_tracing();
    let server = Server::start().await;
    let mut options = server.options();
    options.metrics_port = Some(0);
    options.queue_depth_interval = Duration::from_millis(200);
    let runtime = Runtime::new(options).unwrap();
    let one_at_a_time = WorkerOptions::new("canon")
        .concurrency(1)
        .poll_timeout(Duration::from_millis(100));
    runtime
        .spawn_fn(one_at_a_time, |task| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            match task.input_data.get("kind").and_then(|k| k.as_str()) {
                Some("panic") => panic!("a task function that panics"),
                Some("fail") => TaskOutcome::Failed("failed on purpose".into()),
                _ => {
                    TaskOutcome::Completed(Map::from_iter([("out".into(), json!("x".repeat(40)))]))
                }
            }
        })
        .unwrap();
    let paused = runtime
        .add_worker(WorkerOptions::new("canon_paused").paused(true))
        .unwrap();
    runtime.start().await.unwrap();
    for kind in ["ok", "fail", "panic", "ok"] {
        server
            .enqueue("canon", 1, json!({"input": {"kind": kind}}))
            .await;
    }
    server.wait_terminal_or_completed(4).await;
    paused.resume();
    paused.pause();

    let addr = runtime.metrics_addr().unwrap();
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let missing: Vec<&str> = CANONICAL
        .iter()
        .chain(OURS.iter())
        .filter(|name| {
            !text
                .lines()
                .any(|l| l.starts_with(&format!("# TYPE {name} ")))
        })
        .copied()
        .collect();
    assert!(missing.is_empty(), "not served: {missing:?}\n{text}");

    let t = "taskType=\"canon\"";
    assert_eq!(sample(&text, "task_execution_started_total", t), Some(4.0));
    assert_eq!(
        sample(&text, "thread_uncaught_exceptions_total", t),
        Some(1.0)
    );
    assert!(
        sample(&text, "task_execution_queue_full_total", t) >= Some(1.0),
        "{text}"
    );
    assert!(sample(&text, "task_paused_total", "taskType=\"canon_paused\"") >= Some(1.0));
    let out_json = serde_json::to_vec(&json!({"out": "x".repeat(40)}))
        .unwrap()
        .len();
    assert_eq!(
        sample(&text, "task_result_size_bytes", t),
        Some(out_json as f64)
    );
    let poll_route = "uri=\"/tasks/poll/batch/{taskType}\"";
    assert!(sample(&text, "http_api_client_request_seconds_count", poll_route) > Some(0.0));
    assert!(
        !text.contains("uri=\"/tasks/poll/batch/canon"),
        "a task type in a uri label"
    );
    runtime.stop(Duration::from_secs(2)).await;
}

trait WaitAll {
    async fn wait_terminal_or_completed(&self, n: u64);
}

impl WaitAll for Server {
    async fn wait_terminal_or_completed(&self, n: u64) {
        let t0 = Instant::now();
        loop {
            let stats = self.stats().await;
            let done = ["completed", "failed", "failed_terminal"]
                .iter()
                .map(|k| stats["tasks"][k].as_u64().unwrap_or(0))
                .sum::<u64>();
            if done >= n {
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "not done: {stats}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
