//! Core errors as Ruby exceptions of the `ConductorWorker::Error` family (defined in
//! `lib/conductor_worker/errors.rb`): the class is the one named by the error's kind (one per
//! kind of `conductor_worker::ERROR_KINDS`, which the tests check), and the error's fields
//! (`setting`, `server`, `status`, ..., `retryable`) are its attributes.

use conductor_worker::Error as CoreError;
use magnus::value::ReprValue;
use magnus::{Error, ExceptionClass, RArray, RModule, Ruby, prelude::*};

use crate::json;

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
    let exception = match class(ruby, class_name).new_instance((message,)) {
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

/// A core error as the `ConductorWorker::<kind>` exception, its fields as attributes.
pub(crate) fn to_ruby(error: CoreError) -> Error {
    let Ok(ruby) = Ruby::get() else {
        return off_ruby_thread(error.to_string());
    };
    let attrs = error
        .fields()
        .into_iter()
        .map(|(name, value)| (name, json::field_to_ruby(&ruby, value)))
        .collect();
    raise(&ruby, error.kind(), error.to_string(), attrs)
}

/// The kinds of core errors with their fields, for the tests to check the classes against.
pub(crate) fn error_kinds(ruby: &Ruby) -> Result<RArray, Error> {
    let kinds = ruby.ary_new();
    for (kind, fields) in conductor_worker::ERROR_KINDS {
        kinds.push((*kind, fields.to_vec()))?;
    }
    Ok(kinds)
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
