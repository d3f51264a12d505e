//! Task input and output between `serde_json` values and Ruby objects, converted in Rust with
//! the GVL held (no Ruby `JSON` round trip, no Ruby object ever reaches a tokio thread).

use conductor_worker::api::JsonObject;
use conductor_worker::telemetry::EventField;
use magnus::r_hash::ForEach;
use magnus::value::ReprValue;
use magnus::{Error, Float, Integer, IntoValue, RArray, RHash, RString, Ruby, Symbol, Value};
use serde_json::{Map, Number, Value as Json};

/// Deeper output is almost certainly a cycle (a hash that contains itself); it is also as deep
/// as the core accepts from a server (serde_json's limit), and shallow enough for a thread's stack.
const MAX_DEPTH: usize = 128;

/// A JSON value as Ruby objects: objects become Hashes with String keys (Symbols with
/// `symbolize_keys`), integers Integer, other numbers Float.
pub(crate) fn to_ruby(ruby: &Ruby, value: &Json, symbolize_keys: bool) -> Value {
    match value {
        Json::Null => ruby.qnil().as_value(),
        Json::Bool(b) => b.into_value_with(ruby),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_value_with(ruby)
            } else if let Some(u) = n.as_u64() {
                u.into_value_with(ruby)
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_value_with(ruby)
            }
        }
        Json::String(s) => s.as_str().into_value_with(ruby),
        Json::Array(items) => {
            let array = ruby.ary_new_capa(items.len());
            for item in items {
                let _ = array.push(to_ruby(ruby, item, symbolize_keys));
            }
            array.as_value()
        }
        Json::Object(map) => object_to_ruby(ruby, map, symbolize_keys).as_value(),
    }
}

/// A JSON object as a Ruby Hash.
pub(crate) fn object_to_ruby(ruby: &Ruby, map: &JsonObject, symbolize_keys: bool) -> RHash {
    let hash = ruby.hash_new();
    for (key, value) in map {
        let value = to_ruby(ruby, value, symbolize_keys);
        let _ = if symbolize_keys {
            hash.aset(ruby.to_symbol(key), value)
        } else {
            hash.aset(key.as_str(), value)
        };
    }
    hash
}

/// A Ruby Hash as a JSON object; `what` names it in errors (`output`). Raises `TypeError`
/// naming the path of the first value that has no JSON form.
pub(crate) fn object_from_ruby(ruby: &Ruby, value: Value, what: &str) -> Result<JsonObject, Error> {
    match from_ruby(ruby, value, what, 0)? {
        Json::Object(map) => Ok(map),
        _ => Err(type_error(
            ruby,
            format!("{what} must be a Hash, not {}", class_name(value)),
        )),
    }
}

fn type_error(ruby: &Ruby, message: String) -> Error {
    Error::new(ruby.exception_type_error(), message)
}

fn class_name(value: Value) -> String {
    // SAFETY: the class name is copied out at once.
    unsafe { value.classname() }.into_owned()
}

/// `value` as JSON; `path` names it in errors, `depth` is how deep it is nested.
fn from_ruby(ruby: &Ruby, value: Value, path: &str, depth: usize) -> Result<Json, Error> {
    if depth > MAX_DEPTH {
        return Err(type_error(
            ruby,
            format!("{path} is nested more than {MAX_DEPTH} levels deep (does it contain itself?)"),
        ));
    }
    if let Some(json) = scalar_from_ruby(ruby, value, path)? {
        return Ok(json);
    }
    if let Some(array) = RArray::from_value(value) {
        return array_from_ruby(ruby, array, path, depth).map(Json::Array);
    }
    if let Some(hash) = RHash::from_value(value) {
        return hash_from_ruby(ruby, hash, path, depth).map(Json::Object);
    }
    converted_from_ruby(ruby, value, path, depth)
}

/// nil, true, false, a String, Symbol, Integer or Float as JSON; `None` for anything else.
fn scalar_from_ruby(ruby: &Ruby, value: Value, path: &str) -> Result<Option<Json>, Error> {
    if value.is_nil() {
        return Ok(Some(Json::Null));
    }
    if value.is_kind_of(ruby.class_true_class()) {
        return Ok(Some(Json::Bool(true)));
    }
    if value.is_kind_of(ruby.class_false_class()) {
        return Ok(Some(Json::Bool(false)));
    }
    if let Some(s) = RString::from_value(value) {
        return string(ruby, s, path).map(|s| Some(Json::String(s)));
    }
    if let Some(s) = Symbol::from_value(value) {
        return Ok(Some(Json::String(s.name()?.into_owned())));
    }
    if let Some(i) = Integer::from_value(value) {
        return integer(ruby, i, path).map(Some);
    }
    if let Some(f) = Float::from_value(value) {
        return float(ruby, f, path).map(Some);
    }
    Ok(None)
}

