//! Errors of the runtime. Each variant names what is wrong so that a user can fix it without
//! reading this crate: a bad setting names the setting and the value, a server error names the
//! server and the status.

use std::time::Duration;

use crate::field::Field;

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

/// Every kind of [`Error`] with the names of the fields [`Error::fields`] gives it (besides
/// `retryable`, which every kind has): what each host's exception class must carry. The
/// bindings' tests check their classes against this list.
pub const ERROR_KINDS: &[(&str, &[&str])] = &[
    ("ConfigError", &["setting", "value"]),
    ("TransportError", &["server", "timed_out"]),
    ("StatusError", &["server", "endpoint", "status"]),
    ("DecodeError", &["server", "endpoint"]),
    ("AuthError", &["server", "retry_in"]),
    ("UnknownTaskError", &["task_type", "task_id"]),
    ("NotRunningError", &["state"]),
    ("JournalError", &["path"]),
    ("MetricsError", &["port"]),
];

impl Error {
    /// The kind of this error, which is the name of its exception class in every host:
    /// `conductor_worker.errors.<kind>` in Python, `ConductorWorker::<kind>` in Ruby.
    ///
    /// ```
    /// let error = conductor_worker::Error::NotRunning("stopped");
    /// assert_eq!(error.kind(), "NotRunningError");
    /// assert_eq!(error.fields()[0].0, "state");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Config { .. } => "ConfigError",
            Self::Transport { .. } => "TransportError",
            Self::Status { .. } => "StatusError",
            Self::Decode { .. } => "DecodeError",
            Self::Auth { .. } => "AuthError",
            Self::UnknownTask { .. } => "UnknownTaskError",
            Self::NotRunning(_) => "NotRunningError",
            Self::Journal { .. } => "JournalError",
            Self::Metrics { .. } => "MetricsError",
        }
    }

    /// The fields a host sets as attributes of the exception, named as in [`ERROR_KINDS`],
    /// then `retryable` ([`Error::is_retryable`]).
    pub fn fields(&self) -> Vec<(&'static str, Field)> {
        let text = |s: &str| Field::Str(s.to_owned());
        let mut fields = match self {
            Self::Config { setting, value, .. } => {
                vec![("setting", text(setting)), ("value", text(value))]
            }
            Self::Transport {
                server, timed_out, ..
            } => vec![
                ("server", text(server)),
                ("timed_out", Field::Bool(*timed_out)),
            ],
            Self::Status {
                server,
                endpoint,
                status,
                ..
            } => vec![
                ("server", text(server)),
                ("endpoint", text(endpoint)),
                ("status", Field::Int(u64::from(*status))),
            ],
            Self::Decode {
                server, endpoint, ..
            } => vec![("server", text(server)), ("endpoint", text(endpoint))],
            Self::Auth {
                server, retry_in, ..
            } => vec![
                ("server", text(server)),
                ("retry_in", Field::Float(retry_in.as_secs_f64())),
            ],
            Self::UnknownTask { worker, task_id } => {
                vec![("task_type", text(worker)), ("task_id", text(task_id))]
            }
            Self::NotRunning(state) => vec![("state", text(state))],
            Self::Journal { path, .. } => vec![("path", text(path))],
            Self::Metrics { port, .. } => vec![("port", Field::Int(u64::from(*port)))],
        };
        fields.push(("retryable", Field::Bool(self.is_retryable())));
        fields
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// One error of every kind: `kind` and `fields` must match [`ERROR_KINDS`], which the
    /// bindings check their exception classes against.
    #[test]
    fn every_kind_is_listed_with_its_fields() {
        let s = String::new;
        let errors = [
            Error::config("a", "b", "c"),
            Error::Transport {
                server: s(),
                message: s(),
                timed_out: true,
            },
            Error::Status {
                server: s(),
                endpoint: "poll",
                status: 500,
                body: s(),
            },
            Error::Decode {
                server: s(),
                endpoint: "poll",
                message: s(),
            },
            Error::Auth {
                server: s(),
                message: s(),
                retry_in: Duration::from_secs(1),
            },
            Error::UnknownTask {
                worker: s(),
                task_id: s(),
            },
            Error::NotRunning("stopped"),
            Error::Journal {
                path: s(),
                message: s(),
            },
            Error::Metrics {
                port: 1,
                message: s(),
            },
        ];
        assert_eq!(errors.len(), ERROR_KINDS.len());
        for (error, (kind, names)) in errors.iter().zip(ERROR_KINDS) {
            assert_eq!(error.kind(), *kind);
            let fields: Vec<_> = error.fields().into_iter().map(|(n, _)| n).collect();
            assert_eq!(fields[..fields.len() - 1], **names, "{kind}");
            assert_eq!(fields.last(), Some(&"retryable"));
        }
    }
}
