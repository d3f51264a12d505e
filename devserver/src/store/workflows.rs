//! Workflows: their state, how expressions see them, starting one and reading it back.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Map, Value};

use super::decisions::PreparedInput;
use super::queues::Action;
use super::{CompiledDef, Store, bad, lock};
use crate::error::ApiError;
use crate::expr::{Scope, TaskData};
use crate::model::{
    RetryPolicy, StartWorkflowRequest, Task, WorkflowDef, WorkflowStatus, new_id, now_ms,
};
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WorkflowView<'a> {
    workflow_id: &'a str,
    workflow_name: &'a str,
    workflow_version: i32,
    status: WorkflowStatus,
    input: &'a Map<String, Value>,
    output: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tasks: Option<&'a [Task]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<&'a str>,
    create_time: i64,
    update_time: i64,
    end_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason_for_incompletion: Option<&'a str>,
    task_to_domain: &'a HashMap<String, String>,
    workflow_definition: &'a WorkflowDef,
}

impl Store {
    /// Starts a workflow and schedules its first task; returns the workflow id.
    pub fn start_workflow(
        self: &Arc<Self>,
        req: StartWorkflowRequest,
    ) -> Result<Arc<str>, ApiError> {
        let def = match req.workflow_def {
            Some(d) => {
                d.validate().map_err(bad)?;
                Arc::new(CompiledDef::new(d))
            }
            None => {
                if req.name.is_empty() {
                    return Err(bad("StartWorkflowRequest: name cannot be empty"));
                }
                self.find_wfdef(&req.name, req.version)?
            }
        };
        let now = now_ms();
        let id = new_id();
        let name = def.def.name.as_str().into();
        let input = req.input.unwrap_or_default();
        let wf = Workflow {
            correlation_id: req.correlation_id.map(Into::into),
            task_to_domain: req.task_to_domain.unwrap_or_default(),
            ..Workflow::running(id.clone(), name, def, input, now)
        };
        let actions = self.add_workflow(wf, now, None);
        self.run(actions);
        Ok(id)
    }

    /// Stores a new workflow with its first task scheduled. Returns the queue work, to be done
    /// now that the workflow's lock is released. `memo` as for [`Store::schedule`].
    pub(super) fn add_workflow(
        &self,
        wf: Workflow,
        now: i64,
        memo: Option<&mut Option<PreparedInput>>,
    ) -> Vec<Action> {
        let id = wf.id.clone();
        let cell = Arc::new(Mutex::new(wf));
        let mut actions = Vec::with_capacity(1);
        self.schedule(&cell, &mut lock(&cell), 0, now, &mut actions, memo);
        lock(&self.workflows[self.shard(&id)]).insert(id, cell);
        actions
    }

    /// `GET /api/workflow/{id}` as JSON bytes.
    pub fn workflow_json(&self, id: &str, include_tasks: bool) -> Result<Vec<u8>, ApiError> {
        let cell = self
            .workflow(id)
            .ok_or_else(|| ApiError::NotFound(format!("Workflow with Id: {id} not found.")))?;
        let w = lock(&cell);
        let view = WorkflowView {
            workflow_id: &w.id,
            workflow_name: &w.name,
            workflow_version: w.def.def.version,
            status: w.status,
            input: &w.input,
            output: &w.output,
            tasks: include_tasks.then_some(&w.tasks[..]),
            correlation_id: w.correlation_id.as_deref(),
            create_time: w.create_time,
            update_time: w.update_time,
            end_time: w.end_time,
            reason_for_incompletion: w.reason.as_deref(),
            task_to_domain: &w.task_to_domain,
            workflow_definition: &w.def.def,
        };
        serde_json::to_vec(&view).map_err(|e| bad(e.to_string()))
    }
}
