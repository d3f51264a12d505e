//! [`RuntimeOptions`]: what the whole runtime (all workers, all servers) is configured with,
//! and the table of the options a host sets in code (and the environment sets by name), from
//! which the bindings, their stubs and the documentation take them.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value as Json;

use super::option::{
    Conversion, HostType, OptionInfo, Refusal, SECONDS, shown, shown_default, unknown_option,
};
use super::{Credentials, Env, JournalConfig, ServerConfig};
use crate::api::JsonObject;
use crate::backoff::Backoff;
use crate::error::{Error, Result};

/// Options of the whole runtime (all workers, all servers).
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// The servers to poll. Every task's result goes back to the server it came from.
    pub servers: Vec<ServerConfig>,
    /// The journal of undelivered results.
    pub journal: JournalConfig,
    /// Serve Prometheus metrics and the health probes on this port (0 picks a free one).
    pub metrics_port: Option<u16>,
    /// The address the metrics and health endpoint binds: loopback by default; `0.0.0.0` (or
    /// `::`) lets the kubelet and Prometheus reach it on the pod's IP.
    pub metrics_host: std::net::IpAddr,
    /// How often each worker's queue depth (`task_queue_depth`) is read from its servers;
    /// zero turns it off. Read only while the metrics endpoint is on.
    pub queue_depth_interval: Duration,
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
    pub breaker_failures: u32,
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
            metrics_host: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            queue_depth_interval: Duration::from_secs(10),
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
            breaker_failures: 3,
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

    /// [`external_payload_threshold_kb`](Self::external_payload_threshold_kb) in bytes.
    pub fn external_payload_threshold_bytes(&self) -> usize {
        usize::try_from(self.external_payload_threshold_kb.saturating_mul(1024))
            .unwrap_or(usize::MAX)
    }

    /// Everything from the environment: servers ([`ServerConfig::from_env`]), the journal
    /// ([`JournalConfig::from_env`]), `CONDUCTOR_CA_BUNDLE`, and the variable of each option
    /// in [`RuntimeOptions::options`] that has one (`CONDUCTOR_WORKER_METRICS_PORT` switches
    /// metrics on).
    pub fn from_env(env: &dyn Env) -> Result<Self> {
        let mut options = Self {
            servers: ServerConfig::from_env(env)?,
            journal: JournalConfig::from_env(env),
            ..Self::default()
        };
        options.apply_env(env)?;
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

/// Declares the options of [`RuntimeOptions`] a host sets in code: for each its doc comment,
/// `name => field: conversion`, the environment variable that sets it (`""` where
/// [`RuntimeOptions::from_env`] reads it from several), and how to show the default if not by
/// its value.
macro_rules! runtime_host_options {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident => $field:ident: $conversion:expr, env $env:literal $(, shown $shown:literal)?;
    )*) => {
        impl RuntimeOptions {
            /// Every option a host sets in code: name, documentation, type, environment
            /// variable, default.
            ///
            /// ```
            /// let names: Vec<_> = conductor_worker::RuntimeOptions::options()
            ///     .into_iter().map(|o| o.name).collect();
            /// assert!(names.contains(&"servers") && names.contains(&"metrics_port"));
            /// ```
            pub fn options() -> Vec<OptionInfo> {
                let defaults = Self::default();
                vec![$(OptionInfo {
                    name: stringify!($name),
                    doc: [$($doc),*].map(str::trim).join(" "),
                    host_type: $conversion.host_type,
                    env: [$env].into_iter().filter(|e| !e.is_empty()).collect(),
                    default: shown_default(($conversion.show)(&defaults.$field), &[$($shown)?]),
                }),*]
            }

            /// Sets option `name` from a host value; `Ok(false)` if there is no such option.
            fn set_from_host(&mut self, name: &str, value: &Json) -> std::result::Result<bool, Refusal> {
                match name {
                    $(stringify!($name) => self.$field = ($conversion.from_host)(value, "")?,)*
                    _ => return Ok(false),
                }
                Ok(true)
            }

            /// Reads each option that has a variable of its own from the environment.
            fn apply_env(&mut self, env: &dyn Env) -> Result<()> {
                $(
                    if let Some(text) = Some($env).filter(|e| !e.is_empty()).and_then(|e| env.get(e)) {
                        self.$field = ($conversion.from_env)(&text, "", &self.$field)
                            .map_err(|refusal| refusal.into_error($env, &text))?;
                    }
                )*
                Ok(())
            }
        }
    };
}

