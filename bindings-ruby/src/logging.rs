//! The core's log records (`telemetry::host_log`) for a Ruby `Logger`: Ruby's log thread
//! pulls them in batches with the GVL released.

use std::time::Duration;

use conductor_worker::Cancel;
use conductor_worker::telemetry::host_log;
use magnus::{Error, RArray, Ruby};
use tracing::Level;

use crate::gvl;

/// How often a wait for records looks at its interrupt flag.
const SLICE: Duration = Duration::from_millis(100);

/// Collects the core's records at `level` (`"trace"`, `"debug"`, `"info"`, `"warn"`,
/// `"error"`) and above; `"off"` collects none.
fn collect_logs(ruby: &Ruby, level: String) -> Result<(), Error> {
    let level = match level.as_str() {
        "trace" => Some(Level::TRACE),
        "debug" => Some(Level::DEBUG),
        "info" => Some(Level::INFO),
        "warn" => Some(Level::WARN),
        "error" | "fatal" => Some(Level::ERROR),
        "off" => None,
        other => {
            return Err(Error::new(
                ruby.exception_arg_error(),
                format!("log level must be trace, debug, info, warn, error or off, not {other:?}"),
            ));
        }
    };
    host_log::collect(level);
    Ok(())
}

/// Up to `max` records as `[level, target, message, unix_seconds]`, waiting up to `timeout`
/// seconds for the first. `[]` when none came or the wait was interrupted.
fn next_log_records(ruby: &Ruby, max: usize, timeout: f64) -> Result<RArray, Error> {
    let wait = gvl::seconds(ruby, "timeout", timeout)?;
    let interrupted = Cancel::new();
    let records = gvl::without_gvl(&interrupted, || {
        let until = std::time::Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            let batch = host_log::next_batch(max, left.min(SLICE));
            if !batch.is_empty() || left <= SLICE || interrupted.is_cancelled() {
                return batch;
            }
        }
    })?
    .unwrap_or_default();
    let array = ruby.ary_new_capa(records.len());
    for r in records {
        let level = match r.level {
            Level::ERROR => "error",
            Level::WARN => "warn",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        array.push((ruby.to_symbol(level), r.target, r.message, r.created))?;
    }
    Ok(array)
}

pub(crate) fn define(native: magnus::RModule) -> Result<(), Error> {
    use magnus::{Object, function};
    native.define_singleton_method("collect_logs", function!(collect_logs, 1))?;
    native.define_singleton_method("next_log_records", function!(next_log_records, 2))?;
    Ok(())
}
