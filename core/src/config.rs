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
//! Properties: `poll_interval` (ms; alias `poll_interval_millis`), `poll_timeout` (ms, the
//! server-side long poll), `thread_count` (alias `concurrency`), `domain`, `worker_id`,
//! `paused`, `lease_extend` (alias `lease_extend_enabled`), `register_task_def`.
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

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::api::TaskDef;
use crate::backoff::Backoff;
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

/// The host name, the default worker id (as the official SDKs use).
pub fn default_worker_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "conductor-worker".to_owned())
}

/// How one worker (one task type, optionally in one domain) polls and runs.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerOptions {
    /// The task type to poll.
    pub task_type: String,
    /// The domain to poll in, if any.
    pub domain: Option<String>,
    /// How many tasks may run at once (the number of executors).
    pub concurrency: usize,
    /// The longest wait between polls when there is no work; empty polls back off
    /// exponentially from 1 ms up to this (the official SDKs stop at 1.024 s whatever is set).
    pub poll_interval: Duration,
    /// How long the server holds an empty poll open (long poll, at most 5 s).
    pub poll_timeout: Duration,
    /// Sent with polls and results; defaults to the host name.
    pub worker_id: String,
    /// Extend the lease of running tasks at 80 % of their `responseTimeoutSeconds`.
    pub lease_extend: bool,
    /// Start paused (no polling until resumed).
    pub paused: bool,
    /// Register this task definition on every server at start.
    pub task_def: Option<TaskDef>,
}

impl WorkerOptions {
    /// Defaults: concurrency 1, poll interval 100 ms, long poll 1 s, lease extension on.
    pub fn new(task_type: impl Into<String>) -> Self {
        Self {
            task_type: task_type.into(),
            domain: None,
            concurrency: 1,
            poll_interval: Duration::from_millis(100),
            poll_timeout: Duration::from_millis(1000),
            worker_id: default_worker_id(),
            lease_extend: true,
            paused: false,
            task_def: None,
        }
    }

    /// Sets the concurrency.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }
    /// Sets the domain.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }
    /// Sets the poll interval.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }
    /// Sets the server-side long-poll time.
    pub fn poll_timeout(mut self, timeout: Duration) -> Self {
        self.poll_timeout = timeout;
        self
    }
    /// Sets the worker id.
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = id.into();
        self
    }
    /// Turns lease extension on or off.
    pub fn lease_extend(mut self, on: bool) -> Self {
        self.lease_extend = on;
        self
    }
    /// Starts the worker paused.
    pub fn paused(mut self, paused: bool) -> Self {
        self.paused = paused;
        self
    }
    /// Registers `def` on every server at start.
    pub fn register(mut self, def: TaskDef) -> Self {
        self.task_def = Some(def);
        self
    }

    /// Applies the environment overrides (see the module docs for names and precedence).
    /// An invalid value is an error naming the variable that set it.
    pub fn apply_env(&mut self, env: &dyn Env) -> Result<()> {
        // The variable each option was read from, so that `validate` can name it.
        let mut sources: Vec<(&str, String)> = Vec::new();
        let lookup = |names: &[&str]| -> Option<(String, String)> {
            for prop in names {
                let upper_type = env_token(&self.task_type);
                let upper_prop = prop.to_ascii_uppercase();
                for key in [
                    format!("conductor.worker.{}.{prop}", self.task_type),
                    format!("CONDUCTOR_WORKER_{upper_type}_{upper_prop}"),
                ] {
                    if let Some(v) = env.get(&key) {
                        return Some((key, v));
                    }
                }
            }
            for prop in names {
                let upper_prop = prop.to_ascii_uppercase();
                for key in [
                    format!("conductor.worker.all.{prop}"),
                    format!("CONDUCTOR_WORKER_ALL_{upper_prop}"),
                ] {
                    if let Some(v) = env.get(&key) {
                        return Some((key, v));
                    }
                }
            }
            None
        };
        if let Some((key, v)) = lookup(&["poll_interval", "poll_interval_millis"]) {
            self.poll_interval = parse_millis(&key, &v)?;
            sources.push(("poll_interval", key));
        }
        if let Some((key, v)) = lookup(&["poll_timeout"]) {
            self.poll_timeout = parse_millis(&key, &v)?;
            sources.push(("poll_timeout", key));
        }
        if let Some((key, v)) = lookup(&["thread_count", "concurrency"]) {
            self.concurrency = parse_number(&key, &v)?;
            sources.push(("concurrency", key));
        }
        if let Some((_, v)) = lookup(&["domain"]) {
            self.domain = Some(v.trim().to_owned()).filter(|d| !d.is_empty());
        }
        if let Some((key, v)) = lookup(&["worker_id"]) {
            self.worker_id = v;
            sources.push(("worker_id", key));
        }
        if let Some((key, v)) = lookup(&["paused"]) {
            self.paused = parse_bool(&key, &v)?;
        }
        if let Some((key, v)) = lookup(&["lease_extend", "lease_extend_enabled"]) {
            self.lease_extend = parse_bool(&key, &v)?;
        }
        if let Some((key, v)) = lookup(&["register_task_def"]) {
            if parse_bool(&key, &v)? {
                self.task_def
                    .get_or_insert_with(|| TaskDef::new(self.task_type.clone()));
            } else {
                self.task_def = None;
            }
        }
        self.validate_named(&|prop| {
            let option = format!("worker {:?} option {prop}", self.task_type);
            match sources.iter().find(|(p, _)| *p == prop) {
                Some((_, key)) => format!("{key} ({option})"),
                None => option,
            }
        })
    }

    /// Checks the values; the error names the option and the value.
    pub fn validate(&self) -> Result<()> {
        self.validate_named(&|prop| format!("worker {:?} option {prop}", self.task_type))
    }

    fn validate_named(&self, name: &dyn Fn(&str) -> String) -> Result<()> {
        if self.task_type.trim().is_empty() {
            return Err(Error::config(
                "task_type",
                &self.task_type,
                "must not be empty",
            ));
        }
        if self.task_type.contains(['/', '?', '#', '%']) {
            return Err(Error::config(
                "task_type",
                &self.task_type,
                "must not contain '/', '?', '#' or '%'",
            ));
        }
        if self.concurrency == 0 || self.concurrency > 100_000 {
            return Err(Error::config(
                name("concurrency"),
                self.concurrency.to_string(),
                "must be between 1 and 100000",
            ));
        }
        if self.poll_timeout > Duration::from_secs(5) {
            return Err(Error::config(
                name("poll_timeout"),
                format!("{}ms", self.poll_timeout.as_millis()),
                "the server's long poll is at most 5000 ms",
            ));
        }
        if self.poll_interval > Duration::from_secs(3600) {
            return Err(Error::config(
                name("poll_interval"),
                format!("{}ms", self.poll_interval.as_millis()),
                "must be at most one hour",
            ));
        }
        if self.worker_id.trim().is_empty() {
            return Err(Error::config(
                name("worker_id"),
                &self.worker_id,
                "must not be empty",
            ));
        }
        Ok(())
    }
}

