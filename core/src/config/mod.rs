//! Typed options, their defaults, and the environment overrides the official SDKs use.
//!
//! Precedence for a worker property, highest first (the official SDKs' order, so existing
//! deployments keep working):
//!
//! 1. `conductor.worker.<task_type>.<prop>`
//! 2. `CONDUCTOR_WORKER_<TASK_TYPE>_<PROP>` (task type upper-cased, non-alphanumerics as `_`)
//! 3. `conductor.worker.all.<prop>`
//! 4. `CONDUCTOR_WORKER_ALL_<PROP>`
//! 5. the value set in code
//! 6. the default
//!
//! The properties are the worker options ([`WorkerOptions::options`]) by name, durations in
//! milliseconds, with the official SDKs' aliases: `thread_count` for `concurrency`,
//! `poll_interval_millis`, `lease_extend_enabled`, `register_task_def` for `register`.
//!
//! ```
//! use conductor_worker::config::{MapEnv, WorkerOptions};
//! use std::time::Duration;
//! let env = MapEnv::from([
//!     ("conductor.worker.all.poll_interval", "250"),
//!     ("CONDUCTOR_WORKER_GREET_POLL_INTERVAL", "1000"),
//! ]);
//! let mut options = WorkerOptions::new("greet");
//! options.apply_env(&env).unwrap();
//! assert_eq!(options.poll_interval, Duration::from_millis(1000));
//!
//! let bad = MapEnv::from([("CONDUCTOR_WORKER_GREET_THREAD_COUNT", "many")]);
//! let err = options.apply_env(&bad).unwrap_err().to_string();
//! assert!(err.contains("CONDUCTOR_WORKER_GREET_THREAD_COUNT") && err.contains("many"));
//! ```

mod option;
mod runtime;
mod worker;

pub use option::{Conversion, HostType, OptionInfo, Refusal};
pub use runtime::{DEFAULT_EXTERNAL_PAYLOAD_THRESHOLD_KB, RuntimeOptions};
pub use worker::{WorkerOptions, default_worker_id};

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// Where configuration values come from; [`ProcessEnv`] in production, [`MapEnv`] in tests.
pub trait Env {
    /// The value of `key`, if set.
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

/// A fixed set of variables.
#[derive(Debug, Clone, Default)]
pub struct MapEnv(pub HashMap<String, String>);

impl<const N: usize> From<[(&str, &str); N]> for MapEnv {
    fn from(pairs: [(&str, &str); N]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

impl Env for MapEnv {
    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
}

/// A secret (auth key secret): never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Orkes-style key credentials, exchanged for a token at `POST /api/token`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The key id.
    pub key_id: String,
    /// The key secret.
    pub key_secret: Secret,
}

impl Credentials {
    /// Credentials from a key id and secret.
    pub fn new(key_id: impl Into<String>, key_secret: impl Into<String>) -> Self {
        Self {
            key_id: key_id.into(),
            key_secret: Secret::new(key_secret),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key id is an identifier, but some teams treat it as sensitive too: show its
        // first characters only.
        let shown: String = self.key_id.chars().take(4).collect();
        write!(
            f,
            "Credentials {{ key_id: \"{shown}…\", key_secret: <redacted> }}"
        )
    }
}

/// One Conductor server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Base URL including `/api`, without a trailing slash, e.g. `http://localhost:8080/api`.
    pub url: String,
    /// Credentials, if the server requires them.
    pub credentials: Option<Credentials>,
}

impl ServerConfig {
    /// A server at `url` (`http://` or `https://`, usually ending in `/api`).
    ///
    /// ```
    /// use conductor_worker::config::ServerConfig;
    /// assert_eq!(ServerConfig::new("http://localhost:8080/api/").unwrap().url, "http://localhost:8080/api");
    /// assert!(ServerConfig::new("localhost:8080").unwrap_err().to_string().contains("http://"));
    /// ```
    pub fn new(url: &str) -> Result<Self> {
        Ok(Self {
            url: validate_url("server url", url)?,
            credentials: None,
        })
    }

