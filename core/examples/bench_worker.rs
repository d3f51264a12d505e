//! The Rust worker program of the benchmark harness and the fault matrix: the command-line
//! contract of `bench/workers/README.md` (mode `tokio`).
//!
//! ```text
//! CONDUCTOR_SERVER_URL=http://127.0.0.1:8080/api \
//!   target/release/examples/bench_worker --mode tokio --task-type t --concurrency 50 --work noop
//! ```
//!
//! Prints `ready` once its workers poll; SIGTERM or SIGINT drains (running tasks finish, results
//! are delivered) and exits 0; bad arguments exit 2 with a message naming the argument.

use std::process::ExitCode;
use std::time::Duration;

use conductor_worker::config::ProcessEnv;
use conductor_worker::{Runtime, RuntimeOptions, Task, TaskOutcome, WorkerOptions};
use serde_json::{Map, Value};

/// What each task does.
#[derive(Debug, Clone, Copy)]
enum Work {
    Noop,
    Sleep(Duration),
    Cpu(u32),
    /// Returns the input's `data` as the output's (the large-payload scenario).
    Echo,
}

#[derive(Debug)]
struct Args {
    task_types: Vec<String>,
    concurrency: usize,
    work: Work,
    poll_interval: Option<Duration>,
}

const USAGE: &str = "usage: bench_worker --mode tokio --task-type NAME [--task-type NAME]... \
--concurrency N --work noop|sleep:MS|cpu:N|echo [--poll-interval-ms MS]";

fn parse_work(value: &str) -> Result<Work, String> {
    let bad = || format!("--work: expected noop, sleep:MS, cpu:N or echo, got {value:?}");
    match value {
        "noop" => return Ok(Work::Noop),
        "echo" => return Ok(Work::Echo),
        _ => {}
    }
    if let Some(ms) = value.strip_prefix("sleep:") {
        return ms
            .parse::<u64>()
            .map(|ms| Work::Sleep(Duration::from_millis(ms)))
            .map_err(|_| bad());
    }
    if let Some(n) = value.strip_prefix("cpu:") {
        return n.parse::<u32>().map(Work::Cpu).map_err(|_| bad());
    }
    Err(bad())
}

fn parse_args(raw: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut mode = None;
    let mut task_types = Vec::new();
    let mut concurrency = None;
    let mut work = None;
    let mut poll_interval = None;
    let mut it = raw.into_iter();
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (flag.clone(), None),
        };
        if !matches!(
            name.as_str(),
            "--mode" | "--task-type" | "--concurrency" | "--work" | "--poll-interval-ms"
        ) {
            return Err(format!("unknown argument {flag:?}"));
        }
        let value = match inline.or_else(|| it.next()) {
            Some(v) => v,
            None => return Err(format!("{name}: a value is missing")),
        };
        match name.as_str() {
            "--mode" => mode = Some(value),
            "--task-type" => {
                if value.is_empty() {
                    return Err("--task-type: must not be empty".into());
                }
                task_types.push(value);
            }
            "--concurrency" => match value.parse::<usize>() {
                Ok(n) if n >= 1 => concurrency = Some(n),
                _ => {
                    return Err(format!(
                        "--concurrency: expected a number from 1, got {value:?}"
                    ));
                }
            },
            "--work" => work = Some(parse_work(&value)?),
            _ => match value.parse::<u64>() {
                Ok(ms) => poll_interval = Some(Duration::from_millis(ms)),
                Err(_) => {
                    return Err(format!(
                        "--poll-interval-ms: expected milliseconds, got {value:?}"
                    ));
                }
            },
        }
    }
    match mode.as_deref() {
        Some("tokio") => {}
        Some(other) => {
            return Err(format!(
                "--mode: this program has only tokio, got {other:?}"
            ));
        }
        None => return Err("--mode is missing".into()),
    }
    if task_types.is_empty() {
        return Err("--task-type is missing".into());
    }
    Ok(Args {
        task_types,
        concurrency: concurrency.ok_or("--concurrency is missing")?,
        work: work.ok_or("--work is missing")?,
        poll_interval,
    })
}