/// `greet-v2.x` → `GREET_V2_X`, the environment-variable form of a task type.
fn env_token(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn parse_number(key: &str, value: &str) -> Result<usize> {
    value
        .trim()
        .parse()
        .map_err(|_| Error::config(key, value, "expected a whole number"))
}

fn parse_millis(key: &str, value: &str) -> Result<Duration> {
    let ms: u64 = value
        .trim()
        .parse()
        .map_err(|_| Error::config(key, value, "expected a whole number of milliseconds"))?;
    Ok(Duration::from_millis(ms))
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Error::config(key, value, "expected true or false")),
    }
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

/// Options of the whole runtime (all workers, all servers).
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// The servers to poll. Every task's result goes back to the server it came from.
    pub servers: Vec<ServerConfig>,
    /// The journal of undelivered results.
    pub journal: JournalConfig,
    /// Serve Prometheus metrics and `/health` on this port of 127.0.0.1 (0 picks a free one).
    pub metrics_port: Option<u16>,
    /// Retry delays for result delivery (never given up while the server may accept it).
    pub update_backoff: Backoff,
    /// Retry delays for polls that failed.
    pub poll_error_backoff: Backoff,
    /// Delays before retrying after an authentication failure (up to 60 s).
    pub auth_backoff: Backoff,
    /// Timeout of requests other than polls.
    pub request_timeout: Duration,
    /// How long beyond its long-poll time a poll may take before it is abandoned.
    pub poll_grace: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// When a token's lifetime cannot be read from it, refresh it after this long.
    pub token_refresh_interval: Duration,
    /// Extra root certificates (PEM file) trusted for `https://` servers.
    pub ca_bundle: Option<PathBuf>,
    /// A server's circuit breaker opens after this many failed polls in a row.
    pub breaker_failure_threshold: u32,
    /// An open breaker lets one probe poll through after this long.
    pub breaker_reset: Duration,
    /// A result whose output is larger than this (KB of JSON) is uploaded to the server's
    /// external payload storage where it takes uploads, and sent inline otherwise (the server
    /// then stores it itself). The default is the server's own threshold
    /// (`conductor.app.taskOutputPayloadSizeThreshold`); environment:
    /// `CONDUCTOR_WORKER_EXTERNAL_PAYLOAD_THRESHOLD_KB`.
    pub external_payload_threshold_kb: u64,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            journal: JournalConfig::Disabled,
            metrics_port: None,
            update_backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(30)),
            // A short cap: when a server comes back, polling resumes within seconds (the first
            // poll would otherwise wait most of a long step); the cost is one poll per few
            // seconds per task type while it is down.
            poll_error_backoff: Backoff::new(Duration::from_millis(250), Duration::from_secs(5)),
            auth_backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            request_timeout: Duration::from_secs(30),
            poll_grace: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            token_refresh_interval: Duration::from_secs(45 * 60),
            ca_bundle: None,
            breaker_failure_threshold: 3,
            breaker_reset: Duration::from_secs(10),
            external_payload_threshold_kb: DEFAULT_EXTERNAL_PAYLOAD_THRESHOLD_KB,
        }
    }
}