runtime_host_options! {
    /// The servers to poll: each a URL (`http://host:8080/api`) or `[url, key_id, key_secret]`.
    servers => servers: SERVERS, env "",
        shown "CONDUCTOR_SERVER_URL with CONDUCTOR_AUTH_KEY and CONDUCTOR_AUTH_SECRET";
    /// Where results not yet delivered at exit are kept for the next start: a file path, or
    /// `off`.
    journal => journal: JOURNAL, env "",
        shown "CONDUCTOR_WORKER_JOURNAL, else $XDG_STATE_HOME/conductor-worker/journal.jsonl";
    /// Serve Prometheus metrics and the health probes on this port (0 picks a free one).
    metrics_port => metrics_port: PORT, env "CONDUCTOR_WORKER_METRICS_PORT";
    /// The address the metrics endpoint binds (`0.0.0.0` or `::` to be reachable from outside).
    metrics_host => metrics_host: IP_ADDRESS, env "CONDUCTOR_WORKER_METRICS_HOST";
    /// Seconds between reads of each worker's queue depth from its servers (0: never).
    queue_depth_interval => queue_depth_interval: SECONDS, env "CONDUCTOR_WORKER_QUEUE_DEPTH_INTERVAL";
    /// Timeout of requests other than polls, in seconds.
    request_timeout => request_timeout: SECONDS, env "";
    /// A server's circuit breaker opens after this many failed polls in a row.
    breaker_failures => breaker_failures: AT_LEAST_ONE, env "CONDUCTOR_BREAKER_FAILURES";
    /// An open breaker lets one probe poll through after this many seconds.
    breaker_reset => breaker_reset: SECONDS, env "CONDUCTOR_BREAKER_RESET_SECONDS";
    /// Outputs larger than this many KB of JSON go to the server's external payload storage.
    external_payload_threshold_kb => external_payload_threshold_kb: KB,
        env "CONDUCTOR_WORKER_EXTERNAL_PAYLOAD_THRESHOLD_KB";
}

impl RuntimeOptions {
    /// The environment's options ([`RuntimeOptions::from_env`]) with those a host gave in
    /// code on top: each entry of `given` names an option of [`RuntimeOptions::options`] and
    /// holds its value as JSON (`null` means "not given"). An unknown name or a bad value is
    /// an error naming the option and the value.
    ///
    /// ```
    /// use conductor_worker::RuntimeOptions;
    /// use conductor_worker::config::MapEnv;
    /// let env = MapEnv::from([("CONDUCTOR_SERVER_URL", "http://a:8080/api")]);
    /// let given = serde_json::json!({"metrics_port": 9100, "request_timeout": 2.5});
    /// let options = RuntimeOptions::from_host(given.as_object().unwrap(), &env).unwrap();
    /// assert_eq!((options.servers.len(), options.metrics_port), (1, Some(9100)));
    ///
    /// let bad = serde_json::json!({"external_payload_threshold_kb": 0});
    /// let err = RuntimeOptions::from_host(bad.as_object().unwrap(), &env).unwrap_err();
    /// assert!(err.to_string().contains("external_payload_threshold_kb"), "{err}");
    /// ```
    pub fn from_host(given: &JsonObject, env: &dyn Env) -> Result<Self> {
        let mut options = Self::from_env(env)?;
        for (name, value) in given.iter().filter(|(_, v)| !v.is_null()) {
            let setting = format!("runtime option {name}");
            match options.set_from_host(name, value) {
                Ok(true) => {}
                Ok(false) => return Err(unknown_option(setting, name, &Self::options())),
                Err(refusal) => {
                    return Err(refusal.into_error(setting, shown(&without_credentials(value))));
                }
            }
        }
        Ok(options)
    }
}

