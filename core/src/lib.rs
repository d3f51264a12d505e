//! # conductor-worker
//!
//! A worker runtime for [Conductor](https://github.com/conductor-oss/conductor): it polls one
//! or several Conductor servers for tasks, hands them to executors, and delivers every result
//! to the server the task came from, retrying until the server has it.
//!
//! Executors *pull* tasks ([`Worker::take`]) and hand each result back through the task's
//! [`Claim`] (a claim dropped without a result abandons its task); the runtime never calls
//! user code from its own threads. The Rust API ([`Runtime::spawn_fn`]) is a thin loop over
//! the same two calls, and so are the Python and Ruby bindings.
//!
//! ```no_run
//! use conductor_worker::{Runtime, RuntimeOptions, WorkerOptions, ServerConfig, TaskOutcome};
//! # async fn demo() -> conductor_worker::Result<()> {
//! let options = RuntimeOptions::new(vec![ServerConfig::new("http://localhost:8080/api")?]);
//! let runtime = Runtime::new(options)?;
//! runtime.spawn_fn(WorkerOptions::new("greet").concurrency(10), |task| async move {
//!     let name = task.input_data.get("name").and_then(|v| v.as_str()).unwrap_or("world");
//!     let mut output = serde_json::Map::new();
//!     output.insert("greeting".into(), format!("hello {name}").into());
//!     TaskOutcome::Completed(output)
//! })?;
//! runtime.start().await?;
//! tokio::signal::ctrl_c().await.ok();
//! runtime.stop(std::time::Duration::from_secs(30)).await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod alloc;
pub mod api;
pub mod backoff;
mod cancel;
pub mod client;
pub mod cluster;
pub mod config;
mod error;
mod field;
pub mod host;
pub mod journal;
pub mod runner;
pub mod runtime;
mod state;
pub mod telemetry;

pub use api::{Task, TaskDef, TaskResult, TaskStatus};
pub use client::{Polled, ServerClient, ServerId, Undecodable, UpdateOutcome};
pub use config::{Credentials, JournalConfig, RuntimeOptions, ServerConfig, WorkerOptions};
pub use error::{ERROR_KINDS, Error, Result};
pub use runner::{Cancel, Claim, ClaimedTask, TaskOutcome, Worker, WorkerHealth, WorkerState};
pub use runtime::{Runtime, RuntimeStatus};
pub use telemetry::endpoint::Probe;

/// The version of this crate.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