/// The server's default soft limit for task outputs, in KB.
pub const DEFAULT_EXTERNAL_PAYLOAD_THRESHOLD_KB: u64 = 3072;

impl RuntimeOptions {
    /// Options for `servers`, journal off.
    pub fn new(servers: Vec<ServerConfig>) -> Self {
        Self {
            servers,
            ..Self::default()
        }
    }

    /// Sets [`external_payload_threshold_kb`](Self::external_payload_threshold_kb), as a
    /// binding's `external_payload_threshold_kb` option does: 0 is refused, naming the option.
    ///
    /// ```
    /// # use conductor_worker::RuntimeOptions;
    /// let mut options = RuntimeOptions::default();
    /// options.set_external_payload_threshold_kb(512).unwrap();
    /// assert_eq!(options.external_payload_threshold_bytes(), 512 * 1024);
    /// let err = options.set_external_payload_threshold_kb(0).unwrap_err().to_string();
    /// assert!(err.contains("external_payload_threshold_kb"), "{err}");
    /// ```
    pub fn set_external_payload_threshold_kb(&mut self, kb: u64) -> Result<()> {
        if kb == 0 {
            return Err(Error::config(
                "external_payload_threshold_kb",
                "0",
                "expected a number of KB from 1",
            ));
        }
        self.external_payload_threshold_kb = kb;
        Ok(())
    }

    /// [`external_payload_threshold_kb`](Self::external_payload_threshold_kb) in bytes.
    pub fn external_payload_threshold_bytes(&self) -> usize {
        usize::try_from(self.external_payload_threshold_kb.saturating_mul(1024))
            .unwrap_or(usize::MAX)
    }

    /// Servers and journal from the environment (see [`ServerConfig::from_env`] and
    /// [`JournalConfig::from_env`]); `CONDUCTOR_WORKER_METRICS_PORT` switches metrics on.
    pub fn from_env(env: &dyn Env) -> Result<Self> {
        let mut options = Self {
            servers: ServerConfig::from_env(env)?,
            journal: JournalConfig::from_env(env),
            ..Self::default()
        };
        if let Some(port) = env.get("CONDUCTOR_WORKER_METRICS_PORT") {
            options.metrics_port = Some(port.trim().parse().map_err(|_| {
                Error::config(
                    "CONDUCTOR_WORKER_METRICS_PORT",
                    &port,
                    "expected a port number",
                )
            })?);
        }
        if let Some(v) = env.get("CONDUCTOR_BREAKER_FAILURES") {
            options.breaker_failure_threshold = parse_number("CONDUCTOR_BREAKER_FAILURES", &v)?
                .try_into()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    Error::config("CONDUCTOR_BREAKER_FAILURES", &v, "expected a number from 1")
                })?;
        }
        if let Some(v) = env.get("CONDUCTOR_BREAKER_RESET_SECONDS") {
            let secs = parse_number("CONDUCTOR_BREAKER_RESET_SECONDS", &v)?;
            options.breaker_reset = Duration::from_secs(secs as u64);
        }
        const THRESHOLD: &str = "CONDUCTOR_WORKER_EXTERNAL_PAYLOAD_THRESHOLD_KB";
        if let Some(v) = env.get(THRESHOLD) {
            options.external_payload_threshold_kb = parse_number(THRESHOLD, &v)?
                .try_into()
                .ok()
                .filter(|kb| *kb > 0)
                .ok_or_else(|| Error::config(THRESHOLD, &v, "expected a number of KB from 1"))?;
        }
        if let Some(path) = env.get("CONDUCTOR_CA_BUNDLE") {
            // Checked here so that a wrong path is an error naming the variable, at start-up.
            let bad = |reason: String| Error::config("CONDUCTOR_CA_BUNDLE", &path, reason);
            let pem = std::fs::read(path.trim()).map_err(|e| bad(e.to_string()))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("the file holds no PEM certificate".into()));
            }
            options.ca_bundle = Some(PathBuf::from(path.trim()));
        }
        Ok(options)
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
            let names_it = err.contains(key) || err.contains("option");
            assert!(
                names_it && err.contains(value.trim_end_matches("000")),
                "{err}"
            );
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
