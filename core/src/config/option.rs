//! What an option is, wherever it is set: its name, its documentation, how a host language
//! gives it (a JSON value converted from a Python dict or Ruby Hash), how the environment
//! gives it (text), how it is shown back, and how it is checked. The option tables of
//! [`WorkerOptions`](super::WorkerOptions) and [`RuntimeOptions`](super::RuntimeOptions) are
//! built from these, and everything a binding or a stub generator needs comes from the tables.

use std::time::Duration;

use serde_json::Value as Json;

use crate::api::TaskDef;
use crate::error::Error;

/// The type of an option as a host language sees it (for generated stubs and documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostType {
    /// A whole number.
    Integer,
    /// A number of seconds (fractions allowed).
    Seconds,
    /// A string.
    Text,
    /// True or false.
    Flag,
    /// `true` (the default task definition) or an object of task definition fields.
    TaskDef,
    /// A path, or `off`.
    Path,
    /// A list of server URLs, each optionally with a key id and secret.
    Servers,
}

impl HostType {
    /// The Python annotation of a value of this type.
    pub fn python(self) -> &'static str {
        match self {
            Self::Integer => "int",
            Self::Seconds => "float",
            Self::Text | Self::Path => "str",
            Self::Flag => "bool",
            Self::TaskDef => "bool | dict[str, Any]",
            Self::Servers => "Sequence[str | tuple[str, str | None, str | None]]",
        }
    }

    /// How the Ruby documentation names a value of this type.
    pub fn ruby(self) -> &'static str {
        match self {
            Self::Integer => "Integer",
            Self::Seconds => "Numeric (seconds)",
            Self::Text | Self::Path => "String",
            Self::Flag => "true or false",
            Self::TaskDef => "true or a Hash of task definition fields",
            Self::Servers => "Array of URL Strings or [url, key_id, key_secret]",
        }
    }
}

/// One option as hosts, the environment and the documentation know it.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionInfo {
    /// The name in code (`concurrency`, `poll_interval`, ...).
    pub name: &'static str,
    /// What it does (the field's doc comment).
    pub doc: String,
    /// Its type in a host language.
    pub host_type: HostType,
    /// The environment names it is read from, in order of precedence (for worker options,
    /// property names: `CONDUCTOR_WORKER_<TYPE>_<PROP>`, ...).
    pub env: Vec<&'static str>,
    /// The default, shown as a value from the environment would be written.
    pub default: String,
}

/// Why a value was refused: a reason (the caller adds the setting's name and the value), or
/// the error of a part of it that names itself (a server URL, a task definition field).
#[derive(Debug)]
pub enum Refusal {
    /// What a valid value looks like.
    Reason(String),
    /// An error that already names the setting and the value.
    Inner(Error),
}

impl From<&str> for Refusal {
    fn from(reason: &str) -> Self {
        Self::Reason(reason.to_owned())
    }
}

impl From<String> for Refusal {
    fn from(reason: String) -> Self {
        Self::Reason(reason)
    }
}

impl Refusal {
    /// As an error of `setting`, whose value is shown as `value`.
    pub(crate) fn into_error(self, setting: impl Into<String>, value: impl Into<String>) -> Error {
        match self {
            Self::Reason(reason) => Error::config(setting, value, reason),
            Self::Inner(error) => error,
        }
    }
}

/// How values of type `T` are read and shown. `from_host` and `from_env` say why a value is
/// refused; the caller adds the setting's name.
pub struct Conversion<T: 'static> {
    /// The type hosts give.
    pub host_type: HostType,
    /// From a host value (never JSON null: a null means "not given" and is skipped). The
    /// second argument is the owner's name (a worker's task type).
    pub from_host: fn(&Json, &str) -> Result<T, Refusal>,
    /// From environment text; the current value is given for options that refine it.
    pub from_env: fn(&str, &str, &T) -> Result<T, Refusal>,
    /// As the environment would write it (for defaults and error messages).
    pub show: fn(&T) -> String,
}

