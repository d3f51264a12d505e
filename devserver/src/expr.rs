//! `${...}` expressions in `inputParameters` and `outputParameters`.
//!
//! Supported roots: `workflow.input.*`, `workflow.output.*`, `workflow.workflowId`,
//! `workflow.correlationId`, `<taskRef>.input.*` and `<taskRef>.output.*`, with nested paths
//! (`a.b.c`) and array indexes (`items[0].name`). A string that is exactly one expression takes the
//! JSON value as is (numbers stay numbers); an expression inside a longer string is interpolated
//! as text. Unresolvable paths give `null`, as on the real server.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// Input and output of a task; owned when they had to be read back from external storage.
pub type TaskData<'a> = (Cow<'a, Value>, Cow<'a, Map<String, Value>>);

/// Where expressions look their values up.
pub trait Scope {
    /// The workflow's input.
    fn workflow_input(&self) -> &Map<String, Value>;
    /// The workflow's output so far.
    fn workflow_output(&self) -> Option<&Map<String, Value>> {
        None
    }
    /// A workflow-level scalar such as `workflowId`.
    fn workflow_field(&self, name: &str) -> Option<Value>;
    /// Input and output of the latest attempt of the task with this reference name.
    fn task(&self, reference: &str) -> Option<TaskData<'_>>;
}

/// Resolves every expression inside `params`, recursing into objects and arrays.
pub fn resolve_map(params: &Map<String, Value>, scope: &dyn Scope) -> Map<String, Value> {
    params
        .iter()
        .map(|(k, v)| (k.clone(), resolve(v, scope)))
        .collect()
}

/// Resolves every expression inside `v`.
pub fn resolve(v: &Value, scope: &dyn Scope) -> Value {
    match v {
        Value::String(s) => resolve_str(s, scope),
        Value::Array(a) => Value::Array(a.iter().map(|x| resolve(x, scope)).collect()),
        Value::Object(o) => Value::Object(resolve_map(o, scope)),
        other => other.clone(),
    }
}

fn resolve_str(s: &str, scope: &dyn Scope) -> Value {
    if !s.contains("${") {
        return Value::String(s.to_string());
    }
    if let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
        && !inner.contains("${")
        && !inner.contains('}')
    {
        return lookup(inner.trim(), scope).unwrap_or(Value::Null);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                match lookup(after[..end].trim(), scope) {
                    Some(Value::String(v)) => out.push_str(&v),
                    Some(Value::Null) | None => {}
                    Some(other) => out.push_str(&other.to_string()),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    Value::String(out)
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Option<Vec<Seg<'_>>> {
    let mut segs = Vec::new();
    for part in path.split('.') {
        let (key, mut idx) = match part.find('[') {
            Some(p) => (&part[..p], &part[p..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            segs.push(Seg::Key(key));
        }
        while let Some(r) = idx.strip_prefix('[') {
            let end = r.find(']')?;
            segs.push(Seg::Index(r[..end].trim().parse().ok()?));
            idx = &r[end + 1..];
        }
    }
    Some(segs)
}

fn walk<'v>(mut v: &'v Value, segs: &[Seg<'_>]) -> Option<&'v Value> {
    for s in segs {
        v = match s {
            Seg::Key(k) => v.as_object()?.get(*k)?,
            Seg::Index(i) => v.as_array()?.get(*i)?,
        };
    }
    Some(v)
}

fn walk_map(m: &Map<String, Value>, segs: &[Seg<'_>]) -> Option<Value> {
    match segs.split_first() {
        None => Some(Value::Object(m.clone())),
        Some((Seg::Key(k), rest)) => walk(m.get(*k)?, rest).cloned(),
        Some((Seg::Index(_), _)) => None,
    }
}

fn lookup(expr: &str, scope: &dyn Scope) -> Option<Value> {
    let segs = segments(expr)?;
    let (Seg::Key(root), rest) = segs.split_first()? else {
        return None;
    };
    let (Seg::Key(section), rest) = rest.split_first()? else {
        return None;
    };
    if *root == "workflow" {
        return match *section {
            "input" => walk_map(scope.workflow_input(), rest),
            "output" => walk_map(scope.workflow_output()?, rest),
            field if rest.is_empty() => scope.workflow_field(field),
            _ => None,
        };
    }
    let (input, output) = scope.task(root)?;
    match *section {
        "output" => walk_map(&output, rest),
        "input" => walk(&input, rest).cloned(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct S {
        input: Map<String, Value>,
        t_in: Value,
        t_out: Map<String, Value>,
    }

    impl Scope for S {
        fn workflow_input(&self) -> &Map<String, Value> {
            &self.input
        }
        fn workflow_field(&self, name: &str) -> Option<Value> {
            (name == "workflowId").then(|| json!("wf-1"))
        }
        fn task(&self, reference: &str) -> Option<TaskData<'_>> {
            (reference == "first")
                .then_some((Cow::Borrowed(&self.t_in), Cow::Borrowed(&self.t_out)))
        }
    }

    fn scope() -> S {
        S {
            input: json!({"x": 5, "name": "ann", "deep": {"list": [1, {"k": "v"}]}})
                .as_object()
                .cloned()
                .unwrap(),
            t_in: json!({"a": 1}),
            t_out: json!({"y": {"z": true}, "n": 2.5})
                .as_object()
                .cloned()
                .unwrap(),
        }
    }

    #[test]
    fn whole_expressions_keep_their_json_type() {
        let s = scope();
        assert_eq!(resolve(&json!("${workflow.input.x}"), &s), json!(5));
        assert_eq!(resolve(&json!("${first.output.y}"), &s), json!({"z": true}));
        assert_eq!(resolve(&json!("${first.output.y.z}"), &s), json!(true));
        assert_eq!(
            resolve(&json!("${workflow.input.deep.list[1].k}"), &s),
            json!("v")
        );
        assert_eq!(resolve(&json!("${first.input.a}"), &s), json!(1));
        assert_eq!(resolve(&json!("${workflow.workflowId}"), &s), json!("wf-1"));
        assert_eq!(resolve(&json!("${missing.output.q}"), &s), Value::Null);
    }

    #[test]
    fn embedded_expressions_are_interpolated() {
        let s = scope();
        assert_eq!(
            resolve(
                &json!("hi ${workflow.input.name}, n=${first.output.n}!"),
                &s
            ),
            json!("hi ann, n=2.5!")
        );
        assert_eq!(resolve(&json!("plain"), &s), json!("plain"));
    }

    #[test]
    fn nested_objects_and_arrays_are_resolved() {
        let s = scope();
        let v = json!({"o": {"p": "${workflow.input.x}"}, "a": ["${first.output.n}", 3]});
        assert_eq!(resolve(&v, &s), json!({"o": {"p": 5}, "a": [2.5, 3]}));
    }
}
