//! Large payloads against the dev server in each of its storage modes: inputs the server stored
//! externally reach the function whole, or fail the task terminally without running it; large
//! outputs are uploaded where the storage takes uploads and sent inline where it does not;
//! credentials never go to another origin. Thresholds are lowered to 64 KB to keep this fast.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, count, init_tracing};
use conductor_devserver::{Config, ExternalStorage, PayloadLimits};
use conductor_worker::api::JsonObject;
use conductor_worker::client::external::Operation;
use conductor_worker::telemetry::Event;
use conductor_worker::{Runtime, TaskOutcome, WorkerOptions};
use serde_json::{Value, json};

const KB: usize = 1024;

fn limits(storage: ExternalStorage) -> PayloadLimits {
    PayloadLimits {
        task_input_threshold_kb: 64,
        task_output_threshold_kb: 64,
        max_task_payload_kb: 1024,
        storage,
        storage_base_url: None,
    }
}

async fn payload_server(payloads: PayloadLimits, auth: bool) -> Server {
    let mut config = Config {
        payloads,
        ..Config::default()
    };
    if auth {
        config.auth = vec!["key:secret".parse().unwrap()];
    }
    Server::with_config(config).await
}

fn options(server: &Server, auth: bool) -> conductor_worker::RuntimeOptions {
    let mut options = server.options();
    if auth {
        options.servers[0] = options.servers[0]
            .clone()
            .with_credentials(conductor_worker::Credentials::new("key", "secret"));
    }
    options.external_payload_threshold_kb = 64;
    options
}

fn worker(task_type: &str) -> WorkerOptions {
    WorkerOptions::new(task_type)
        .poll_timeout(Duration::from_millis(200))
        .poll_interval(Duration::from_millis(50))
}

/// A document of about `size` bytes whose content depends on `seed`.
fn document(size: usize, seed: u64) -> Value {
    let line: String = (0..64)
        .map(|i| char::from(b'a' + ((seed + i) % 26) as u8))
        .collect();
    json!({"seed": seed, "lines": vec![line; size / 66]})
}

/// A stable checksum of a JSON value (FNV-1a over its serialization).
fn checksum(v: &Value) -> u64 {
    serde_json::to_vec(v)
        .unwrap()
        .iter()
        .fold(0xcbf29ce484222325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
        })
}

/// Runs `task_type` with a function that records each input's checksum and returns `output`.
fn spawn_recorder(runtime: &Runtime, task_type: &str, output: JsonObject) -> Arc<Mutex<Vec<u64>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    runtime
        .spawn_fn(worker(task_type).concurrency(4), move |task| {
            let (sink, output) = (Arc::clone(&sink), output.clone());
            async move {
                let doc = task.input_data.get("doc").cloned().unwrap_or(Value::Null);
                sink.lock().unwrap().push(checksum(&doc));
                TaskOutcome::Completed(output)
            }
        })
        .unwrap();
    seen
}

