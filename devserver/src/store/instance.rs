//! A workflow instance: its state, and how expressions in its parameters see it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::CompiledDef;
use crate::expr::{Scope, TaskData};
use crate::model::{RetryPolicy, Task, WorkflowStatus};
use crate::payload::Payloads;

/// A running or finished workflow, with all its tasks.
pub struct Workflow {
    pub(super) id: Arc<str>,
    pub(super) name: Arc<str>,
    pub(super) def: Arc<CompiledDef>,
    pub(super) status: WorkflowStatus,
    pub(super) input: Map<String, Value>,
    pub(super) output: Map<String, Value>,
    pub(super) correlation_id: Option<Arc<str>>,
    pub(super) task_to_domain: HashMap<String, String>,
    pub(super) create_time: i64,
    pub(super) update_time: i64,
    pub(super) end_time: i64,
    pub(super) reason: Option<String>,
    /// Policy for tasks created by `POST /admin/tasks`, which overrides the task definition.
    pub(super) policy_override: Option<(RetryPolicy, i64)>,
    pub(super) tasks: Vec<Task>,
}

impl Workflow {
    /// A running workflow of `def` without tasks, correlation id, domains or policy override.
    pub(super) fn running(
        id: Arc<str>,
        name: Arc<str>,
        def: Arc<CompiledDef>,
        input: Map<String, Value>,
        now: i64,
    ) -> Workflow {
        Workflow {
            id,
            name,
            def,
            status: WorkflowStatus::Running,
            input,
            output: Map::new(),
            correlation_id: None,
            task_to_domain: HashMap::new(),
            create_time: now,
            update_time: now,
            end_time: 0,
            reason: None,
            policy_override: None,
            tasks: Vec::new(),
        }
    }
}

/// A workflow as expressions see it: task payloads stored externally are read back.
pub(super) struct View<'a> {
    pub(super) w: &'a Workflow,
    pub(super) payloads: &'a Payloads,
}

impl View<'_> {
    fn input<'t>(&self, t: &'t Task) -> Cow<'t, Value> {
        match &t.external_input_payload_storage_path {
            Some(k) => Cow::Owned(Value::Object(self.payloads.load(k))),
            None => Cow::Borrowed(&*t.input_data.0),
        }
    }

    pub(super) fn output<'t>(&self, t: &'t Task) -> Cow<'t, Map<String, Value>> {
        match &t.external_output_payload_storage_path {
            Some(k) => Cow::Owned(self.payloads.load(k)),
            None => Cow::Borrowed(&t.output_data),
        }
    }
}

impl Scope for View<'_> {
    fn workflow_input(&self) -> &Map<String, Value> {
        &self.w.input
    }
    fn workflow_output(&self) -> Option<&Map<String, Value>> {
        Some(&self.w.output)
    }
    fn workflow_field(&self, name: &str) -> Option<Value> {
        let w = self.w;
        match name {
            "workflowId" => Some(Value::String(w.id.to_string())),
            "correlationId" => w
                .correlation_id
                .as_ref()
                .map(|c| Value::String(c.to_string())),
            "workflowType" => Some(Value::String(w.name.to_string())),
            "status" => serde_json::to_value(w.status).ok(),
            _ => None,
        }
    }
    fn task(&self, reference: &str) -> Option<TaskData<'_>> {
        self.w
            .tasks
            .iter()
            .rev()
            .find(|t| &*t.reference_task_name == reference)
            .map(|t| (self.input(t), self.output(t)))
    }
}
