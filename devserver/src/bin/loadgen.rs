//! `conductor-loadgen`: measures batch-poll + update pairs per second against a running dev
//! server. It starts nothing itself: point `--url` at a `conductor-devserver`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use serde::Deserialize;

/// Bulk-enqueues tasks on a dev server, then drains them with concurrent batch-poll + update loops.
#[derive(Debug, Parser)]
#[command(name = "conductor-loadgen")]
struct Args {
    /// Dev server root (a trailing /api is accepted).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Task type to enqueue and poll.
    #[arg(long, default_value = "loadgen")]
    task_type: String,
    /// Number of tasks.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    tasks: u64,
    /// Concurrent poll/update loops.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    concurrency: u64,
    /// Batch-poll count.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    batch: u64,
    /// Batch-poll timeout in ms.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(0..=5000))]
    timeout_ms: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    max_secs: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MiniTask {
    task_id: String,
    workflow_instance_id: String,
}

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("{what}: unexpected status {status}: {body}")]
    Status {
        what: &'static str,
        status: u16,
        body: String,
    },
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

async fn completed(client: &reqwest::Client, root: &str) -> Result<u64, LoadError> {
    let v: serde_json::Value = client
        .get(format!("{root}/admin/stats"))
        .send()
        .await?
        .json()
        .await?;
    Ok(v["tasks"]["completed"].as_u64().unwrap_or(0))
}

async fn enqueue(client: &reqwest::Client, root: &str, args: &Args) -> Result<(), LoadError> {
    let mut left = args.tasks;
    while left > 0 {
        let n = left.min(50_000);
        let r = client
            .post(format!("{root}/admin/tasks"))
            .json(&serde_json::json!({
                "taskType": args.task_type, "count": n, "input": {"n": 1},
                "responseTimeoutSeconds": 3600, "retryCount": 0, "retryDelaySeconds": 0
            }))
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(LoadError::Status {
                what: "POST /admin/tasks",
                status: r.status().as_u16(),
                body: r.text().await.unwrap_or_default(),
            });
        }
        left -= n;
    }
    Ok(())
}

struct Shared {
    done: AtomicU64,
    stop: AtomicBool,
    polls: AtomicU64,
}

async fn worker(
    client: reqwest::Client,
    poll_url: String,
    update_url: String,
    target: u64,
    shared: Arc<Shared>,
) -> Result<(), LoadError> {
    while shared.done.load(Ordering::Relaxed) < target && !shared.stop.load(Ordering::Relaxed) {
        let r = client.get(&poll_url).send().await?;
        if !r.status().is_success() {
            return Err(LoadError::Status {
                what: "batch poll",
                status: r.status().as_u16(),
                body: r.text().await.unwrap_or_default(),
            });
        }
        shared.polls.fetch_add(1, Ordering::Relaxed);
        let bytes = r.bytes().await?;
        let tasks: Vec<MiniTask> = if bytes.is_empty() {
            Vec::new()
        } else {
            serde_json::from_slice(&bytes)?
        };
        for t in tasks {
            let body = format!(
                r#"{{"taskId":"{}","workflowInstanceId":"{}","status":"COMPLETED","workerId":"loadgen","outputData":{{"ok":true}}}}"#,
                t.task_id, t.workflow_instance_id
            );
            let r = client
                .post(&update_url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            let status = r.status();
            // Reading the body to the end keeps the connection reusable.
            let text = r.text().await?;
            if !status.is_success() {
                return Err(LoadError::Status {
                    what: "update",
                    status: status.as_u16(),
                    body: text,
                });
            }
            shared.done.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

async fn run(args: Args) -> Result<bool, LoadError> {
    let root = args
        .url
        .trim_end_matches('/')
        .trim_end_matches("/api")
        .to_string();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency as usize * 2)
        .tcp_nodelay(true)
        .build()?;
    let before = completed(&client, &root).await?;
    let t_enqueue = Instant::now();
    enqueue(&client, &root, &args).await?;
    let enqueue_secs = t_enqueue.elapsed().as_secs_f64();
    let drained = drain(&client, &root, &args).await;
    let after = completed(&client, &root).await?;
    Ok(report(
        &args,
        enqueue_secs,
        &drained,
        after.saturating_sub(before),
    ))
}

/// What the poll/update loops did.
struct Drained {
    done: u64,
    polls: u64,
    wall_secs: f64,
    first_err: Option<String>,
}

/// Runs `--concurrency` poll/update loops until every task is done, one of them fails, or
/// `--max-secs` have passed.
async fn drain(client: &reqwest::Client, root: &str, args: &Args) -> Drained {
    let poll_url = format!(
        "{root}/api/tasks/poll/batch/{}?workerid=loadgen&count={}&timeout={}",
        args.task_type, args.batch, args.timeout_ms
    );
    let update_url = format!("{root}/api/tasks");
    let shared = Arc::new(Shared {
        done: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        polls: AtomicU64::new(0),
    });
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..args.concurrency {
        handles.push(tokio::spawn(worker(
            client.clone(),
            poll_url.clone(),
            update_url.clone(),
            args.tasks,
            shared.clone(),
        )));
    }
    let watchdog = {
        let shared = shared.clone();
        let max = Duration::from_secs(args.max_secs);
        tokio::spawn(async move {
            tokio::time::sleep(max).await;
            shared.stop.store(true, Ordering::Relaxed);
        })
    };
    let mut first_err = None;
    for h in handles {
        match h.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                shared.stop.store(true, Ordering::Relaxed);
                first_err.get_or_insert(e.to_string());
            }
            Err(e) => {
                first_err.get_or_insert(e.to_string());
            }
        }
    }
    watchdog.abort();
    Drained {
        wall_secs: start.elapsed().as_secs_f64(),
        done: shared.done.load(Ordering::Relaxed),
        polls: shared.polls.load(Ordering::Relaxed),
        first_err,
    }
}

/// Prints the figures; true when the server counted every task completed once and no loop
/// failed. `delta` is how many completions the server's stats gained.
fn report(args: &Args, enqueue_secs: f64, d: &Drained, delta: u64) -> bool {
    println!(
        "tasks={} concurrency={} batch={} timeout_ms={}",
        args.tasks, args.concurrency, args.batch, args.timeout_ms
    );
    println!("enqueue: {enqueue_secs:.3} s");
    println!(
        "done: {} tasks in {:.3} s wall, {:.0} tasks/s (batch-poll + update pairs), {} polls",
        d.done,
        d.wall_secs,
        d.done as f64 / d.wall_secs,
        d.polls
    );
    let ok = delta == args.tasks && d.done == args.tasks;
    println!(
        "stats check: completed delta = {delta}, expected {}: {}",
        args.tasks,
        if ok { "OK" } else { "MISMATCH" }
    );
    if let Some(e) = &d.first_err {
        eprintln!("error: {e}");
        return false;
    }
    ok
}

fn main() -> ExitCode {
    let args = Args::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conductor-loadgen: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("conductor-loadgen: {e}");
            ExitCode::from(1)
        }
    }
}