/// A port number, or none.
const PORT: Conversion<Option<u16>> = Conversion {
    host_type: HostType::Integer,
    from_host: |v, _| {
        v.as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| "expected a port number".into())
    },
    from_env: |text, _, _| {
        text.trim()
            .parse()
            .map(Some)
            .map_err(|_| "expected a port number".into())
    },
    show: |port| port.map_or_else(|| "off".to_owned(), |p| p.to_string()),
};

/// An IP address (`127.0.0.1`, `0.0.0.0`, `::`).
const IP_ADDRESS: Conversion<std::net::IpAddr> = Conversion {
    host_type: HostType::Text,
    from_host: |v, _| {
        v.as_str()
            .and_then(|text| text.trim().parse().ok())
            .ok_or_else(|| "expected an IP address such as 127.0.0.1, 0.0.0.0 or ::".into())
    },
    from_env: |text, _, _| {
        text.trim()
            .parse()
            .map_err(|_| "expected an IP address such as 127.0.0.1, 0.0.0.0 or ::".into())
    },
    show: std::net::IpAddr::to_string,
};

/// A count from 1.
const AT_LEAST_ONE: Conversion<u32> = Conversion {
    host_type: HostType::Integer,
    from_host: |v, _| positive(v.as_u64(), "expected a number from 1"),
    from_env: |text, _, _| positive(text.trim().parse().ok(), "expected a number from 1"),
    show: u32::to_string,
};

/// A size in KB, from 1.
const KB: Conversion<u64> = Conversion {
    host_type: HostType::Integer,
    from_host: |v, _| positive(v.as_u64(), "expected a number of KB from 1"),
    from_env: |text, _, _| positive(text.trim().parse().ok(), "expected a number of KB from 1"),
    show: u64::to_string,
};

fn positive<T: TryFrom<u64>>(n: Option<u64>, reason: &str) -> std::result::Result<T, Refusal> {
    n.filter(|n| *n > 0)
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| reason.into())
}

/// A journal path, or `off`.
const JOURNAL: Conversion<JournalConfig> = Conversion {
    host_type: HostType::Path,
    from_host: |v, _| {
        v.as_str()
            .map(JournalConfig::parse)
            .ok_or_else(|| "expected a file path or \"off\"".into())
    },
    from_env: |text, _, _| Ok(JournalConfig::parse(text)),
    show: |journal| match journal {
        JournalConfig::Disabled => "off".to_owned(),
        JournalConfig::File(path) => path.display().to_string(),
    },
};

/// A list of servers: URLs, or `[url, key_id, key_secret]` for a server with auth.
const SERVERS: Conversion<Vec<ServerConfig>> = Conversion {
    host_type: HostType::Servers,
    from_host: |v, _| {
        v.as_array()
            .ok_or_else(|| Refusal::from("expected a list of server URLs"))?
            .iter()
            .map(host_server)
            .collect()
    },
    from_env: |_, _, _| Err("servers come from CONDUCTOR_SERVER_URL".into()),
    show: |servers| {
        let urls: Vec<&str> = servers.iter().map(|s| s.url.as_str()).collect();
        urls.join(",")
    },
};

fn host_server(v: &Json) -> std::result::Result<ServerConfig, Refusal> {
    let parts: Vec<Option<&str>> = match v {
        Json::String(url) => vec![Some(url)],
        Json::Array(items) => items.iter().map(Json::as_str).collect(),
        _ => vec![None],
    };
    let server = |url: &str| ServerConfig::new(url).map_err(Refusal::Inner);
    match parts.as_slice() {
        [Some(url)] | [Some(url), None, None] => server(url),
        [Some(url), Some(key), Some(secret)] => {
            Ok(server(url)?.with_credentials(Credentials::new(*key, *secret)))
        }
        [Some(url), ..] => {
            Err(format!("server {url}: give both key_id and key_secret, or neither").into())
        }
        _ => Err("expected a URL or [url, key_id, key_secret]".into()),
    }
}

/// `value` with every list inside a list cut to its first item: a server given as
/// `[url, key_id, key_secret]` is shown by its URL only.
fn without_credentials(value: &Json) -> Json {
    match value {
        Json::Array(items) => Json::Array(
            items
                .iter()
                .map(|item| match item {
                    Json::Array(parts) => parts.first().cloned().unwrap_or(Json::Null),
                    other => other.clone(),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}
