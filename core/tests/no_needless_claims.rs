//! Results sent when no executor can take a next task (journal replay at start, a worker that is
//! stopping) must not go by update-v2, which hands out the next task with each answer: those tasks
//! would be handed back and re-delivered. The fault matrix found both (SIGKILL then restart:
//! 200 needless redeliveries; SIGTERM: one per running task).

mod common;

use std::time::Duration;

use common::{Server, claim, complete_all, count, init_tracing, temp_dir};
use conductor_worker::{JournalConfig, Runtime, WorkerOptions};
use serde_json::{Map, json};

fn worker(task_type: &str, concurrency: usize) -> WorkerOptions {
    WorkerOptions::new(task_type)
        .concurrency(concurrency)
        .poll_timeout(Duration::from_millis(200))
        .poll_interval(Duration::from_millis(50))
        .lease_extend(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_replay_at_start_claims_no_tasks() {
    init_tracing();
    let server = Server::start().await;
    let dir = temp_dir("replay-claims");
    // 5 tasks to journal, and 20 more waiting that a careless replay would claim.
    server
        .enqueue("replay", 25, json!({"responseTimeoutSeconds": 600}))
        .await;
    let mut options = server.options();
    options.journal = JournalConfig::File(dir.join("journal.jsonl"));
    let runtime = Runtime::new(options.clone()).unwrap();
    let w = runtime.add_worker(worker("replay", 5)).unwrap();
    runtime.start().await.unwrap();
    let claimed = claim(&w, 5).await;
    server.faults(json!({"fail_rate": {"update": 1.0}})).await;
    complete_all(claimed, &Map::new());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(runtime.kill().await.journalled_results, 5);
    server.reset_faults().await;
    let before = server.stats().await;

    // A restart with no worker at all: only the journal is replayed.
    let again = Runtime::new(options).unwrap();
    again.start().await.unwrap();
    server.wait_completed(5, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    again.stop(Duration::from_secs(2)).await;
    let after = server.stats().await;
    let delta = |g: &str, k: &str| count(&after, g, k) - count(&before, g, k);
    assert_eq!(
        delta("requests", "update_v2"),
        0,
        "the replay used update-v2: {after}"
    );
    assert_eq!(
        delta("tasks", "deliveries"),
        0,
        "the replay claimed tasks: {after}"
    );
    assert_eq!(count(&after, "tasks", "queued"), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_sent_while_stopping_claim_no_next_task() {
    init_tracing();
    let server = Server::start().await;
    server.enqueue("draining", 30, json!({})).await;
    let runtime = Runtime::new(server.options()).unwrap();
    let w = runtime.add_worker(worker("draining", 4)).unwrap();
    runtime.start().await.unwrap();
    let claimed = claim(&w, 4).await;
    // Running tasks finish while the runtime drains.
    let finisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        complete_all(claimed, &Map::new());
    });
    let before = server.stats().await;
    let report = runtime.stop(Duration::from_secs(5)).await;
    finisher.await.unwrap();
    let after = server.stats().await;
    assert_eq!(report.abandoned_tasks, 0);
    assert_eq!(count(&after, "tasks", "completed"), 4);
    let delta = |g: &str, k: &str| count(&after, g, k) - count(&before, g, k);
    assert_eq!(
        delta("tasks", "deliveries"),
        0,
        "draining claimed next tasks: {after}"
    );
    assert_eq!(count(&after, "tasks", "redelivered"), 0, "{after}");
    assert_eq!(count(&after, "tasks", "queued"), 26);
}
