//! Core errors as Ruby exceptions of the `ConductorWorker::Error` family (defined in
//! `lib/conductor_worker/errors.rb`), with the fields a caller may branch on as attributes.

use conductor_worker::Error as CoreError;
use magnus::value::ReprValue;
use magnus::{Error, ExceptionClass, IntoValue, RModule, Ruby, prelude::*};

fn class(ruby: &Ruby, name: &str) -> ExceptionClass {
    ruby.class_object()
        .const_get::<_, RModule>("ConductorWorker")
        .and_then(|m| m.const_get::<_, ExceptionClass>(name))
        .unwrap_or_else(|_| ruby.exception_runtime_error())
}

fn raise(
    ruby: &Ruby,
    class_name: &str,
    message: String,
    attrs: Vec<(&str, magnus::Value)>,
) -> Error {
    let class = class(ruby, class_name);
    let exception = match class.new_instance((message.clone(),)) {
        Ok(e) => e,
        Err(e) => return e,
    };
    for (name, value) in attrs {
        let _ = exception
            .as_value()
            .funcall::<_, _, magnus::Value>("instance_variable_set", (format!("@{name}"), value));
    }
    Error::from(exception)
}

/// A core error as the matching `ConductorWorker::*Error`.
pub(crate) fn to_ruby(error: CoreError) -> Error {
    let Ok(ruby) = Ruby::get() else {
        return off_ruby_thread(error.to_string());
    };
    let ruby = &ruby;
    let message = error.to_string();
    match &error {
        CoreError::Config { setting, value, .. } => raise(
            ruby,
            "ConfigError",
            message,
            vec![
                ("setting", setting.as_str().into_value_with(ruby)),
                ("value", value.as_str().into_value_with(ruby)),
            ],
        ),
        CoreError::Transport {
            server, timed_out, ..
        } => raise(
            ruby,
            "TransportError",
            message,
            vec![
                ("server", server.as_str().into_value_with(ruby)),
                ("timed_out", timed_out.into_value_with(ruby)),
            ],
        ),
        CoreError::Status {
            server,
            status,
            endpoint,
            ..
        } => raise(
            ruby,
            "StatusError",
            message,
            vec![
                ("server", server.as_str().into_value_with(ruby)),
                ("status", status.into_value_with(ruby)),
                ("endpoint", endpoint.into_value_with(ruby)),
            ],
        ),
        CoreError::Decode { server, .. } => raise(
            ruby,
            "DecodeError",
            message,
            vec![("server", server.as_str().into_value_with(ruby))],
        ),
        CoreError::Auth { server, .. } => raise(
            ruby,
            "AuthError",
            message,
            vec![("server", server.as_str().into_value_with(ruby))],
        ),
        CoreError::UnknownTask { task_id, .. } => raise(
            ruby,
            "UnknownTaskError",
            message,
            vec![("task_id", task_id.as_str().into_value_with(ruby))],
        ),
        CoreError::UnknownWorker(_) => raise(ruby, "UnknownWorkerError", message, vec![]),
        CoreError::NotRunning(_) => raise(ruby, "NotRunningError", message, vec![]),
        CoreError::Journal { path, .. } => raise(
            ruby,
            "JournalError",
            message,
            vec![("path", path.as_str().into_value_with(ruby))],
        ),
        CoreError::Metrics { port, .. } => raise(
            ruby,
            "MetricsError",
            message,
            vec![("port", port.into_value_with(ruby))],
        ),
        _ => raise(ruby, "Error", message, vec![]),
    }
}

/// A bug or an impossible state: `ConductorWorker::Error`.
pub(crate) fn internal(message: impl Into<String>) -> Error {
    match Ruby::get() {
        Ok(ruby) => raise(&ruby, "Error", message.into(), vec![]),
        Err(_) => off_ruby_thread(message.into()),
    }
}

/// Every caller runs on a Ruby thread; this is only the type-correct answer if one did not.
#[allow(deprecated)]
fn off_ruby_thread(message: String) -> Error {
    Error::new(magnus::exception::runtime_error(), message)
}