    /// The same server with credentials.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Servers from `CONDUCTOR_SERVER_URL` (comma-separated for several), with
    /// `CONDUCTOR_AUTH_KEY` and `CONDUCTOR_AUTH_SECRET` as matching comma-separated lists.
    /// Returns an empty list when `CONDUCTOR_SERVER_URL` is not set.
    ///
    /// ```
    /// use conductor_worker::config::{MapEnv, ServerConfig};
    /// let env = MapEnv::from([
    ///     ("CONDUCTOR_SERVER_URL", "http://a:8080/api, http://b:8080/api"),
    ///     ("CONDUCTOR_AUTH_KEY", "ka,kb"),
    ///     ("CONDUCTOR_AUTH_SECRET", "sa,sb"),
    /// ]);
    /// let servers = ServerConfig::from_env(&env).unwrap();
    /// assert_eq!(servers.len(), 2);
    /// assert_eq!(servers[1].credentials.as_ref().unwrap().key_id, "kb");
    /// ```
    pub fn from_env(env: &dyn Env) -> Result<Vec<Self>> {
        const URL: &str = "CONDUCTOR_SERVER_URL";
        const KEY: &str = "CONDUCTOR_AUTH_KEY";
        const SECRET: &str = "CONDUCTOR_AUTH_SECRET";
        let Some(urls) = env.get(URL).filter(|v| !v.trim().is_empty()) else {
            return Ok(Vec::new());
        };
        let split = |v: String| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        };
        let urls = split(urls);
        let keys = env.get(KEY).filter(|v| !v.is_empty()).map(split);
        let secrets = env.get(SECRET).filter(|v| !v.is_empty()).map(split);
        let mismatch = |what: &str| {
            Error::config(
                format!("{URL}, {KEY} and {SECRET}"),
                format!(
                    "{} url(s), {} key(s), {} secret(s)",
                    urls.len(),
                    keys.as_ref().map_or(0, Vec::len),
                    secrets.as_ref().map_or(0, Vec::len)
                ),
                format!("{what}: give one key and one secret per server, in the same order"),
            )
        };
        match (&keys, &secrets) {
            (None, None) => {}
            (Some(k), Some(s)) if k.len() == urls.len() && s.len() == urls.len() => {}
            (Some(_), Some(_)) => return Err(mismatch("the lists have different lengths")),
            _ => return Err(mismatch("a key without a secret or a secret without a key")),
        }
        urls.iter()
            .enumerate()
            .map(|(i, url)| {
                let mut server = Self {
                    url: validate_url(URL, url)?,
                    credentials: None,
                };
                if let (Some(k), Some(s)) = (&keys, &secrets) {
                    // An empty pair means "this server has no auth" in a mixed list.
                    if !(k[i].is_empty() && s[i].is_empty()) {
                        server.credentials = Some(Credentials::new(&k[i], &s[i]));
                    }
                }
                Ok(server)
            })
            .collect()
    }
}

fn validate_url(setting: &str, url: &str) -> Result<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let Some((scheme, rest)) = trimmed.split_once("://") else {
        return Err(Error::config(
            setting,
            url,
            "expected http://host[:port]/api or https://…",
        ));
    };
    if scheme != "http" && scheme != "https" {
        return Err(Error::config(
            setting,
            url,
            "the scheme must be http:// or https://",
        ));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err(Error::config(setting, url, "the URL has no host"));
    }
    if host.contains('@') {
        return Err(Error::config(
            setting,
            "<url with credentials>",
            "credentials in the URL are not supported; use CONDUCTOR_AUTH_KEY/SECRET",
        ));
    }
    reqwest::Url::parse(trimmed).map_err(|e| Error::config(setting, url, e.to_string()))?;
    Ok(trimmed.to_owned())
}

/// Where undelivered results are kept across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalConfig {
    /// No journal: results still undelivered at exit are lost (they are logged).
    Disabled,
    /// A JSON-lines file.
    File(PathBuf),
}

impl JournalConfig {
    /// `$CONDUCTOR_WORKER_JOURNAL` (a path, or `off`), else
    /// `$XDG_STATE_HOME/conductor-worker/journal.jsonl`, else
    /// `~/.local/state/conductor-worker/journal.jsonl`.
    pub fn from_env(env: &dyn Env) -> Self {
        match env.get("CONDUCTOR_WORKER_JOURNAL") {
            Some(v) => Self::parse(&v),
            None => {
                let state = env
                    .get("XDG_STATE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| {
                        env.get("HOME")
                            .map(|h| PathBuf::from(h).join(".local/state"))
                    })
                    .unwrap_or_else(std::env::temp_dir);
                Self::File(state.join("conductor-worker").join("journal.jsonl"))
            }
        }
    }
}

