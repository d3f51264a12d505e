//! The `conductor-devserver` command line as a function, so the same command runs from the
//! Rust binary, from the Python package's `conductor-devserver` console script and from the
//! gem's executable (both bundle the server in their extension instead of a second binary).
//!
//! ```no_run
//! # async fn demo() {
//! // What `conductor-devserver --port 0` does: prints the URL, serves until SIGINT or SIGTERM.
//! let status = conductor_devserver::command::run(["conductor-devserver", "--port", "0"]).await;
//! std::process::exit(i32::from(status));
//! # }
//! ```

use std::ffi::OsString;
use std::io::Write;

use clap::Parser;

use crate::cli::Args;
use crate::server::DevServer;

/// Parses `args` (the program name first), starts the server, prints
/// `conductor-devserver listening on <url>` on stdout and serves until SIGINT or SIGTERM, then
/// shuts down. Returns the process's exit status: 0 after a signal and for `--help`/`--version`,
/// 2 for bad flags (the message is printed), 1 when the server cannot start.
pub async fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = match Args::try_parse_from(args).and_then(|a| a.check().map(|()| a)) {
        Ok(args) => args,
        Err(e) => return print_parse_error(&e),
    };
    init_logging();
    let server = match DevServer::start(args.into_config()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("conductor-devserver: {e}");
            return 1;
        }
    };
    announce(&server.url());
    wait_for_signal().await;
    server.shutdown().await;
    0
}

/// The line scripts wait for to learn the URL (`--port 0`), flushed at once.
fn announce(url: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "conductor-devserver listening on {url}");
    let _ = out.flush();
}

fn print_parse_error(e: &clap::Error) -> u8 {
    let _ = e.print();
    // Help and version are "errors" to clap that exit 0.
    u8::try_from(e.exit_code()).unwrap_or(2)
}

/// Logs to stderr at `RUST_LOG` (default `warn`). A host process may have a subscriber already;
/// then that one stays.
fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .try_init();
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
