//! `POST /admin/tasks`: many single-task workflows created and queued at once.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::queues::Action;
use super::{CompiledDef, Store, Workflow, bad, norm_domain, queue_key};
use crate::error::ApiError;
use crate::model::{RetryPolicy, TaskDef, WorkflowDef, WorkflowTask, new_id, now_ms};

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

/// Refuses a request that would create unusable tasks.
fn check(req: &BulkRequest) -> Result<(), ApiError> {
    if req.task_type.is_empty() {
        return Err(bad("taskType cannot be empty"));
    }
    if req.response_timeout_seconds < 1 {
        return Err(bad("responseTimeoutSeconds must be at least 1"));
    }
    Ok(())
}

/// What every workflow of one request shares.
struct Template {
    def: Arc<CompiledDef>,
    /// One name for all, not one copy per workflow.
    name: Arc<str>,
    input: Map<String, Value>,
    task_to_domain: HashMap<String, String>,
    /// The request's retry policy and response timeout, which override the task definition.
    policy: (RetryPolicy, i64),
}

impl Template {
    fn new(req: BulkRequest) -> Template {
        let input = req.input.unwrap_or_default();
        let wt = WorkflowTask {
            name: req.task_type.clone(),
            task_reference_name: req.task_type.clone(),
            task_type: "SIMPLE".into(),
            input_parameters: input.clone(),
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
        let mut task_to_domain = HashMap::new();
        if let Some(d) = norm_domain(req.domain.as_deref()) {
            task_to_domain.insert(req.task_type.clone(), d.to_string());
        }
        let policy = RetryPolicy {
            retry_count: req.retry_count,
            retry_delay_seconds: req.retry_delay_seconds,
            ..RetryPolicy::default()
        };
        Template {
            name: def.def.name.as_str().into(),
            def,
            input,
            task_to_domain,
            policy: (policy, req.response_timeout_seconds),
        }
    }

    /// A new workflow of the request, its task not scheduled yet.
    fn workflow(&self, now: i64) -> Workflow {
        let input = self.input.clone();
        Workflow {
            task_to_domain: self.task_to_domain.clone(),
            policy_override: Some(self.policy.clone()),
            ..Workflow::running(new_id(), self.name.clone(), self.def.clone(), input, now)
        }
    }
}

impl Store {
    /// Bulk enqueue for benchmarks and tests (`POST /admin/tasks`): one single-task workflow per
    /// task, all queued at once.
    pub fn bulk_create(self: &Arc<Self>, req: BulkRequest) -> Result<usize, ApiError> {
        check(&req)?;
        self.ensure_taskdef(&req)?;
        let key = queue_key(&req.task_type, norm_domain(req.domain.as_deref())).into_owned();
        let count = req.count;
        let template = Template::new(req);
        let now = now_ms();
        let mut ids = Vec::with_capacity(count);
        // The input is resolved and placed once, for the first task, and given to all.
        let mut memo = None;
        for _ in 0..count {
            let actions = self.add_workflow(template.workflow(now), now, Some(&mut memo));
            for a in actions {
                if let Action::Push { id, .. } = a {
                    ids.push(id);
                }
            }
        }
        self.push_many(&key, ids);
        Ok(count)
    }

    /// A task definition from the request's settings, unless the type has one already.
    fn ensure_taskdef(&self, req: &BulkRequest) -> Result<(), ApiError> {
        if self.taskdef(&req.task_type).is_some() {
            return Ok(());
        }
        let mut d = TaskDef::with_defaults(&req.task_type);
        d.retry_count = req.retry_count;
        d.retry_delay_seconds = req.retry_delay_seconds;
        d.response_timeout_seconds = req.response_timeout_seconds;
        self.upsert_taskdefs(vec![d])
    }
}
