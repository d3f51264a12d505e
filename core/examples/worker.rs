//! A Rust worker for the demo workflow: `greet` builds a greeting, `shout` upper-cases it.
//!
//! ```text
//! CONDUCTOR_SERVER_URL=http://127.0.0.1:8080/api cargo run -p conductor-worker --example worker
//! ```
//!
//! Ctrl-C or SIGTERM stops it gracefully: running tasks finish and their results are delivered.

use std::time::Duration;

use conductor_worker::config::ProcessEnv;
use conductor_worker::{Runtime, RuntimeOptions, TaskOutcome, WorkerOptions};
use serde_json::{Map, Value};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    let options = RuntimeOptions::from_env(&ProcessEnv)?;
    let runtime = Runtime::new(options)?;

    runtime.spawn_fn(
        WorkerOptions::new("greet").concurrency(4),
        |task| async move {
            let name = task
                .input_data
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("world");
            let mut output = Map::new();
            output.insert("greeting".into(), format!("hello {name}, from Rust").into());
            TaskOutcome::Completed(output)
        },
    )?;
    runtime.spawn_fn(
        WorkerOptions::new("shout").concurrency(4),
        |task| async move {
            match task.input_data.get("text").and_then(Value::as_str) {
                Some(text) => {
                    let mut output = Map::new();
                    output.insert("text".into(), text.to_uppercase().into());
                    TaskOutcome::Completed(output)
                }
                None => TaskOutcome::FailedTerminal("input 'text' (a string) is missing".into()),
            }
        },
    )?;

    runtime.start().await?;
    tracing::info!("workers running; Ctrl-C or SIGTERM to stop");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let report = runtime.stop(Duration::from_secs(30)).await;
    tracing::info!(?report, "stopped");
    Ok(())
}
