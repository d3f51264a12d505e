//! Starting workflows and reading them back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{Map, Value};

use super::decisions::PreparedInput;
use super::queues::Action;
use super::{CompiledDef, Store, Workflow, bad, lock};
use crate::error::ApiError;
use crate::model::{StartWorkflowRequest, Task, WorkflowDef, WorkflowStatus, new_id, now_ms};

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
