//! An in-memory server that speaks Conductor's worker-facing REST API the way conductor-oss 3.32
//! does, with fault injection, for development, tests, benchmarks and demos.
//!
//! Start it in-process from a test:
//!
//! ```no_run
//! # async fn demo() -> Result<(), conductor_devserver::StartError> {
//! use conductor_devserver::{Config, DevServer};
//! let server = DevServer::start(Config::default()).await?;
//! println!("workers talk to {}", server.base_url());
//! let mut faults = server.faults();
//! faults.fail_rate.insert("update".into(), 0.5);
//! server.set_faults(faults);
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Or run the `conductor-devserver` binary; `README.md` beside this crate lists the endpoints,
//! the admin API and what is deliberately not supported.

mod app;
pub mod auth;
pub mod cli;
pub mod command;
mod error;
pub mod expr;
pub mod faults;
pub mod model;
pub mod payload;
mod routes;
mod server;
pub mod stats;
pub mod store;

pub use auth::ApiKey;
pub use error::ApiError;
pub use faults::{FaultError, Faults};
pub use payload::{ExternalStorage, PayloadLimitError, PayloadLimits};
pub use server::{Config, DevServer, StartError};
pub use stats::{FaultStats, PayloadStats, Stats, TaskStats, UpdateStats};
pub use store::History;
