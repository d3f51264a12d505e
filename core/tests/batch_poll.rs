//! A server whose batch long poll waits for a full batch (the real server's SQLite and
//! Postgres queues do): the runtime notices and picks tasks up as they arrive instead of once
//! per long poll. The dev server's `batch_poll_waits_for_count` reproduces that server.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, init_tracing};
use conductor_devserver::{Config, Faults};
use conductor_worker::{Runtime, TaskOutcome, WorkerOptions};
use serde_json::json;

/// A dev server whose batch long poll waits for full batches, or answers at once.
async fn dev_server(waits_for_count: bool) -> Server {
    let config = Config {
        faults: Faults {
            batch_poll_waits_for_count: waits_for_count,
            ..Faults::default()
        },
        ..Config::default()
    };
    Server::with_config(config).await
}

/// Starts tasks one at a time with a gap while an idle worker with 10 slots and a 1 s long
/// poll waits; returns how long each took from enqueueing to the function, and whether the
/// runtime decided the server waits for full batches.
async fn pickups(waits_for_count: bool) -> (Vec<Duration>, bool) {
    let server = dev_server(waits_for_count).await;
    let runtime = Runtime::new(server.options()).unwrap();
    let started: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let sink = Arc::clone(&started);
    let options = WorkerOptions::new("pickup")
        .concurrency(10)
        .poll_timeout(Duration::from_millis(1000));
    runtime
        .spawn_fn(options, move |_task| {
            sink.lock().unwrap().push(Instant::now());
            async { TaskOutcome::Completed(Default::default()) }
        })
        .unwrap();
    runtime.start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut latencies = Vec::new();
    for n in 1..=6 {
        let enqueued = Instant::now();
        server.enqueue("pickup", 1, json!({})).await;
        while started.lock().unwrap().len() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(started.lock().unwrap()[n - 1] - enqueued);
        tokio::time::sleep(Duration::from_millis(150 + 70 * n as u64)).await;
    }
    let detected = runtime.servers()[0].batch_waits_for_count();
    runtime.stop(Duration::from_secs(5)).await;
    (latencies, detected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_waits_for_full_batches_is_polled_for_one_task_at_a_time() {
    init_tracing();
    let (latencies, detected) = pickups(true).await;
    assert!(
        detected,
        "the wait for a full batch was not noticed: {latencies:?}"
    );
    // One pickup shows the behaviour (it waits out the long poll: the first that a batch poll
    // for more than one task, not the start-up's polls for one, waited for); every other
    // returns as soon as the task is there.
    let slow = latencies
        .iter()
        .filter(|d| **d >= Duration::from_millis(400))
        .count();
    assert!(
        slow <= 1,
        "pickups still wait for the long poll: {latencies:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_answers_at_once_keeps_its_batch_polls() {
    init_tracing();
    let (latencies, detected) = pickups(false).await;
    assert!(!detected, "{latencies:?}");
    assert!(
        latencies.iter().all(|d| *d < Duration::from_millis(400)),
        "{latencies:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_keeps_two_long_polls_out_of_step_on_such_a_server() {
    init_tracing();
    let server = dev_server(true).await;
    let runtime = Runtime::new(server.options()).unwrap();
    let options = WorkerOptions::new("lanes")
        .concurrency(4)
        .poll_timeout(Duration::from_millis(500));
    runtime
        .spawn_fn(options, |_task| async {
            TaskOutcome::Completed(Default::default())
        })
        .unwrap();
    runtime.start().await.unwrap();
    // Until a batch poll for more than one task has waited for a single task.
    for n in 1..=5 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        server.enqueue("lanes", 1, json!({})).await;
        server.wait_completed(n, Duration::from_secs(5)).await;
        if runtime.servers()[0].batch_waits_for_count() {
            break;
        }
    }
    assert!(runtime.servers()[0].batch_waits_for_count());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = common::count(&server.stats().await, "requests", "batch_poll");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let polls = common::count(&server.stats().await, "requests", "batch_poll") - before;
    runtime.stop(Duration::from_secs(5)).await;
    // One lane of 500 ms long polls sends 4 in 2 s; two send 8.
    assert!(
        polls >= 7,
        "{polls} long polls in 2 s: the second lane is not polling"
    );
}
