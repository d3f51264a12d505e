//! The contract between the core and a host-language binding (Python, Ruby): everything a
//! binding needs and nothing it decides. A binding converts host values to and from JSON,
//! releases its interpreter lock while the core waits, and takes from here:
//!
//! - the process's tokio runtime and the fork check ([`process_runtime`], [`ProcessBound`]);
//! - a claimed task as a host object holds it ([`HostTask`]: input taken once, claim completed
//!   once);
//! - the options, declared once in the core with their defaults, environment names and checks
//!   ([`option_tables`], [`WorkerOptions::from_host`](crate::WorkerOptions::from_host),
//!   [`RuntimeOptions::from_host`](crate::RuntimeOptions::from_host)), so that an option added
//!   to the core reaches every host with no binding change.

mod process;
mod task;

#[cfg(feature = "host-log")]
pub(crate) use process::lineage;
pub use process::{ProcessBound, process_runtime};
pub use task::HostTask;

use serde_json::{Value, json};

use crate::config::OptionInfo;
use crate::{RuntimeOptions, WorkerOptions};

/// Every option of the runtime and of a worker, for hosts to document, type and check them:
/// `{"runtime": [...], "worker": [...]}`, each entry
/// `{name, doc, python_type, ruby_type, env, default}`.
///
/// ```
/// let tables = conductor_worker::host::option_tables();
/// let worker = tables["worker"].as_array().unwrap();
/// let concurrency = worker.iter().find(|o| o["name"] == "concurrency").unwrap();
/// assert_eq!(concurrency["python_type"], "int");
/// assert_eq!(concurrency["env"][0], "thread_count");
/// ```
pub fn option_tables() -> Value {
    json!({
        "runtime": RuntimeOptions::options().iter().map(entry).collect::<Vec<_>>(),
        "worker": WorkerOptions::options().iter().map(entry).collect::<Vec<_>>(),
    })
}

fn entry(option: &OptionInfo) -> Value {
    json!({
        "name": option.name,
        "doc": option.doc,
        "python_type": option.host_type.python(),
        "ruby_type": option.host_type.ruby(),
        "env": option.env,
        "default": option.default,
    })
}
