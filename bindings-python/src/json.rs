//! JSON values between serde_json and Python objects, without a JSON text in between.

use conductor_worker::telemetry::EventField;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

/// Deeper than this is almost certainly a cycle; serde_json refuses such input anyway.
const MAX_DEPTH: usize = 128;

pub(crate) fn to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => object_to_py(py, map)?.into_any(),
    })
}

pub(crate) fn object_to_py<'py>(
    py: Python<'py>,
    map: &Map<String, Value>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (k, v) in map {
        dict.set_item(k, to_py(py, v)?)?;
    }
    Ok(dict)
}

/// A Python value as JSON. The error names where in `root` the offending value sits, so a
/// user can find it in a large output: `output["items"][3]["when"] is a datetime ...`.
pub(crate) fn from_py(obj: &Bound<'_, PyAny>, root: &str) -> PyResult<Value> {
    let mut path = root.to_owned();
    convert(obj, &mut path, 0)
}

/// A Python mapping as a JSON object (task output must be one).
pub(crate) fn object_from_py(obj: &Bound<'_, PyAny>, root: &str) -> PyResult<Map<String, Value>> {
    match from_py(obj, root)? {
        Value::Object(map) => Ok(map),
        other => Err(PyTypeError::new_err(format!(
            "{root} must be a dict, not {}",
            kind(&other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "None",
        Value::Bool(_) => "bool",
        Value::Number(_) => "a number",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn convert(obj: &Bound<'_, PyAny>, path: &mut String, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "{path} is nested more than {MAX_DEPTH} levels deep (a reference cycle?)"
        )));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    // bool before int: in Python, bool is a subclass of int.
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::Number(i.into()));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::Number(u.into()));
        }
        return Err(PyValueError::new_err(format!(
            "{path} is an integer too large for JSON (beyond 64 bits): send it as a str"
        )));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        return Number::from_f64(v).map(Value::Number).ok_or_else(|| {
            PyValueError::new_err(format!("{path} is {v}, which JSON cannot represent"))
        });
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if let Ok(dict) = obj.cast::<PyDict>() {
        let mut map = Map::with_capacity(dict.len());
        let len = path.len();
        for (k, v) in dict.iter() {
            let key = match k.cast::<PyString>() {
                Ok(s) => s.to_cow()?.into_owned(),
                Err(_) => {
                    return Err(PyTypeError::new_err(format!(
                        "{path} has the key {} of type {}: JSON object keys must be str",
                        k.repr().map(|r| r.to_string()).unwrap_or_default(),
                        type_name(&k)
                    )));
                }
            };
            path.push_str(&format!("[{key:?}]"));
            let value = convert(&v, path, depth + 1)?;
            path.truncate(len);
            map.insert(key, value);
        }
        return Ok(Value::Object(map));
    }
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let len = path.len();
        let mut items = Vec::new();
        for (i, item) in obj.try_iter()?.enumerate() {
            path.push_str(&format!("[{i}]"));
            items.push(convert(&item?, path, depth + 1)?);
            path.truncate(len);
        }
        return Ok(Value::Array(items));
    }
    Err(PyTypeError::new_err(format!(
        "{path} is of type {}, which is not JSON: use dict, list, str, int, float, bool or None",
        type_name(obj)
    )))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}

/// A field of an event or an error as a Python value.
pub(crate) fn field_to_py(py: Python<'_>, field: EventField) -> PyResult<Bound<'_, PyAny>> {
    Ok(match field {
        EventField::Str(s) => s.into_pyobject(py)?.into_any(),
        EventField::Int(i) => i.into_pyobject(py)?.into_any(),
        EventField::Float(f) => f.into_pyobject(py)?.into_any(),
        EventField::Bool(b) => PyBool::new(py, b).to_owned().into_any(),
    })
}

/// A value the core describes as JSON (a health snapshot, a stop report) as Python objects.
pub(crate) fn serialized_to_py<'py>(
    py: Python<'py>,
    value: &impl serde::Serialize,
) -> PyResult<Bound<'py, PyAny>> {
    let json = serde_json::to_value(value)
        .map_err(|e| PyValueError::new_err(format!("cannot describe a core value: {e}")))?;
    to_py(py, &json)
}
