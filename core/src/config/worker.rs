//! [`WorkerOptions`]: how one worker polls and runs, declared once as a table from which the
//! struct, its defaults, the host-language setters, the environment overrides, the checks and
//! the documentation of every option are made. A new option is one entry here; Python, Ruby
//! and the environment take it with no change anywhere else.

use std::time::Duration;

use serde_json::Value as Json;

use super::Env;
use super::option::{
    COUNT, FLAG, OPTIONAL_TEXT, OptionInfo, Refusal, SECONDS_OR_ENV_MILLIS, TASK_DEF, TEXT, shown,
    shown_default, unknown_option,
};
use crate::api::{JsonObject, TaskDef};
use crate::error::{Error, Result};

/// Declares [`WorkerOptions`]: for each option its doc comment, `name: Type = default`, its
/// [`Conversion`](super::option::Conversion), the environment property names if they are not
/// just its name (official SDK aliases), how to show the default if not by its value (one
/// that depends on the machine), and a check returning why a value is refused.
macro_rules! worker_options {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $ty:ty = $default:expr, $conversion:expr,
        $(env [$($env:literal),+],)? $(shown $shown:literal,)? check $check:expr;
    )*) => {
        /// How one worker (one task type, optionally in one domain) polls and runs. Every
        /// field but `task_type` is an option hosts set by name ([`WorkerOptions::from_host`])
        /// and the environment overrides ([`WorkerOptions::apply_env`]).
        #[derive(Debug, Clone, PartialEq)]
        pub struct WorkerOptions {
            /// The task type to poll.
            pub task_type: String,
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl WorkerOptions {
            /// The defaults for `task_type`.
            pub fn new(task_type: impl Into<String>) -> Self {
                Self { task_type: task_type.into(), $( $field: $default, )* }
            }

            /// Every option: name, documentation, host type, environment names, default.
            ///
            /// ```
            /// let names: Vec<_> = conductor_worker::WorkerOptions::options()
            ///     .into_iter().map(|o| o.name).collect();
            /// assert!(names.contains(&"concurrency") && names.contains(&"register"));
            /// ```
            pub fn options() -> Vec<OptionInfo> {
                let defaults = Self::new("");
                vec![$(OptionInfo {
                    name: stringify!($field),
                    doc: [$($doc),*].map(str::trim).join(" "),
                    host_type: $conversion.host_type,
                    env: env_names(stringify!($field), &[$($($env),+)?]),
                    default: shown_default(($conversion.show)(&defaults.$field), &[$($shown)?]),
                }),*]
            }

            /// Sets option `name` from a host value; `Ok(false)` if there is no such option.
            fn set_from_host(&mut self, name: &str, value: &Json) -> std::result::Result<bool, Refusal> {
                match name {
                    $(stringify!($field) => {
                        self.$field = ($conversion.from_host)(value, &self.task_type)?;
                    })*
                    _ => return Ok(false),
                }
                Ok(true)
            }

            /// Sets option `name` from environment text.
            fn set_from_env(&mut self, name: &str, text: &str) -> std::result::Result<(), Refusal> {
                match name {
                    $(stringify!($field) => {
                        self.$field = ($conversion.from_env)(text, &self.task_type, &self.$field)?;
                    })*
                    _ => {}
                }
                Ok(())
            }

            /// The first option whose value its check refuses: `(name, value shown, reason)`.
            fn refused(&self) -> Option<(&'static str, String, String)> {
                $(
                    let check: fn(&$ty) -> std::result::Result<(), &'static str> = $check;
                    if let Err(reason) = check(&self.$field) {
                        let shown = ($conversion.show)(&self.$field);
                        return Some((stringify!($field), shown, reason.to_owned()));
                    }
                )*
                None
            }
        }
    };
}

worker_options! {
    /// The domain to poll in, if any.
    domain: Option<String> = None, OPTIONAL_TEXT, check |_| Ok(());
    /// How many tasks may run at once (the number of executors).
    concurrency: usize = 1, COUNT, env ["thread_count", "concurrency"],
        check |n| if (1..=100_000).contains(n) { Ok(()) } else { Err("must be between 1 and 100000") };
    /// The longest wait between polls when there is no work; empty polls back off
    /// exponentially from 1 ms up to this (the official SDKs stop at 1.024 s whatever is set).
    poll_interval: Duration = Duration::from_millis(100), SECONDS_OR_ENV_MILLIS,
        env ["poll_interval", "poll_interval_millis"],
        check |d| if *d <= Duration::from_secs(3600) { Ok(()) } else { Err("must be at most one hour") };
    /// How long the server holds an empty poll open (long poll, at most 5 s).
    poll_timeout: Duration = Duration::from_millis(1000), SECONDS_OR_ENV_MILLIS,
        check |d| if *d <= Duration::from_secs(5) { Ok(()) } else { Err("the server's long poll is at most 5000 ms") };
    /// Sent with polls and results; defaults to the host name.
    worker_id: String = default_worker_id(), TEXT, shown "the host name",
        check |id| if id.trim().is_empty() { Err("must not be empty") } else { Ok(()) };
    /// Extend the lease of running tasks at 80 % of their `responseTimeoutSeconds`.
    lease_extend: bool = true, FLAG, env ["lease_extend", "lease_extend_enabled"], check |_| Ok(());
    /// Start paused (no polling until resumed).
    paused: bool = false, FLAG, check |_| Ok(());
    /// Register this task definition on every server at start: `true` for the defaults, or the
    /// server's task definition fields (`{"retryCount": 5, "responseTimeoutSeconds": 120}`).
    register: Option<TaskDef> = None, TASK_DEF, env ["register_task_def"], check |_| Ok(());
}

