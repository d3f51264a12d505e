//! Shared helpers for the integration tests: a dev server per test, its admin API, and task
//! fixtures.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use conductor_devserver::{Config, DevServer};
use conductor_worker::{ClaimedTask, RuntimeOptions, ServerConfig, TaskResult, Worker};
use serde_json::{Map, Value, json};

pub struct Server {
    pub dev: DevServer,
    pub http: reqwest::Client,
}

impl Server {
    pub async fn start() -> Self {
        Self::with_config(Config::default()).await
    }

    pub async fn with_config(config: Config) -> Self {
        // reqwest is built without a default crypto provider (see the client module).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dev = DevServer::start(config).await.expect("dev server starts");
        Self {
            dev,
            http: reqwest::Client::new(),
        }
    }

    pub fn api(&self) -> String {
        self.dev.base_url()
    }

    fn admin(&self, path: &str) -> String {
        format!("{}{}", self.api().trim_end_matches("/api"), path)
    }

    pub fn options(&self) -> RuntimeOptions {
        let mut options = RuntimeOptions::new(vec![ServerConfig::new(&self.api()).unwrap()]);
        // Fast retries keep the tests short; the arithmetic is unit-tested separately.
        options.update_backoff = conductor_worker::backoff::Backoff::new(
            Duration::from_millis(50),
            Duration::from_millis(500),
        );
        options.poll_error_backoff = conductor_worker::backoff::Backoff::new(
            Duration::from_millis(50),
            Duration::from_millis(500),
        );
        options
    }

    pub async fn faults(&self, faults: Value) {
        let r = self
            .http
            .put(self.admin("/admin/faults"))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "setting faults: {}", r.status());
    }

    pub async fn reset_faults(&self) {
        self.http
            .post(self.admin("/admin/faults/reset"))
            .send()
            .await
            .unwrap();
    }

    pub async fn stats(&self) -> Value {
        self.http
            .get(self.admin("/admin/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn enqueue(&self, task_type: &str, count: usize, extra: Value) {
        let mut body = json!({"taskType": task_type, "count": count, "input": {"n": 1},
                              "retryCount": 0, "retryDelaySeconds": 0});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let r = self
            .http
            .post(self.admin("/admin/tasks"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "enqueue: {}", r.status());
    }

    pub async fn task(&self, task_id: &str) -> Value {
        self.http
            .get(format!("{}/tasks/{task_id}", self.api()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn history(&self, task_id: &str) -> Value {
        self.http
            .get(self.admin(&format!("/admin/tasks/{task_id}/history")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn expire_tokens(&self) {
        self.http
            .post(self.admin("/admin/tokens/expire"))
            .send()
            .await
            .unwrap();
    }

    /// Waits until `stats.tasks.completed` reaches `n` (or panics after `within`).
    pub async fn wait_completed(&self, n: u64, within: Duration) -> Value {
        let until = Instant::now() + within;
        loop {
            let stats = self.stats().await;
            if stats["tasks"]["completed"].as_u64().unwrap_or(0) >= n {
                return stats;
            }
            assert!(
                Instant::now() < until,
                "only {} of {n} tasks completed: {stats}",
                stats["tasks"]["completed"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Server {
    /// Waits until `stats.tasks.failed_terminal` reaches `n` (or panics after `within`).
    pub async fn wait_terminal(&self, n: u64, within: Duration) -> Value {
        let until = Instant::now() + within;
        loop {
            let stats = self.stats().await;
            if count(&stats, "tasks", "failed_terminal") >= n {
                return stats;
            }
            assert!(
                Instant::now() < until,
                "fewer than {n} tasks failed terminally: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Exactly `n` tasks of `worker`, however many polls that takes.
pub async fn claim(worker: &Worker, n: usize) -> Vec<ClaimedTask> {
    let mut claimed = Vec::new();
    while claimed.len() < n {
        let more = n - claimed.len();
        claimed.extend(
            worker
                .take(more, Some(Duration::from_secs(5)), None)
                .await
                .unwrap(),
        );
    }
    claimed
}

/// One task of `worker`, waiting up to 5 s for it.
pub async fn take_one(worker: &Worker) -> ClaimedTask {
    let mut taken = worker
        .take(1, Some(Duration::from_secs(5)), None)
        .await
        .unwrap();
    taken.pop().expect("no task within 5 s")
}

/// Completes every task in `claimed` with `output`.
pub fn complete_all(claimed: Vec<ClaimedTask>, output: &Map<String, Value>) {
    for c in claimed {
        c.claim
            .complete(TaskResult::completed("", "", output.clone()))
            .unwrap();
    }
}

pub fn count(stats: &Value, group: &str, key: &str) -> u64 {
    stats[group][key].as_u64().unwrap_or(0)
}

pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cw-test-{name}-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}