fn integer(ruby: &Ruby, i: Integer, path: &str) -> Result<Json, Error> {
    if let Ok(i) = i.to_i64() {
        return Ok(Json::Number(i.into()));
    }
    if let Ok(u) = i.to_u64() {
        return Ok(Json::Number(u.into()));
    }
    Err(type_error(
        ruby,
        format!("{path} is an integer too large for JSON: {i}"),
    ))
}

fn float(ruby: &Ruby, f: Float, path: &str) -> Result<Json, Error> {
    let f = f.to_f64();
    Number::from_f64(f).map(Json::Number).ok_or_else(|| {
        type_error(
            ruby,
            format!("{path} is {f}, which JSON cannot represent (NaN and Infinity are not JSON)"),
        )
    })
}

fn array_from_ruby(
    ruby: &Ruby,
    array: RArray,
    path: &str,
    depth: usize,
) -> Result<Vec<Json>, Error> {
    let mut items = Vec::with_capacity(array.len());
    for i in 0..array.len() {
        let item: Value = array.entry(i as isize)?;
        items.push(from_ruby(ruby, item, &format!("{path}[{i}]"), depth + 1)?);
    }
    Ok(items)
}

fn hash_from_ruby(ruby: &Ruby, hash: RHash, path: &str, depth: usize) -> Result<JsonObject, Error> {
    let mut map = Map::with_capacity(hash.len());
    let mut failure = None;
    hash.foreach(|key: Value, item: Value| {
        let key = match hash_key(ruby, key, path) {
            Ok(k) => k,
            Err(e) => {
                failure = Some(e);
                return Ok(ForEach::Stop);
            }
        };
        match from_ruby(ruby, item, &format!("{path}[{key:?}]"), depth + 1) {
            Ok(v) => {
                map.insert(key, v);
                Ok(ForEach::Continue)
            }
            Err(e) => {
                failure = Some(e);
                Ok(ForEach::Stop)
            }
        }
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(map),
    }
}

/// Structs and Data objects, and anything else with a Hash form; times and dates as their
/// ISO 8601 text. Raises `TypeError` for anything else.
fn converted_from_ruby(ruby: &Ruby, value: Value, path: &str, depth: usize) -> Result<Json, Error> {
    if value.respond_to("to_h", false)? {
        let hash: Value = value.funcall("to_h", ())?;
        if RHash::from_value(hash).is_some() {
            return from_ruby(ruby, hash, path, depth + 1);
        }
    }
    if value.respond_to("iso8601", false)? {
        let text: RString = value.funcall("iso8601", ())?;
        return string(ruby, text, path).map(Json::String);
    }
    Err(type_error(
        ruby,
        format!(
            "{path} is a {}, which has no JSON form (use Hash, Array, String, Symbol, Integer, \
             Float, true, false or nil)",
            class_name(value)
        ),
    ))
}

fn string(ruby: &Ruby, s: RString, path: &str) -> Result<String, Error> {
    // `to_string` transcodes other encodings to UTF-8 and fails on bytes that are not text.
    s.to_string().map_err(|_| {
        type_error(
            ruby,
            format!("{path} is a String that is not valid text in its encoding (binary data? encode it, e.g. Base64)"),
        )
    })
}

fn hash_key(ruby: &Ruby, key: Value, path: &str) -> Result<String, Error> {
    if let Some(s) = RString::from_value(key) {
        return string(ruby, s, path);
    }
    if let Some(s) = Symbol::from_value(key) {
        return Ok(s.name()?.into_owned());
    }
    if Integer::from_value(key).is_some() || Float::from_value(key).is_some() {
        return key.to_r_string()?.to_string();
    }
    Err(type_error(
        ruby,
        format!(
            "{path} has a {} key; JSON object keys must be Strings or Symbols",
            class_name(key)
        ),
    ))
}

/// A field of an event or an error as a Ruby value.
pub(crate) fn field_to_ruby(ruby: &Ruby, field: EventField) -> Value {
    match field {
        EventField::Str(s) => s.into_value_with(ruby),
        EventField::Int(i) => i.into_value_with(ruby),
        EventField::Float(f) => f.into_value_with(ruby),
        EventField::Bool(b) => b.into_value_with(ruby),
    }
}

/// A value the core describes as JSON (a health snapshot, a stop report) as Ruby objects,
/// with Symbol keys.
pub(crate) fn serialized_to_ruby(
    ruby: &Ruby,
    value: &impl serde::Serialize,
) -> Result<Value, Error> {
    let json = serde_json::to_value(value).map_err(|e| {
        Error::new(
            ruby.exception_runtime_error(),
            format!("cannot describe a core value: {e}"),
        )
    })?;
    Ok(to_ruby(ruby, &json, true))
}