/// SHA-256 from the crypto provider the runtime already carries (rustls over ring), so the
/// example needs no dependency of its own.
fn sha256() -> &'static dyn rustls::crypto::hash::Hash {
    match rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256 {
        rustls::SupportedCipherSuite::Tls13(suite) => suite.common.hash_provider,
        rustls::SupportedCipherSuite::Tls12(suite) => suite.common.hash_provider,
    }
}

/// `rounds` rounds of SHA-256, each over the previous digest, from 32 zero bytes; hex.
fn hash_rounds(rounds: u32) -> String {
    let hash = sha256();
    let mut digest = [0u8; 32];
    for _ in 0..rounds {
        let next = hash.hash(&digest);
        digest.copy_from_slice(next.as_ref());
    }
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

async fn execute(work: Work, task: Task) -> TaskOutcome {
    match work {
        Work::Noop => TaskOutcome::Completed(Map::new()),
        Work::Echo => {
            let mut input = task.input_data;
            let mut out = Map::new();
            out.insert("data".into(), input.remove("data").unwrap_or(Value::Null));
            TaskOutcome::Completed(out)
        }
        Work::Sleep(d) => {
            tokio::time::sleep(d).await;
            TaskOutcome::Completed(Map::new())
        }
        Work::Cpu(rounds) => {
            // Off the runtime's threads, as a CPU-bound Rust task should run.
            match tokio::task::spawn_blocking(move || hash_rounds(rounds)).await {
                Ok(hex) => {
                    let mut out = Map::new();
                    out.insert("digest".into(), Value::String(hex));
                    TaskOutcome::Completed(out)
                }
                Err(e) => TaskOutcome::Failed(format!("the hashing thread failed: {e}")),
            }
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = Runtime::new(RuntimeOptions::from_env(&ProcessEnv)?)?;
    let work = args.work;
    for task_type in &args.task_types {
        let mut options = WorkerOptions::new(task_type).concurrency(args.concurrency);
        if let Some(interval) = args.poll_interval {
            options = options.poll_interval(interval);
        }
        runtime.spawn_fn(options, move |task| execute(work, task))?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    runtime.start().await?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")?;
        out.flush()?;
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    let report = runtime.stop(Duration::from_secs(30)).await;
    eprintln!("bench_worker: stopped: {report:?}");
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_worker: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench_worker: cannot start tokio: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_worker: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse_args(s.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn parses_the_contract() {
        let a = args("--mode tokio --task-type a --task-type b --concurrency 3 --work sleep:50")
            .unwrap();
        assert_eq!(a.task_types, ["a", "b"]);
        assert_eq!(a.concurrency, 3);
        assert!(matches!(a.work, Work::Sleep(d) if d == Duration::from_millis(50)));
        let a =
            args("--mode=tokio --task-type=a --concurrency=1 --work=cpu:10 --poll-interval-ms 5")
                .unwrap();
        assert!(matches!(a.work, Work::Cpu(10)));
        let a = args("--mode tokio --task-type a --concurrency 1 --work echo").unwrap();
        assert!(matches!(a.work, Work::Echo));
        assert_eq!(a.poll_interval, Some(Duration::from_millis(5)));
    }

    #[test]
    fn bad_arguments_name_the_argument() {
        let e = args("--mode threads --task-type a --concurrency 1 --work noop").unwrap_err();
        assert!(e.contains("--mode"), "{e}");
        let e = args("--mode tokio --task-type a --concurrency 0 --work noop").unwrap_err();
        assert!(e.contains("--concurrency"), "{e}");
        let e = args("--mode tokio --task-type a --concurrency 1 --work spin").unwrap_err();
        assert!(e.contains("--work"), "{e}");
        let e = args("--mode tokio --concurrency 1 --work noop").unwrap_err();
        assert!(e.contains("--task-type"), "{e}");
        let e =
            args("--mode tokio --task-type a --concurrency 1 --work noop --fast 1").unwrap_err();
        assert!(e.contains("--fast"), "{e}");
    }

    #[test]
    fn hashing_matches_sha256_chaining() {
        // One round over 32 zero bytes: SHA-256 of 32 zero bytes.
        assert_eq!(
            hash_rounds(1),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
        assert_eq!(hash_rounds(0), "0".repeat(64));
    }
}
