//! A Rust program's main loop with the signal conventions of Python's and Ruby's `run()`:
//! SIGINT or SIGTERM drains and returns, SIGTSTP quiets (Sidekiq's convention, sent by a
//! Kubernetes `preStop` hook before the SIGTERM of a deploy), SIGCONT resumes.

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use super::{Runtime, StopReport};
use crate::error::{Error, Result};

impl Runtime {
    /// Starts the runtime unless it is started, then serves until SIGINT or SIGTERM and drains
    /// within `drain`. SIGTSTP meanwhile [quiets](Runtime::quiet) it and SIGCONT
    /// [resumes](Runtime::resume_all) it.
    ///
    /// ```no_run
    /// # async fn demo(runtime: conductor_worker::Runtime) -> conductor_worker::Result<()> {
    /// let report = runtime.run_until_signal(std::time::Duration::from_secs(25)).await?;
    /// eprintln!("stopped; {} results kept in the journal", report.journalled_results);
    /// # Ok(()) }
    /// ```
    pub async fn run_until_signal(&self, drain: Duration) -> Result<StopReport> {
        let listen = |kind: SignalKind| {
            signal(kind).map_err(|e| Error::config("signal handler", "", e.to_string()))
        };
        let mut interrupt = listen(SignalKind::interrupt())?;
        let mut terminate = listen(SignalKind::terminate())?;
        let mut quiet = listen(SignalKind::from_raw(libc::SIGTSTP))?;
        let mut resume = listen(SignalKind::from_raw(libc::SIGCONT))?;
        if !self.is_started() {
            self.start().await?;
        }
        loop {
            tokio::select! {
                _ = interrupt.recv() => break,
                _ = terminate.recv() => break,
                _ = quiet.recv() => self.quiet(),
                _ = resume.recv() => self.resume_all(),
            }
        }
        tracing::info!(drain_seconds = drain.as_secs_f64(), "stopping: draining");
        Ok(self.stop(drain).await)
    }
}