impl JournalConfig {
    /// A path, or `off` (also `false`, `0`, `none` or empty) for no journal: the values
    /// `CONDUCTOR_WORKER_JOURNAL` and the bindings' `journal` option take.
    ///
    /// ```
    /// # use conductor_worker::JournalConfig;
    /// assert_eq!(JournalConfig::parse(" off "), JournalConfig::Disabled);
    /// assert_eq!(JournalConfig::parse("/var/lib/j.jsonl"), JournalConfig::File("/var/lib/j.jsonl".into()));
    /// ```
    pub fn parse(value: &str) -> Self {
        match value.trim() {
            "off" | "false" | "0" | "none" | "" => Self::Disabled,
            path => Self::File(PathBuf::from(path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_follows_the_official_sdks() {
        let env = MapEnv::from([
            ("conductor.worker.greet.thread_count", "7"),
            ("CONDUCTOR_WORKER_GREET_THREAD_COUNT", "6"),
            ("conductor.worker.all.thread_count", "5"),
            ("CONDUCTOR_WORKER_ALL_THREAD_COUNT", "4"),
            ("CONDUCTOR_WORKER_ALL_DOMAIN", "blue"),
        ]);
        let mut o = WorkerOptions::new("greet").concurrency(2);
        o.apply_env(&env).unwrap();
        assert_eq!(o.concurrency, 7);
        assert_eq!(o.domain.as_deref(), Some("blue"));

        let env = MapEnv::from([
            ("CONDUCTOR_WORKER_GREET_THREAD_COUNT", "6"),
            ("conductor.worker.all.thread_count", "5"),
        ]);
        let mut o = WorkerOptions::new("greet");
        o.apply_env(&env).unwrap();
        assert_eq!(o.concurrency, 6);

        let env = MapEnv::from([("CONDUCTOR_WORKER_ALL_THREAD_COUNT", "4")]);
        let mut o = WorkerOptions::new("other");
        o.apply_env(&env).unwrap();
        assert_eq!(o.concurrency, 4);
    }

    #[test]
    fn task_type_with_dashes_maps_to_an_env_token() {
        let env = MapEnv::from([("CONDUCTOR_WORKER_SEND_EMAIL_V2_PAUSED", "true")]);
        let mut o = WorkerOptions::new("send-email.v2");
        o.apply_env(&env).unwrap();
        assert!(o.paused);
    }

    #[test]
    fn invalid_values_name_the_setting_and_the_value() {
        for (key, value) in [
            ("CONDUCTOR_WORKER_ALL_POLL_INTERVAL", "soon"),
            ("conductor.worker.t.paused", "maybe"),
            ("CONDUCTOR_WORKER_T_THREAD_COUNT", "0"),
            ("CONDUCTOR_WORKER_T_POLL_TIMEOUT", "60000"),
        ] {
            let env = MapEnv::from([(key, value)]);
            let err = WorkerOptions::new("t")
                .apply_env(&env)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key) && err.contains(value), "{err}");
        }
    }

    #[test]
    fn server_lists_must_match() {
        let env = MapEnv::from([
            ("CONDUCTOR_SERVER_URL", "http://a/api,http://b/api"),
            ("CONDUCTOR_AUTH_KEY", "k1"),
            ("CONDUCTOR_AUTH_SECRET", "s1"),
        ]);
        let err = ServerConfig::from_env(&env).unwrap_err().to_string();
        for name in [
            "CONDUCTOR_SERVER_URL",
            "CONDUCTOR_AUTH_KEY",
            "CONDUCTOR_AUTH_SECRET",
        ] {
            assert!(err.contains(name), "{err}");
        }
        assert!(!err.contains("s1"), "a secret leaked into {err}");
    }

    #[test]
    fn malformed_urls_are_rejected_with_the_value() {
        for bad in [
            "",
            "localhost:8080",
            "ftp://x/api",
            "http://",
            "http://:80/api",
        ] {
            let err = ServerConfig::new(bad).unwrap_err().to_string();
            assert!(err.contains("server url"), "{err}");
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let server = ServerConfig::new("http://a/api")
            .unwrap()
            .with_credentials(Credentials::new("key-id-123", "super-secret"));
        let shown = format!("{server:?}");
        assert!(
            !shown.contains("super-secret") && !shown.contains("key-id-123"),
            "{shown}"
        );
    }

    #[test]
    fn journal_location() {
        let env = MapEnv::from([("CONDUCTOR_WORKER_JOURNAL", "off")]);
        assert_eq!(JournalConfig::from_env(&env), JournalConfig::Disabled);
        let env = MapEnv::from([("XDG_STATE_HOME", "/var/state")]);
        assert_eq!(
            JournalConfig::from_env(&env),
            JournalConfig::File("/var/state/conductor-worker/journal.jsonl".into())
        );
    }
}