async fn enqueue_documents(server: &Server, task_type: &str, seeds: &[u64], size: usize) {
    for seed in seeds {
        server
            .enqueue(
                task_type,
                1,
                json!({"input": {"doc": document(size, *seed)}}),
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn externalized_inputs_reach_the_function_whole() {
    init_tracing();
    let server = payload_server(limits(ExternalStorage::Upload), false).await;
    let seeds: Vec<u64> = (1..=6).collect();
    enqueue_documents(&server, "big_in", &seeds, 200 * KB).await;
    let runtime = Runtime::new(options(&server, false)).unwrap();
    let used = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&used);
    runtime.add_listener(move |e| {
        if matches!(e, Event::ExternalPayloadUsed { .. }) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let seen = spawn_recorder(&runtime, "big_in", JsonObject::new());
    runtime.start().await.unwrap();
    let stats = server.wait_completed(6, Duration::from_secs(30)).await;
    runtime.stop(Duration::from_secs(5)).await;
    let mut got = seen.lock().unwrap().clone();
    got.sort_unstable();
    let mut want: Vec<u64> = seeds
        .iter()
        .map(|s| checksum(&document(200 * KB, *s)))
        .collect();
    want.sort_unstable();
    assert_eq!(got, want, "every function saw its whole input");
    assert!(
        stats["externalized_inputs"].as_u64().unwrap_or(0) >= 6,
        "{stats}"
    );
    assert!(runtime.metrics_text().contains(
        "external_payload_used_total{operation=\"READ\",payloadType=\"TASK_INPUT\",taskType=\"big_in\"} 6"
    ), "{}", runtime.metrics_text());
    assert_eq!(used.load(Ordering::Relaxed), 6);
}

/// Collects the events of one kind.
fn record_events(runtime: &Runtime) -> Arc<Mutex<Vec<Event>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    runtime.add_listener(move |e| sink.lock().unwrap().push(e.clone()));
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_the_storage_cannot_serve_fails_the_task_without_running_it() {
    init_tracing();
    let server = payload_server(limits(ExternalStorage::None), false).await;
    enqueue_documents(&server, "no_uri", &[7], 100 * KB).await;
    let runtime = Runtime::new(options(&server, false)).unwrap();
    let events = record_events(&runtime);
    let seen = spawn_recorder(&runtime, "no_uri", JsonObject::new());
    runtime.start().await.unwrap();
    let started = std::time::Instant::now();
    let (task_id, path) = loop {
        let failed = events.lock().unwrap().iter().find_map(|e| match e {
            Event::ExternalPayloadFailed { task_id, path, .. } => {
                Some((task_id.clone(), path.clone()))
            }
            _ => None,
        });
        if let Some(found) = failed {
            break found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no task failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stats = server.wait_terminal(1, Duration::from_secs(10)).await;
    runtime.stop(Duration::from_secs(5)).await;
    assert!(
        seen.lock().unwrap().is_empty(),
        "the function ran on an input it did not have"
    );
    assert!(count(&stats, "tasks", "failed_terminal") == 1, "{stats}");
    let task = server.task(&task_id).await;
    assert_eq!(task["status"], "FAILED_WITH_TERMINAL_ERROR");
    let reason = task["reasonForIncompletion"].as_str().unwrap_or_default();
    assert!(
        reason.contains("external payload") && reason.contains(&path),
        "{reason}"
    );
    assert!(
        reason.contains("conductor.external-payload-storage.type"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_are_retried_through_failing_storage() {
    init_tracing();
    let server = payload_server(limits(ExternalStorage::Upload), false).await;
    let seeds: Vec<u64> = (10..16).collect();
    enqueue_documents(&server, "flaky_in", &seeds, 100 * KB).await;
    server.faults(json!({"fail_rate": {"external": 0.5}})).await;
    let runtime = Runtime::new(options(&server, false)).unwrap();
    let seen = spawn_recorder(&runtime, "flaky_in", JsonObject::new());
    runtime.start().await.unwrap();
    let stats = server.wait_completed(6, Duration::from_secs(60)).await;
    runtime.stop(Duration::from_secs(5)).await;
    assert!(
        count(&stats, "faults_injected", "fail") > 0,
        "no fault was injected: {stats}"
    );
    let mut got = seen.lock().unwrap().clone();
    got.sort_unstable();
    let mut want: Vec<u64> = seeds
        .iter()
        .map(|s| checksum(&document(100 * KB, *s)))
        .collect();
    want.sort_unstable();
    assert_eq!(got, want);
}

fn big_output(seed: u64) -> JsonObject {
    let mut output = JsonObject::new();
    output.insert("doc".into(), document(200 * KB, seed));
    output
}

/// Runs three tasks one after the other with a 200 KB output each; returns the server's stats
/// and the ids of the tasks. Each task takes 300 ms, so that one result's delivery is over
/// before the next result is handed back.
async fn run_big_outputs(server: &Server, task_type: &str) -> (Value, Vec<String>) {
    server.enqueue(task_type, 3, json!({})).await;
    let runtime = Runtime::new(options(server, false)).unwrap();
    let events = record_events(&runtime);
    runtime
        .spawn_fn(worker(task_type).concurrency(1), |_task| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            TaskOutcome::Completed(big_output(42))
        })
        .unwrap();
    runtime.start().await.unwrap();
    let stats = server.wait_completed(3, Duration::from_secs(30)).await;
    runtime.stop(Duration::from_secs(5)).await;
    let ids = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::ExecutionStarted { task_id, .. } => Some(task_id.clone()),
            _ => None,
        })
        .collect();
    (stats, ids)
}

/// The output the server holds for a task, wherever it keeps it.
async fn stored_output(server: &Server, task_id: &str) -> Value {
    let task = server.task(task_id).await;
    match task["externalOutputPayloadStoragePath"].as_str() {
        Some(path) => server
            .http
            .get(format!("{}/external/{path}", server.api()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap(),
        None => task["outputData"].clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_outputs_are_uploaded_where_the_storage_takes_uploads() {
    init_tracing();
    let server = payload_server(limits(ExternalStorage::Upload), false).await;
    let (stats, ids) = run_big_outputs(&server, "big_out").await;
    assert_eq!(count(&stats, "requests", "external_put"), 3, "{stats}");
    assert_eq!(stats["external_writes"], 3, "{stats}");
    assert_eq!(stats["externalized_outputs"], 0, "{stats}");
    for id in ids {
        let output = stored_output(&server, &id).await;
        assert_eq!(checksum(&output["doc"]), checksum(&big_output(42)["doc"]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_that_refuses_uploads_gets_outputs_inline_and_is_not_asked_again() {
    init_tracing();
    for (storage, puts) in [(ExternalStorage::ReadOnly, 1), (ExternalStorage::None, 0)] {
        let server = payload_server(limits(storage), false).await;
        let (stats, ids) = run_big_outputs(&server, "inline_out").await;
        assert_eq!(
            count(&stats, "requests", "external_put"),
            puts,
            "{storage:?}: {stats}"
        );
        assert_eq!(
            count(&stats, "requests", "external_location"),
            1,
            "{storage:?}: {stats}"
        );
        assert_eq!(stats["externalized_outputs"], 3, "{storage:?}: {stats}");
        if storage == ExternalStorage::ReadOnly {
            // (With `None` the server keeps the payload where no client can read it.)
            for id in &ids {
                let output = stored_output(&server, id).await;
                assert_eq!(checksum(&output["doc"]), checksum(&big_output(42)["doc"]));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_origin_storage_gets_the_token() {
    init_tracing();
    let server = payload_server(limits(ExternalStorage::Upload), true).await;
    enqueue_documents(&server, "authed", &[3], 100 * KB).await;
    let runtime = Runtime::new(options(&server, true)).unwrap();
    let seen = spawn_recorder(&runtime, "authed", big_output(3));
    runtime.start().await.unwrap();
    let stats = server.wait_completed(1, Duration::from_secs(30)).await;
    runtime.stop(Duration::from_secs(5)).await;
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![checksum(&document(100 * KB, 3))]
    );
    assert_eq!(
        (
            stats["external_reads"].as_u64(),
            stats["external_writes"].as_u64()
        ),
        (Some(1), Some(1)),
        "{stats}"
    );
}

/// A payload store on another origin (an S3 bucket, say): answers every GET with the next of
/// `answers` (the last one repeats) and records whether any credential came with it.
struct ForeignStore {
    url: String,
    hits: Arc<AtomicUsize>,
    credentials_seen: Arc<Mutex<Vec<String>>>,
}

async fn foreign_store(answers: Vec<(u16, &'static str)>) -> ForeignStore {
    use axum::http::{HeaderMap, StatusCode};
    let hits = Arc::new(AtomicUsize::new(0));
    let credentials_seen = Arc::new(Mutex::new(Vec::new()));
    let (h, c) = (Arc::clone(&hits), Arc::clone(&credentials_seen));
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let (h, c, answers) = (Arc::clone(&h), Arc::clone(&c), answers.clone());
        async move {
            for name in ["x-authorization", "authorization", "cookie"] {
                if let Some(v) = headers.get(name) {
                    c.lock().unwrap().push(format!("{name}: {v:?}"));
                }
            }
            let n = h.fetch_add(1, Ordering::SeqCst).min(answers.len() - 1);
            let (status, body) = answers[n];
            (StatusCode::from_u16(status).unwrap(), body)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/bucket", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    ForeignStore {
        url,
        hits,
        credentials_seen,
    }
}

/// A dev server with auth whose storage locations point at `store`.
async fn server_storing_at(store: &ForeignStore) -> Server {
    let mut payloads = limits(ExternalStorage::Upload);
    payloads.storage_base_url = Some(store.url.clone());
    payload_server(payloads, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_go_to_a_foreign_storage_origin() {
    init_tracing();
    let store = foreign_store(vec![(503, "busy"), (200, r#"{"doc": "from the bucket"}"#)]).await;
    let server = server_storing_at(&store).await;
    enqueue_documents(&server, "foreign", &[5], 100 * KB).await;
    let runtime = Runtime::new(options(&server, true)).unwrap();
    let seen = spawn_recorder(&runtime, "foreign", JsonObject::new());
    runtime.start().await.unwrap();
    server.wait_completed(1, Duration::from_secs(30)).await;
    runtime.stop(Duration::from_secs(5)).await;
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![checksum(&json!("from the bucket"))]
    );
    assert_eq!(store.hits.load(Ordering::SeqCst), 2, "a 503 is retried");
    assert!(
        store.credentials_seen.lock().unwrap().is_empty(),
        "{:?}",
        store.credentials_seen
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_input_that_is_not_an_object_or_is_refused_fails_at_once() {
    init_tracing();
    for (answer, needle) in [
        ((200, "[1, 2, 3]"), "not a JSON object"),
        ((403, "expired"), "403"),
    ] {
        let store = foreign_store(vec![answer]).await;
        let server = server_storing_at(&store).await;
        enqueue_documents(&server, "refused", &[9], 100 * KB).await;
        let runtime = Runtime::new(options(&server, true)).unwrap();
        let events = record_events(&runtime);
        let seen = spawn_recorder(&runtime, "refused", JsonObject::new());
        runtime.start().await.unwrap();
        let stats = server.wait_terminal(1, Duration::from_secs(10)).await;
        runtime.stop(Duration::from_secs(5)).await;
        assert!(seen.lock().unwrap().is_empty());
        assert_eq!(count(&stats, "tasks", "failed_terminal"), 1, "{stats}");
        assert_eq!(store.hits.load(Ordering::SeqCst), 1, "{needle}: retried");
        let reasons: Vec<String> = events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::ExternalPayloadFailed { error, .. } => Some(error.clone()),
                _ => None,
            })
            .collect();
        assert!(
            reasons
                .iter()
                .any(|r| r.contains(needle) && r.contains("external payload")),
            "{reasons:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_whose_upload_is_pending_at_kill_is_journalled_whole_and_delivered_later() {
    init_tracing();
    let server = payload_server(limits(ExternalStorage::Upload), false).await;
    let dir = std::env::temp_dir().join(format!("cw-upload-journal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let journal_file = dir.join("journal.jsonl");
    server
        .enqueue("pending_upload", 2, json!({"responseTimeoutSeconds": 600}))
        .await;
    let mut options = options(&server, false);
    options.journal = conductor_worker::JournalConfig::File(journal_file.clone());
    let runtime = Runtime::new(options.clone()).unwrap();
    let w = runtime
        .add_worker(worker("pending_upload").concurrency(2).lease_extend(false))
        .unwrap();
    runtime.start().await.unwrap();
    let claimed = common::claim(&w, 2).await;
    let ids: Vec<String> = claimed.iter().map(|c| c.task.task_id.clone()).collect();
    server.faults(json!({"fail_rate": {"external": 1.0}})).await;
    common::complete_all(claimed, &big_output(8));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(runtime.kill().await.journalled_results, 2);
    let journalled = conductor_worker::journal::Journal::open(journal_file.clone())
        .unwrap()
        .load()
        .unwrap();
    assert!(
        journalled
            .iter()
            .all(|e| e.result.external_output_payload_storage_path.is_none()
                && checksum(&e.result.output_data["doc"]) == checksum(&big_output(8)["doc"])),
        "the journal must hold the output itself, not a path that may never have been written"
    );

    server.reset_faults().await;
    let again = Runtime::new(options).unwrap();
    again.start().await.unwrap();
    let stats = server.wait_completed(2, Duration::from_secs(20)).await;
    again.stop(Duration::from_secs(2)).await;
    assert_eq!(stats["external_writes"], 2, "{stats}");
    for id in &ids {
        let output = stored_output(&server, id).await;
        assert_eq!(checksum(&output["doc"]), checksum(&big_output(8)["doc"]));
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_output_whose_update_is_pending_at_kill_is_journalled_by_its_path() {
    init_tracing();
    let server = payload_server(limits(ExternalStorage::Upload), false).await;
    let dir = std::env::temp_dir().join(format!("cw-uploaded-journal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let journal_file = dir.join("journal.jsonl");
    server
        .enqueue("uploaded", 1, json!({"responseTimeoutSeconds": 600}))
        .await;
    let mut options = options(&server, false);
    options.journal = conductor_worker::JournalConfig::File(journal_file.clone());
    let runtime = Runtime::new(options.clone()).unwrap();
    let w = runtime
        .add_worker(worker("uploaded").concurrency(1).lease_extend(false))
        .unwrap();
    runtime.start().await.unwrap();
    let claimed = common::claim(&w, 1).await;
    let id = claimed[0].task.task_id.clone();
    server.faults(json!({"fail_rate": {"update": 1.0}})).await;
    common::complete_all(claimed, &big_output(11));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(runtime.kill().await.journalled_results, 1);
    let journalled = conductor_worker::journal::Journal::open(journal_file.clone())
        .unwrap()
        .load()
        .unwrap();
    let result = &journalled[0].result;
    assert!(
        result.external_output_payload_storage_path.is_some() && result.output_data.is_empty(),
        "{result:?}"
    );

    server.reset_faults().await;
    let again = Runtime::new(options).unwrap();
    again.start().await.unwrap();
    let stats = server.wait_completed(1, Duration::from_secs(20)).await;
    again.stop(Duration::from_secs(2)).await;
    assert_eq!(stats["external_writes"], 1, "uploaded once: {stats}");
    let output = stored_output(&server, &id).await;
    assert_eq!(checksum(&output["doc"]), checksum(&big_output(11)["doc"]));
    std::fs::remove_dir_all(dir).ok();
}

/// A worker holds at most `concurrency` large inputs: with one executor, the next externalized
/// input is fetched only once the previous task's result (its output uploaded) is delivered,
/// not while that upload is still going on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_large_input_waits_for_the_previous_result() {
    init_tracing();
    let server = payload_server(limits(ExternalStorage::Upload), false).await;
    enqueue_documents(&server, "one_at_a_time", &[1, 2, 3, 4], 200 * KB).await;
    // Every request takes a while, so a poll answers while an upload is still going on.
    server.faults(json!({"latency_ms": 150})).await;
    let runtime = Runtime::new(options(&server, false)).unwrap();
    let events = record_events(&runtime);
    runtime
        .spawn_fn(worker("one_at_a_time").concurrency(1), |task| async move {
            // The input back as the output: above the threshold, so it is uploaded.
            TaskOutcome::Completed(task.input_data)
        })
        .unwrap();
    runtime.start().await.unwrap();
    server.wait_completed(4, Duration::from_secs(60)).await;
    runtime.stop(Duration::from_secs(5)).await;
    let order: Vec<&str> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::ExternalPayloadUsed {
                operation: Operation::Read,
                ..
            } => Some("read"),
            Event::UpdateDelivered { .. } => Some("delivered"),
            _ => None,
        })
        .collect();
    assert_eq!(
        order.iter().filter(|e| **e == "read").count(),
        4,
        "{order:?}"
    );
    for pair in order.windows(2) {
        assert_ne!(
            pair,
            ["read", "read"],
            "two large inputs held at once: {order:?}"
        );
    }
}
