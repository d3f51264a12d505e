//! A worker for large payloads, the Rust one of the end-to-end tests in `tests/e2e` (the Python
//! and Ruby ones, `tests/e2e/workers/payload_worker.{py,rb}`, do exactly the same).
//!
//! ```text
//! CONDUCTOR_SERVER_URL=http://127.0.0.1:8080/api \
//!   target/release/examples/payload_worker [TASK_TYPE]     # default payload_check
//! ```
//!
//! The task takes `doc` (a string) and `out_kb` (a number of KiB) and returns `input_fnv1a`
//! (FNV-1a 64 of the UTF-8 bytes of `doc`, 16 hex digits), `input_len` (`doc`'s length in
//! characters) and `blob` (`doc` repeated, or `-` if it is empty, cut to `out_kb` * 1024
//! characters). It prints `ready` once its worker polls and `called <taskId>` each time the
//! function runs; SIGTERM or SIGINT drains and exits 0.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use conductor_worker::config::ProcessEnv;
use conductor_worker::{Runtime, RuntimeOptions, Task, TaskOutcome, WorkerOptions};
use serde_json::{Map, Value};

const DEFAULT_TASK_TYPE: &str = "payload_check";
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits, of `bytes`, as 16 lower-case hex digits.
fn fnv1a(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(FNV_OFFSET, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    });
    format!("{hash:016x}")
}

/// `doc` repeated (`-` if it is empty) and cut to `chars` characters.
fn blob(doc: &str, chars: usize) -> String {
    let source = if doc.is_empty() { "-" } else { doc };
    source.chars().cycle().take(chars).collect()
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout must not fail the task: the line is only for whoever watches.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

async fn check(task: Task) -> TaskOutcome {
    say(&format!("called {}", task.task_id));
    let Some(doc) = task.input_data.get("doc").and_then(Value::as_str) else {
        return TaskOutcome::FailedTerminal("input 'doc' (a string) is missing".into());
    };
    let out_kb = match task.input_data.get("out_kb") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_u64().and_then(|kb| usize::try_from(kb).ok()) {
            Some(kb) => kb,
            None => {
                return TaskOutcome::FailedTerminal(format!(
                    "input 'out_kb' should be a number of KiB from 0, got {v}"
                ));
            }
        },
    };
    let mut output = Map::new();
    output.insert("input_fnv1a".into(), fnv1a(doc.as_bytes()).into());
    output.insert("input_len".into(), doc.chars().count().into());
    output.insert("blob".into(), blob(doc, out_kb.saturating_mul(1024)).into());
    TaskOutcome::Completed(output)
}

async fn run(task_type: String) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = Runtime::new(RuntimeOptions::from_env(&ProcessEnv)?)?;
    runtime.spawn_fn(WorkerOptions::new(&task_type).concurrency(2), check)?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    runtime.start().await?;
    say("ready");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let report = runtime.stop(Duration::from_secs(30)).await;
    eprintln!("payload_worker: stopped: {report:?}");
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let task_type = args.next().unwrap_or_else(|| DEFAULT_TASK_TYPE.into());
    if task_type.is_empty() || task_type.starts_with('-') || args.next().is_some() {
        eprintln!(
            "payload_worker: usage: payload_worker [TASK_TYPE] (default {DEFAULT_TASK_TYPE})"
        );
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("payload_worker: cannot start tokio: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(task_type)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("payload_worker: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), "cbf29ce484222325");
        assert_eq!(fnv1a(b"a"), "af63dc4c8601ec8c");
        assert_eq!(fnv1a(b"foobar"), "85944171f73967e8");
    }

    #[test]
    fn blob_repeats_and_cuts_by_characters() {
        assert_eq!(blob("abc", 7), "abcabca");
        assert_eq!(blob("", 3), "---");
        assert_eq!(blob("é", 2), "éé");
        assert_eq!(blob("abc", 0), "");
    }
}
