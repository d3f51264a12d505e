//! Benchmark (not a test): drains N no-op tasks from dev servers and prints tasks/s, CPU
//! seconds per 1,000 tasks and peak RSS of this process, as one JSON line.
//!
//! ```text
//! cargo run --release -p conductor-worker --example drain -- http://127.0.0.1:8080/api 20000 50
//! ```
//! Arguments: server URLs (comma-separated: the runtime polls all of them), number of tasks
//! (default 20000), concurrency (default 50), and how many of the servers get tasks (default
//! all; the others are polled but idle, slow or down: the multi-homed scenarios).
//! The tasks are enqueued with the dev servers' `POST /admin/tasks` before the clock starts.

use std::time::{Duration, Instant};

use conductor_worker::{Runtime, RuntimeOptions, ServerConfig, TaskOutcome, WorkerOptions};
use serde_json::{Map, json};

fn cpu_seconds() -> f64 {
    // utime and stime are fields 14 and 15 of /proc/self/stat, in clock ticks (100 per second
    // on Linux); the command name before them may contain spaces, so split after its ')'.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let urls: Vec<String> = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8080/api".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let tasks: u64 = args
        .next()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(20_000);
    let concurrency: usize = args.next().map(|v| v.parse()).transpose()?.unwrap_or(50);
    let loaded: usize = args
        .next()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(urls.len());
    let loaded = loaded.clamp(1, urls.len());
    let task_type = format!("drain_{}", std::process::id());

    // This example's own reqwest client needs a TLS provider before the runtime installs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let admins: Vec<String> = urls[..loaded]
        .iter()
        .map(|u| u.trim_end_matches("/api").to_owned())
        .collect();
    let http = reqwest::Client::new();
    let per_server = tasks / loaded as u64;
    for admin in &admins {
        let body =
            json!({"taskType": task_type, "count": per_server, "input": {}, "retryCount": 0});
        let created = http
            .post(format!("{admin}/admin/tasks"))
            .json(&body)
            .send()
            .await?;
        if !created.status().is_success() {
            return Err(format!("enqueue on {admin} failed: {}", created.status()).into());
        }
    }
    let tasks = per_server * loaded as u64;
    let completed_before = completed(&http, &admins).await?;

    let servers = urls
        .iter()
        .map(|u| ServerConfig::new(u))
        .collect::<Result<Vec<_>, _>>()?;
    let runtime = Runtime::new(RuntimeOptions::new(servers))?;
    runtime.spawn_fn(
        WorkerOptions::new(&task_type)
            .concurrency(concurrency)
            .lease_extend(false),
        |_task| async { TaskOutcome::Completed(Map::new()) },
    )?;
    let cpu_start = cpu_seconds();
    let start = Instant::now();
    runtime.start().await?;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if completed(&http, &admins).await? - completed_before >= tasks {
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    // Not a graceful stop: a slow or dead server in the multi-homed scenarios would hold it.
    runtime.kill().await;
    println!(
        "{{\"runtime\":\"rust\",\"tasks\":{tasks},\"concurrency\":{concurrency},\"seconds\":{elapsed:.3},\"tasks_per_s\":{:.0},\"cpu_s_per_1000\":{:.4},\"peak_rss_mb\":{:.1}}}",
        tasks as f64 / elapsed,
        cpu / tasks as f64 * 1000.0,
        peak_rss_mb()
    );
    Ok(())
}

/// Tasks completed so far on the loaded servers, from their stats.
async fn completed(http: &reqwest::Client, admins: &[String]) -> Result<u64, reqwest::Error> {
    let mut sum = 0;
    for admin in admins {
        let stats: serde_json::Value = http
            .get(format!("{admin}/admin/stats"))
            .send()
            .await?
            .json()
            .await?;
        sum += stats["tasks"]["completed"].as_u64().unwrap_or(0);
    }
    Ok(sum)
}