/// A whole number (`concurrency`).
pub const COUNT: Conversion<usize> = Conversion {
    host_type: HostType::Integer,
    from_host: |v, _| {
        v.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| "expected a whole number".into())
    },
    from_env: |text, _, _| {
        text.trim()
            .parse()
            .map_err(|_| "expected a whole number".into())
    },
    show: |n| n.to_string(),
};

/// A duration: seconds in code (fractions allowed), milliseconds in the environment (the
/// official SDKs' unit).
pub const SECONDS_OR_ENV_MILLIS: Conversion<Duration> = Conversion {
    host_type: HostType::Seconds,
    from_host: |v, _| host_seconds(v),
    from_env: |text, _, _| {
        text.trim()
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| "expected a whole number of milliseconds".into())
    },
    show: |d| format!("{}ms", d.as_millis()),
};

/// A duration in seconds, in code and in the environment.
pub const SECONDS: Conversion<Duration> = Conversion {
    host_type: HostType::Seconds,
    from_host: |v, _| host_seconds(v),
    from_env: |text, _, _| {
        text.trim()
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| "expected a whole number of seconds".into())
    },
    show: |d| format!("{}s", d.as_secs_f64()),
};

fn host_seconds(v: &Json) -> Result<Duration, Refusal> {
    v.as_f64()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| "expected a number of seconds >= 0".into())
}

/// A string, kept as given.
pub const TEXT: Conversion<String> = Conversion {
    host_type: HostType::Text,
    from_host: |v, _| host_text(v),
    from_env: |text, _, _| Ok(text.to_owned()),
    show: String::clone,
};

/// A string where empty means "none" (`domain`).
pub const OPTIONAL_TEXT: Conversion<Option<String>> = Conversion {
    host_type: HostType::Text,
    from_host: |v, _| host_text(v).map(non_empty),
    from_env: |text, _, _| Ok(non_empty(text.to_owned())),
    show: |v| v.clone().unwrap_or_default(),
};

fn host_text(v: &Json) -> Result<String, Refusal> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| "expected a string".into())
}

fn non_empty(text: String) -> Option<String> {
    let trimmed = text.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// True or false; the environment also takes `1`/`0`, `yes`/`no`, `on`/`off`.
pub const FLAG: Conversion<bool> = Conversion {
    host_type: HostType::Flag,
    from_host: |v, _| v.as_bool().ok_or_else(|| "expected true or false".into()),
    from_env: |text, _, _| parse_flag(text),
    show: bool::to_string,
};

fn parse_flag(text: &str) -> Result<bool, Refusal> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

/// A task definition to register: `true` for the defaults, or an object of the server's task
/// definition fields on top of them; the environment switches it on (keeping fields given in
/// code) or off.
pub const TASK_DEF: Conversion<Option<TaskDef>> = Conversion {
    host_type: HostType::TaskDef,
    from_host: |v, owner| match v {
        Json::Bool(false) => Ok(None),
        Json::Bool(true) => Ok(Some(TaskDef::new(owner))),
        Json::Object(fields) => TaskDef::with_fields(owner, fields.clone())
            .map(Some)
            .map_err(Refusal::Inner),
        _ => Err("expected true, false or an object of task definition fields".into()),
    },
    from_env: |text, owner, current| {
        Ok(parse_flag(text)?.then(|| current.clone().unwrap_or_else(|| TaskDef::new(owner))))
    },
    show: |v| v.is_some().to_string(),
};

/// A host value as a setting's error message shows it: JSON, cut at 200 characters.
pub(crate) fn shown(value: &Json) -> String {
    let text = match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.chars().take(200).collect()
}

/// How a default is shown: as given (`shown`), else by its value.
pub(crate) fn shown_default(value: String, shown: &[&str]) -> String {
    shown.first().map_or(value, |s| (*s).to_owned())
}

/// The error for an option `name` that `options` does not have, listing those it has.
pub(crate) fn unknown_option(setting: String, name: &str, options: &[OptionInfo]) -> Error {
    let known: Vec<_> = options.iter().map(|o| o.name).collect();
    let reason = format!(
        "there is no such option; the options are {}",
        known.join(", ")
    );
    Error::config(setting, name, reason)
}