/// The environment property names of an option: the aliases given, else its name.
fn env_names(name: &'static str, aliases: &[&'static str]) -> Vec<&'static str> {
    if aliases.is_empty() {
        vec![name]
    } else {
        aliases.to_vec()
    }
}

impl WorkerOptions {
    /// The options a host gave in code: each entry of `given` names an option and holds its
    /// value as JSON (a `null` means "not given"). Checked at once: an unknown name or a bad
    /// value is an error naming the worker, the option and the value.
    ///
    /// ```
    /// use conductor_worker::WorkerOptions;
    /// let given = serde_json::json!({"concurrency": 4, "poll_interval": 0.25, "domain": null});
    /// let options = WorkerOptions::from_host("greet", given.as_object().unwrap()).unwrap();
    /// assert_eq!(options.concurrency, 4);
    /// assert_eq!(options.poll_interval.as_millis(), 250);
    ///
    /// let typo = serde_json::json!({"concurency": 4});
    /// let err = WorkerOptions::from_host("greet", typo.as_object().unwrap()).unwrap_err();
    /// assert!(err.to_string().contains("concurency") && err.to_string().contains("concurrency"));
    /// ```
    pub fn from_host(task_type: impl Into<String>, given: &JsonObject) -> Result<Self> {
        let mut options = Self::new(task_type);
        options.check_task_type()?;
        for (name, value) in given.iter().filter(|(_, v)| !v.is_null()) {
            match options.set_from_host(name, value) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(unknown_option(
                        options.setting(name),
                        name,
                        &Self::options(),
                    ));
                }
                Err(refusal) => return Err(refusal.into_error(options.setting(name), shown(value))),
            }
        }
        options.check(&|name| options.setting(name))?;
        Ok(options)
    }

    /// Applies the environment overrides (see the [module docs](super) for names and
    /// precedence). An invalid value is an error naming the variable that set it.
    pub fn apply_env(&mut self, env: &dyn Env) -> Result<()> {
        // The variable each option was read from, so that a refused value names it.
        let mut sources: Vec<(&str, String)> = Vec::new();
        for option in Self::options() {
            let Some((key, text)) = self.lookup(env, &option.env) else {
                continue;
            };
            self.set_from_env(option.name, &text)
                .map_err(|refusal| refusal.into_error(&key, &text))?;
            sources.push((option.name, key));
        }
        self.check(&|name| match sources.iter().find(|(n, _)| *n == name) {
            Some((_, key)) => format!("{key} ({})", self.setting(name)),
            None => self.setting(name),
        })
    }

    /// The first variable that sets one of `props`, in the documented precedence.
    fn lookup(&self, env: &dyn Env, props: &[&str]) -> Option<(String, String)> {
        let token = env_token(&self.task_type);
        let specific = props.iter().flat_map(|prop| {
            [
                format!("conductor.worker.{}.{prop}", self.task_type),
                format!("CONDUCTOR_WORKER_{token}_{}", prop.to_ascii_uppercase()),
            ]
        });
        let all = props.iter().flat_map(|prop| {
            [
                format!("conductor.worker.all.{prop}"),
                format!("CONDUCTOR_WORKER_ALL_{}", prop.to_ascii_uppercase()),
            ]
        });
        specific
            .chain(all)
            .find_map(|key| env.get(&key).map(|value| (key, value)))
    }

    fn check(&self, setting: &dyn Fn(&str) -> String) -> Result<()> {
        self.check_task_type()?;
        match self.refused() {
            Some((name, value, reason)) => Err(Error::config(setting(name), value, reason)),
            None => Ok(()),
        }
    }

    fn check_task_type(&self) -> Result<()> {
        let refuse = |reason| Err(Error::config("task_type", &self.task_type, reason));
        if self.task_type.trim().is_empty() {
            return refuse("must not be empty");
        }
        if self.task_type.contains(['/', '?', '#', '%']) {
            return refuse("must not contain '/', '?', '#' or '%'");
        }
        Ok(())
    }

    fn setting(&self, name: &str) -> String {
        format!("worker {:?} option {name}", self.task_type)
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
        self.register = Some(def);
        self
    }
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
