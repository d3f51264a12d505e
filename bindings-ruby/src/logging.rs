//! The core's log records (`telemetry::host_log`) for a Ruby `Logger`: Ruby's log thread
//! pulls them in batches with the GVL released.

use conductor_worker::Cancel;
use conductor_worker::telemetry::host_log;
use magnus::{Error, RArray, Ruby};
use tracing::Level;

use crate::gvl;

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
/// seconds for the first with the GVL released. `[]` when none came or the wait was
/// interrupted.
fn next_log_records(ruby: &Ruby, max: usize, timeout: f64) -> Result<RArray, Error> {
    let wait = gvl::seconds(ruby, "timeout", timeout)?;
    let interrupted = Cancel::new();
    let records = gvl::without_gvl(&interrupted, || {
        host_log::next_batch(max, wait, &interrupted)
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
