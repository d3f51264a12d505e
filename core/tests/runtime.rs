//! The runtime against the dev server: each test is a behaviour a user of the workers would
//! notice, judged from the server's own stats.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Server, claim, complete_all, count, init_tracing, take_one, temp_dir};
use conductor_worker::telemetry::Event;
use conductor_worker::{JournalConfig, Runtime, TaskOutcome, TaskResult, WorkerOptions};
use serde_json::{Map, json};

fn echo_output(n: usize) -> Map<String, serde_json::Value> {
    let mut m = Map::new();
    m.insert("n".into(), n.into());
    m
}

fn worker(task_type: &str) -> WorkerOptions {
    WorkerOptions::new(task_type)
        .poll_timeout(Duration::from_millis(200))
        .poll_interval(Duration::from_millis(50))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drains_tasks_with_update_v2_chaining() {
    init_tracing();
    let server = Server::start().await;
    server.enqueue("drain", 500, json!({})).await;
    let runtime = Runtime::new(server.options()).unwrap();
    runtime
        .spawn_fn(worker("drain").concurrency(8), |_task| async {
            TaskOutcome::Completed(echo_output(1))
        })
        .unwrap();
    runtime.start().await.unwrap();
    let stats = server.wait_completed(500, Duration::from_secs(30)).await;
    runtime.stop(Duration::from_secs(5)).await;
    let stats_after = server.stats().await;
    assert_eq!(count(&stats_after, "tasks", "completed"), 500);
    assert_eq!(count(&stats, "updates", "unknown_task"), 0);
    // update-v2 hands out the next task with each result, so far fewer polls than tasks.
    let polls = count(&stats, "requests", "batch_poll");
    assert!(
        polls < 250,
        "{polls} polls for 500 tasks: update-v2's next task is not used"
    );
    assert!(count(&stats, "requests", "update_v2") >= 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_ask_only_for_idle_executors() {
    init_tracing();
    let server = Server::start().await;
    server.enqueue("capacity", 60, json!({})).await;
    let runtime = Runtime::new(server.options()).unwrap();
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&asked);
    runtime.add_listener(move |e| {
        if let Event::PollStarted { count, .. } = e {
            seen.lock().unwrap().push(*count);
        }
    });
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (Arc::clone(&running), Arc::clone(&peak));
    runtime
        .spawn_fn(worker("capacity").concurrency(3), move |_t| {
            let (r, p) = (Arc::clone(&r), Arc::clone(&p));
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                TaskOutcome::Completed(Map::new())
            }
        })
        .unwrap();
    runtime.start().await.unwrap();
    server.wait_completed(60, Duration::from_secs(30)).await;
    runtime.stop(Duration::from_secs(5)).await;
    assert!(
        peak.load(Ordering::SeqCst) <= 3,
        "more tasks ran at once than the concurrency"
    );
    let asked = asked.lock().unwrap().clone();
    assert!(!asked.is_empty());
    assert!(
        asked.iter().all(|&c| (1..=3).contains(&c)),
        "poll counts {asked:?} exceed the idle executors"
    );
    // Nothing was left buffered: every task the server handed out completed.
    assert_eq!(count(&server.stats().await, "tasks", "in_progress"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_whose_update_fails_for_20_s_is_delivered_after_recovery() {
    init_tracing();
    let server = Server::start().await;
    server
        .enqueue("outage", 5, json!({"responseTimeoutSeconds": 600}))
        .await;
    let mut options = server.options();
    options.update_backoff =
        conductor_worker::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
    let runtime = Runtime::new(options).unwrap();
    runtime
        .spawn_fn(worker("outage").concurrency(5), |_t| async {
            TaskOutcome::Completed(echo_output(7))
        })
        .unwrap();
    server.faults(json!({"fail_rate": {"update": 1.0}})).await;
    runtime.start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let during = server.stats().await;
    assert_eq!(
        count(&during, "tasks", "completed"),
        0,
        "updates were meant to fail"
    );
    assert!(
        runtime.pending_results() == 5,
        "results given up: {} pending",
        runtime.pending_results()
    );
    server.reset_faults().await;
    let stats = server.wait_completed(5, Duration::from_secs(10)).await;
    assert_eq!(count(&stats, "updates", "unknown_task"), 0);
    runtime.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_answered_404_is_dropped_not_retried_forever() {
    init_tracing();
    let server = Server::start().await;
    let dir = temp_dir("gone");
    let journal = conductor_worker::journal::Journal::open(dir.join("j.jsonl")).unwrap();
    journal
        .append(&[conductor_worker::journal::JournalEntry::new(
            server.api(),
            TaskResult::completed("no-such-task", "no-such-workflow", Map::new()),
        )])
        .unwrap();
    let mut options = server.options();
    options.journal = JournalConfig::File(dir.join("j.jsonl"));
    let runtime = Runtime::new(options).unwrap();
    runtime.start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = server.stats().await;
    assert_eq!(
        count(&stats, "updates", "unknown_task"),
        1,
        "a 404 must end the retries: {stats}"
    );
    assert_eq!(runtime.pending_results(), 0);
    runtime.stop(Duration::from_secs(2)).await;
    assert!(
        journal.load().unwrap().is_empty(),
        "the dropped result is still journalled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_unknown_task_does_not_switch_update_v2_off() {
    init_tracing();
    let server = Server::start().await;
    let client = &Runtime::new(server.options()).unwrap().servers()[0].clone();
    let gone = client
        .update(&TaskResult::completed("unknown", "wf", Map::new()))
        .await
        .unwrap();
    assert_eq!(gone, conductor_worker::UpdateOutcome::TaskGone);
    assert_ne!(
        client.update_v2(),
        conductor_worker::client::UpdateV2::Missing
    );
    server.enqueue("v2", 2, json!({})).await;
    let tasks = client
        .batch_poll("v2", None, "w", 1, Duration::from_millis(100))
        .await
        .unwrap()
        .tasks;
    let t = &tasks[0];
    client
        .update(&TaskResult::completed(
            &t.task_id,
            &t.workflow_instance_id,
            Map::new(),
        ))
        .await
        .unwrap();
    assert_eq!(
        client.update_v2(),
        conductor_worker::client::UpdateV2::Present
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_server_without_update_v2_gets_results_through_post_tasks() {
    init_tracing();
    let server = Server::start().await;
    server.faults(json!({"update_v2": false})).await;
    server.enqueue("old", 20, json!({})).await;
    let runtime = Runtime::new(server.options()).unwrap();
    runtime
        .spawn_fn(worker("old").concurrency(2), |_t| async {
            TaskOutcome::Completed(Map::new())
        })
        .unwrap();
    runtime.start().await.unwrap();
    let first = server.wait_completed(20, Duration::from_secs(20)).await;
    assert_eq!(
        runtime.servers()[0].update_v2(),
        conductor_worker::client::UpdateV2::Missing
    );
    // Results sent before the first 404 came back tried update-v2 (how many depends on the
    // machine's speed); once it is known to be missing, never again: everything goes by
    // POST /api/tasks.
    let probes = count(&first, "requests", "update_v2");
    assert!(probes < 20, "{first}");
    server.enqueue("old", 20, json!({})).await;
    let second = server.wait_completed(40, Duration::from_secs(20)).await;
    runtime.stop(Duration::from_secs(5)).await;
    assert_eq!(count(&second, "requests", "update_v2"), probes, "{second}");
    assert!(count(&second, "requests", "update") >= 40, "{second}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_is_refreshed_mid_run_without_a_lost_result() {
    init_tracing();
    let config = conductor_devserver::Config {
        auth: vec![conductor_devserver::ApiKey {
            key_id: "key-1".into(),
            key_secret: "secret-1".into(),
        }],
        token_ttl_secs: 1,
        ..Default::default()
    };
    let server = Server::with_config(config).await;
    let mut options = server.options();
    options.servers[0].credentials = Some(conductor_worker::Credentials::new("key-1", "secret-1"));
    server.enqueue("auth", 100, json!({})).await;
    let runtime = Runtime::new(options).unwrap();
    runtime
        .spawn_fn(worker("auth").concurrency(2), |_t| async {
            tokio::time::sleep(Duration::from_millis(40)).await;
            TaskOutcome::Completed(Map::new())
        })
        .unwrap();
    runtime.start().await.unwrap();
    let stats = server.wait_completed(100, Duration::from_secs(30)).await;
    runtime.stop(Duration::from_secs(5)).await;
    assert!(
        count(&stats, "requests", "token") >= 2,
        "the token was never refreshed: {stats}"
    );
    assert_eq!(count(&stats, "updates", "unknown_task"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_lets_running_tasks_finish_and_delivers_their_results() {
    init_tracing();
    let server = Server::start().await;
    server.enqueue("drain-on-stop", 4, json!({})).await;
    let runtime = Runtime::new(server.options()).unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&started);
    runtime
        .spawn_fn(worker("drain-on-stop").concurrency(4), move |_t| {
            s.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                TaskOutcome::Completed(Map::new())
            }
        })
        .unwrap();
    runtime.start().await.unwrap();
    while started.load(Ordering::SeqCst) < 4 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = runtime.stop(Duration::from_secs(10)).await;
    assert_eq!(report.abandoned_tasks, 0);
    assert_eq!(report.journalled_results, 0);
    let stats = server.stats().await;
    assert_eq!(count(&stats, "tasks", "completed"), 4, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_journals_and_the_next_start_delivers() {
    init_tracing();
    let server = Server::start().await;
    let dir = temp_dir("kill");
    server
        .enqueue("killed", 3, json!({"responseTimeoutSeconds": 600}))
        .await;
    let mut options = server.options();
    options.journal = JournalConfig::File(dir.join("journal.jsonl"));
    let runtime = Runtime::new(options.clone()).unwrap();
    let w = runtime
        .add_worker(worker("killed").concurrency(3).lease_extend(false))
        .unwrap();
    runtime.start().await.unwrap();
    let claimed = claim(&w, 3).await;
    let first_id = claimed[0].task.task_id.clone();
    server.faults(json!({"fail_rate": {"update": 1.0}})).await;
    complete_all(claimed, &echo_output(3));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = runtime.kill().await;
    assert_eq!(report.journalled_results, 3);
    assert_eq!(count(&server.stats().await, "tasks", "completed"), 0);

    server.reset_faults().await;
    let again = Runtime::new(options).unwrap();
    again.start().await.unwrap();
    server.wait_completed(3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    again.stop(Duration::from_secs(2)).await;
    let journal = conductor_worker::journal::Journal::open(dir.join("journal.jsonl")).unwrap();
    assert!(
        journal.load().unwrap().is_empty(),
        "delivered results are still in the journal"
    );
    let task = server.task(&first_id).await;
    assert_eq!(task["outputData"]["n"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_with_a_5_s_poll_interval_polls_about_every_5_s() {
    init_tracing();
    let server = Server::start().await;
    let runtime = Runtime::new(server.options()).unwrap();
    runtime
        .spawn_fn(
            WorkerOptions::new("idle")
                .poll_timeout(Duration::from_secs(1))
                .poll_interval(Duration::from_secs(5)),
            |_t| async { TaskOutcome::Completed(Map::new()) },
        )
        .unwrap();
    runtime.start().await.unwrap();
    // The first polls ramp up (2 ms, 4 ms, ... behind each 1 s long poll); measure after it.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = count(&server.stats().await, "requests", "batch_poll");
    tokio::time::sleep(Duration::from_secs(20)).await;
    let polls = count(&server.stats().await, "requests", "batch_poll") - before;
    runtime.stop(Duration::from_secs(2)).await;
    assert!(
        (3..=5).contains(&polls),
        "{polls} polls in 20 s with a 5 s poll interval"
    );
}

/// An executor that drops a task without a result (a crash in host glue code, a cancelled
/// coroutine) abandons it: the lease is not extended, the abandonment is counted and reported,
/// and the server hands the task out again after its response timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_dropped_without_a_result_abandons_its_task() {
    init_tracing();
    let server = Server::start().await;
    server
        .enqueue(
            "abandoned",
            1,
            json!({"responseTimeoutSeconds": 2, "retryCount": 1}),
        )
        .await;
    let runtime = Runtime::new(server.options()).unwrap();
    let abandoned = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&abandoned);
    runtime.add_listener(move |e| {
        if matches!(e, Event::TaskAbandoned { .. }) {
            seen.fetch_add(1, Ordering::Relaxed);
        }
    });
    let w = runtime.add_worker(worker("abandoned")).unwrap();
    runtime.start().await.unwrap();
    let first = take_one(&w).await;
    drop(first);
    assert_eq!(w.health().running, 0);
    let again = tokio::time::timeout(Duration::from_secs(15), claim(&w, 1))
        .await
        .expect("the abandoned task was not handed out again");
    let stats = server.stats().await;
    assert_eq!(count(&stats, "updates", "lease_extensions"), 0, "{stats}");
    assert!(
        runtime
            .metrics_text()
            .contains("task_abandoned_total{taskType=\"abandoned\"} 1"),
        "{}",
        runtime.metrics_text()
    );
    assert_eq!(abandoned.load(Ordering::Relaxed), 1);
    complete_all(again, &Map::new());
    server.wait_completed(1, Duration::from_secs(5)).await;
    runtime.stop(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_tasks_keep_their_lease() {
    init_tracing();
    let server = Server::start().await;
    server
        .enqueue(
            "lease",
            1,
            json!({"responseTimeoutSeconds": 2, "retryCount": 0}),
        )
        .await;
    let runtime = Runtime::new(server.options()).unwrap();
    runtime
        .spawn_fn(worker("lease"), |_t| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            TaskOutcome::Completed(Map::new())
        })
        .unwrap();
    runtime.start().await.unwrap();
    let stats = server.wait_completed(1, Duration::from_secs(15)).await;
    runtime.stop(Duration::from_secs(2)).await;
    assert_eq!(count(&stats, "tasks", "timed_out"), 0, "{stats}");
    assert!(count(&stats, "updates", "lease_extensions") >= 2, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_progress_with_callback_and_logs_reach_the_server() {
    init_tracing();
    let server = Server::start().await;
    server.enqueue("callback", 1, json!({})).await;
    let runtime = Runtime::new(server.options()).unwrap();
    let w = runtime.add_worker(worker("callback")).unwrap();
    runtime.start().await.unwrap();
    let first = take_one(&w).await;
    let first_id = first.task.task_id.clone();
    let mut result = TaskResult::in_progress("", "", 1);
    result.log("halfway there");
    let t0 = Instant::now();
    first.claim.complete(result).unwrap();
    let again = take_one(&w).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "offered again after {:?}",
        t0.elapsed()
    );
    assert_eq!(again.task.task_id, first_id);
    assert_eq!(again.task.poll_count, 2);
    again
        .claim
        .complete(TaskResult::completed("", "", Map::new()))
        .unwrap();
    server.wait_completed(1, Duration::from_secs(5)).await;
    runtime.stop(Duration::from_secs(2)).await;
    let logs: serde_json::Value = server
        .http
        .get(format!("{}/tasks/{}/log", server.api(), first_id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(logs[0]["log"], "halfway there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_polling_and_resume_starts_it_again() {
    init_tracing();
    let server = Server::start().await;
    let runtime = Runtime::new(server.options()).unwrap();
    let w = runtime
        .spawn_fn(worker("pausable").concurrency(2), |_t| async {
            TaskOutcome::Completed(Map::new())
        })
        .unwrap();
    runtime.start().await.unwrap();
    w.pause();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.enqueue("pausable", 10, json!({})).await;
    let before = count(&server.stats().await, "requests", "batch_poll");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = server.stats().await;
    assert_eq!(
        count(&stats, "requests", "batch_poll"),
        before,
        "a paused worker polled"
    );
    assert_eq!(count(&stats, "tasks", "completed"), 0);
    assert_eq!(w.health().state, conductor_worker::WorkerState::Paused);
    w.resume();
    server.wait_completed(10, Duration::from_secs(10)).await;
    runtime.stop(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_errors_back_off_and_recover() {
    init_tracing();
    let server = Server::start().await;
    let runtime = Runtime::new(server.options()).unwrap();
    let w = runtime
        .spawn_fn(worker("flaky"), |_t| async {
            TaskOutcome::Completed(Map::new())
        })
        .unwrap();
    server
        .faults(json!({"malformed_rate": {"poll": 1.0}}))
        .await;
    runtime.start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let errors = w.health().consecutive_poll_errors;
    let polls = count(&server.stats().await, "requests", "batch_poll");
    // 50 ms doubling to 500 ms: about 8 polls in 3 s, not a busy loop.
    assert!(errors >= 3 && polls <= 15, "{errors} errors, {polls} polls");
    server.reset_faults().await;
    // A long poll that began under the fault still answers garbage, and would take a task with
    // it (the server re-offers such a task only after its response timeout).
    tokio::time::sleep(Duration::from_millis(600)).await;
    server.enqueue("flaky", 5, json!({})).await;
    server.wait_completed(5, Duration::from_secs(10)).await;
    assert_eq!(w.health().consecutive_poll_errors, 0);
    assert!(w.health().last_successful_poll.is_some());
    runtime.stop(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_function_fails_only_that_task() {
    init_tracing();
    let server = Server::start().await;
    server.enqueue("panics", 4, json!({})).await;
    let runtime = Runtime::new(server.options()).unwrap();
    runtime
        .spawn_fn(worker("panics").concurrency(2), |t| async move {
            if t.input_data.get("n").is_some()
                && t.task_id
                    .ends_with(['0', '1', '2', '3', '4', '5', '6', '7'])
            {
                panic!("boom in {}", t.task_id);
            }
            TaskOutcome::Completed(Map::new())
        })
        .unwrap();
    runtime.start().await.unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let s = server.stats().await;
        if count(&s, "tasks", "completed") + count(&s, "tasks", "failed") >= 4 {
            break;
        }
        assert!(Instant::now() < until, "{s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = runtime.health();
    assert_eq!(health[0].state, conductor_worker::WorkerState::Running);
    runtime.stop(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_are_served() {
    init_tracing();
    let server = Server::start().await;
    server.enqueue("observed", 3, json!({})).await;
    let mut options = server.options();
    options.metrics_port = Some(0);
    let runtime = Runtime::new(options).unwrap();
    runtime
        .spawn_fn(worker("observed"), |_t| async {
            TaskOutcome::Completed(Map::new())
        })
        .unwrap();
    runtime.start().await.unwrap();
    server.wait_completed(3, Duration::from_secs(10)).await;
    let addr = runtime.metrics_addr().unwrap();
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("task_execute_time_seconds_count{taskType=\"observed\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("task_poll_total{taskType=\"observed\"}"));
    let health = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["healthy"], true);
    assert_eq!(body["workers"][0]["taskType"], "observed");
    runtime.stop(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_host_thread_is_released_by_cancel_and_by_stop() {
    init_tracing();
    let server = Server::start().await;
    let runtime = Runtime::new(server.options()).unwrap();
    let w = runtime.add_worker(worker("blocking")).unwrap();
    runtime.start().await.unwrap();
    let cancel = conductor_worker::Cancel::new();
    let (w2, c2) = (w.clone(), cancel.clone());
    let host = std::thread::spawn(move || {
        let t0 = Instant::now();
        let got = w2.take_blocking(4, None, &c2);
        (got.map(|v| v.len()), t0.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    cancel.cancel();
    let (got, waited) = tokio::task::spawn_blocking(move || host.join().unwrap())
        .await
        .unwrap();
    assert_eq!(got.unwrap(), 0);
    assert!(waited < Duration::from_secs(2), "cancel took {waited:?}");

    // A host thread waiting when the runtime stops gets NotRunning, so its loop can end.
    let w3 = w.clone();
    let host =
        std::thread::spawn(move || w3.take_blocking(1, None, &conductor_worker::Cancel::new()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    runtime.stop(Duration::from_secs(2)).await;
    let result = tokio::task::spawn_blocking(move || host.join().unwrap())
        .await
        .unwrap();
    assert!(
        matches!(result, Err(conductor_worker::Error::NotRunning(_))),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_back_off_instead_of_hammering_the_token_endpoint() {
    init_tracing();
    let config = conductor_devserver::Config {
        auth: vec![conductor_devserver::ApiKey {
            key_id: "key-1".into(),
            key_secret: "right".into(),
        }],
        ..Default::default()
    };
    let server = Server::with_config(config).await;
    let mut options = server.options();
    options.servers[0].credentials = Some(conductor_worker::Credentials::new("key-1", "wrong"));
    let runtime = Runtime::new(options).unwrap();
    let w = runtime
        .spawn_fn(worker("locked_out").concurrency(4), |_t| async {
            TaskOutcome::Completed(Map::new())
        })
        .unwrap();
    runtime.start().await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let tokens = count(&server.stats().await, "requests", "token");
    // 1 s, 2 s, ... between attempts (up to 60 s): a handful in 4 s, not one per poll.
    assert!((1..=4).contains(&tokens), "{tokens} token requests in 4 s");
    assert!(w.health().consecutive_poll_errors >= 1);
    assert!(w.health().last_successful_poll.is_none());
    runtime.stop(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_without_waiting_takes_only_buffered_tasks() {
    init_tracing();
    let server = Server::start().await;
    server.enqueue("buffered", 3, json!({})).await;
    let runtime = Runtime::new(server.options()).unwrap();
    let w = runtime.add_worker(worker("buffered")).unwrap();
    runtime.start().await.unwrap();
    let now = Some(Duration::ZERO);
    let never = conductor_worker::Cancel::new();
    // Nothing buffered yet: empty at once, and it did not register as a waiting executor.
    assert!(w.take_blocking(5, now, &never).unwrap().is_empty());
    assert!(w.take(5, now, None).await.unwrap().is_empty());
    assert_eq!(w.health().idle_executors, 0);
    complete_all(vec![take_one(&w).await], &Map::new());
    // update-v2 answers the result with the next task, which waits in the buffer.
    let until = Instant::now() + Duration::from_secs(5);
    while w.health().buffered == 0 {
        assert!(
            Instant::now() < until,
            "no task was buffered: {:?}",
            w.health()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let taken = w.take_blocking(5, now, &never).unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(
        w.health().running,
        1,
        "a task taken this way is running (lease, in-flight)"
    );
    complete_all(taken, &Map::new());
    runtime.stop(Duration::from_secs(2)).await;
    assert!(matches!(
        w.take_blocking(1, now, &never),
        Err(conductor_worker::Error::NotRunning(_))
    ));
}
