//! Errors of the runtime. Each variant names what is wrong so that a user can fix it without
//! reading this crate: a bad setting names the setting and the value, a server error names the
//! server and the status.

use std::time::Duration;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid.
    #[error("invalid value {value:?} for {setting}: {reason}")]
    Config {
        /// The setting, as the user wrote it (an environment variable or an option name).
        setting: String,
        /// The value given (never a secret: secrets are shown as `<redacted>`).
        value: String,
        /// What a valid value looks like.
        reason: String,
    },
    /// A request could not be sent or its answer not received (connection refused, reset,
    /// timed out).
    #[error("request to {server} failed: {message}")]
    Transport {
        /// The server's base URL.
        server: String,
        /// What happened.
        message: String,
        /// Whether the request timed out.
        timed_out: bool,
    },
    /// The server answered with an unexpected status.
    #[error("{server} answered {status} to {endpoint}: {body}")]
    Status {
        /// The server's base URL.
        server: String,
        /// Which call.
        endpoint: &'static str,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The server's answer could not be decoded.
    #[error("{server} sent an undecodable answer to {endpoint}: {message}")]
    Decode {
        /// The server's base URL.
        server: String,
        /// Which call.
        endpoint: &'static str,
        /// What was wrong with it.
        message: String,
    },
    /// Authentication failed (bad key or secret, or the token endpoint is failing).
    #[error("authentication with {server} failed: {message}")]
    Auth {
        /// The server's base URL.
        server: String,
        /// What happened.
        message: String,
        /// How long the client waits before trying again.
        retry_in: Duration,
    },
    /// A task id the runtime does not know (never polled, or already completed).
    #[error(
        "unknown task {task_id:?} for worker {worker:?}: it was never handed out or was already completed"
    )]
    UnknownTask {
        /// The worker.
        worker: String,
        /// The task id.
        task_id: String,
    },
    /// A worker name the runtime does not know.
    #[error("no worker for task type {0:?} is registered")]
    UnknownWorker(String),
    /// The runtime is not running (not started yet, or stopped).
    #[error("the worker runtime is {0}")]
    NotRunning(&'static str),
    /// The journal could not be read or written.
    #[error("journal {path}: {message}")]
    Journal {
        /// The journal file.
        path: String,
        /// What happened.
        message: String,
    },
    /// The metrics endpoint could not be started.
    #[error("metrics endpoint on port {port}: {message}")]
    Metrics {
        /// The port asked for.
        port: u16,
        /// What happened.
        message: String,
    },
}

impl Error {
    pub(crate) fn config(
        setting: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::Config {
            setting: setting.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// Whether trying the same request again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Auth { .. } | Self::Decode { .. } => true,
            // 400 means the request itself is wrong; anything else (5xx, 429, 408, proxies' 502)
            // may pass later.
            Self::Status { status, .. } => *status != 400 && *status != 422,
            _ => false,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
