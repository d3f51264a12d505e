//! `Runtime::run_until_signal`: the process's own signals, so this file is a test binary of
//! its own with one test (a signal reaches every test of a binary).

mod common;

use std::time::{Duration, Instant};

use common::{Server, init_tracing};
use conductor_worker::{Runtime, TaskOutcome, WorkerOptions};
use serde_json::{Map, json};

fn raise(signal: libc::c_int) {
    // SAFETY: kill(2) on this process with a signal tokio has a handler for.
    unsafe { libc::kill(libc::getpid(), signal) };
}

async fn wait(what: &str, check: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !check() {
        assert!(t0.elapsed() < Duration::from_secs(5), "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tstp_quiets_cont_resumes_and_term_drains_the_running_tasks() {
    init_tracing();
    let server = Server::start().await;
    let runtime = Runtime::new(server.options()).unwrap();
    let options = WorkerOptions::new("signalled")
        .concurrency(3)
        .poll_timeout(Duration::from_millis(100));
    runtime
        .spawn_fn(options, |_t| async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            TaskOutcome::Completed(Map::new())
        })
        .unwrap();
    let running = tokio::spawn({
        let runtime = runtime.clone();
        async move { runtime.run_until_signal(Duration::from_secs(5)).await }
    });
    wait("not started", || runtime.is_started()).await;
    server.enqueue("signalled", 3, json!({})).await;
    wait("3 tasks not running", || runtime.health()[0].running == 3).await;
    raise(libc::SIGTSTP);
    wait("SIGTSTP did not quiet", || runtime.is_quiet()).await;
    server.enqueue("signalled", 2, json!({})).await;
    server.wait_completed(3, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stats = server.stats().await;
    assert_eq!(
        stats["tasks"]["deliveries"], 3,
        "taken while quiet: {stats}"
    );
    raise(libc::SIGCONT);
    wait("SIGCONT did not resume", || !runtime.is_quiet()).await;
    server.wait_completed(5, Duration::from_secs(5)).await;
    server.enqueue("signalled", 1, json!({})).await;
    wait("the last task not running", || {
        runtime.health()[0].running == 1
    })
    .await;
    raise(libc::SIGTERM);
    let report = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("SIGTERM ended the run")
        .unwrap()
        .unwrap();
    assert_eq!(report.abandoned_tasks, 0, "{report:?}");
    server.wait_completed(6, Duration::from_secs(2)).await;
}
