//! `POST /admin/tasks`: many single-task workflows created and queued at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::queues::Action;
use super::{CompiledDef, Store, Workflow, bad, lock, norm_domain, queue_key};
use crate::error::ApiError;
use crate::model::{
    RetryPolicy, TaskDef, WorkflowDef, WorkflowStatus, WorkflowTask, new_id, now_ms,
};

/// Body of `POST /admin/tasks`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkRequest {
    pub task_type: String,
    #[serde(default = "one")]
    pub count: usize,
    #[serde(default)]
    pub input: Option<Map<String, Value>>,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default = "hour")]
    pub response_timeout_seconds: i64,
    #[serde(default)]
    pub retry_count: u32,
    #[serde(default)]
    pub retry_delay_seconds: i64,
}

fn one() -> usize {
    1
}
fn hour() -> i64 {
    3600
}

impl Store {
    /// Bulk enqueue for benchmarks and tests (`POST /admin/tasks`): one single-task workflow per
    /// task, all queued at once.
    pub fn bulk_create(self: &Arc<Self>, req: BulkRequest) -> Result<usize, ApiError> {
        if req.task_type.is_empty() {
            return Err(bad("taskType cannot be empty"));
        }
        if req.response_timeout_seconds < 1 {
            return Err(bad("responseTimeoutSeconds must be at least 1"));
        }
        if self.taskdef(&req.task_type).is_none() {
            let mut d = TaskDef::with_defaults(&req.task_type);
            d.retry_count = req.retry_count;
            d.retry_delay_seconds = req.retry_delay_seconds;
            d.response_timeout_seconds = req.response_timeout_seconds;
            self.upsert_taskdefs(vec![d])?;
        }
        let wt = WorkflowTask {
            name: req.task_type.clone(),
            task_reference_name: req.task_type.clone(),
            task_type: "SIMPLE".into(),
            input_parameters: req.input.clone().unwrap_or_default(),
            optional: false,
            extra: Map::new(),
        };
        let def = Arc::new(CompiledDef::new(WorkflowDef {
            name: format!("devserver_bulk_{}", req.task_type),
            version: 1,
            tasks: vec![wt],
            output_parameters: Map::new(),
            timeout_seconds: Some(0),
            owner_email: None,
            extra: Map::new(),
        }));
        let name: Arc<str> = def.def.name.as_str().into();
        let input = req.input.unwrap_or_default();
        let policy = RetryPolicy {
            retry_count: req.retry_count,
            retry_delay_seconds: req.retry_delay_seconds,
            ..RetryPolicy::default()
        };
        let mut t2d = HashMap::new();
        if let Some(d) = norm_domain(req.domain.as_deref()) {
            t2d.insert(req.task_type.clone(), d.to_string());
        }
        let key = queue_key(&req.task_type, norm_domain(req.domain.as_deref())).into_owned();
        let now = now_ms();
        let mut ids = Vec::with_capacity(req.count);
        let mut memo = None;
        for _ in 0..req.count {
            let id = new_id();
            let cell = Arc::new(Mutex::new(Workflow {
                id: id.clone(),
                name: name.clone(),
                def: def.clone(),
                status: WorkflowStatus::Running,
                input: input.clone(),
                output: Map::new(),
                correlation_id: None,
                task_to_domain: t2d.clone(),
                create_time: now,
                update_time: now,
                end_time: 0,
                reason: None,
                policy_override: Some((policy.clone(), req.response_timeout_seconds)),
                tasks: Vec::new(),
            }));
            let mut actions = Vec::with_capacity(1);
            {
                let mut w = lock(&cell);
                self.schedule(&cell, &mut w, 0, now, &mut actions, Some(&mut memo));
            }
            lock(&self.workflows[self.shard(&id)]).insert(id, cell);
            for a in actions {
                if let Action::Push { id, .. } = a {
                    ids.push(id);
                }
            }
        }
        self.push_many(&key, ids);
        Ok(req.count)
    }
}
