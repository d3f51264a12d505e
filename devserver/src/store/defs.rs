//! Task and workflow definitions.

use std::sync::Arc;

use serde_json::Value;

use super::{Store, bad};
use crate::error::ApiError;
use crate::model::{Shared, TaskDef, WorkflowDef, now_ms};

/// A workflow definition with what scheduling needs precomputed.
pub struct CompiledDef {
    pub def: WorkflowDef,
    /// The embedded `workflowTask` JSON of each task, shared by every task scheduled from it.
    pub(super) workflow_tasks: Vec<Shared>,
}

impl CompiledDef {
    pub(super) fn new(def: WorkflowDef) -> CompiledDef {
        let workflow_tasks = def
            .tasks
            .iter()
            .map(|t| Shared::new(serde_json::to_value(t).unwrap_or(Value::Null)))
            .collect();
        CompiledDef {
            def,
            workflow_tasks,
        }
    }
}

impl Store {
    /// Registers or replaces task definitions (`POST /api/metadata/taskdefs`).
    pub fn upsert_taskdefs(&self, defs: Vec<TaskDef>) -> Result<(), ApiError> {
        for d in &defs {
            d.validate().map_err(bad)?;
        }
        let now = now_ms();
        let mut map = self.taskdefs.write().unwrap_or_else(|e| e.into_inner());
        for mut d in defs {
            let created = map.get(&d.name).and_then(|o| o.create_time);
            d.create_time = d.create_time.or(created).or(Some(now));
            d.update_time = Some(now);
            map.insert(d.name.clone(), Arc::new(d));
        }
        Ok(())
    }

    /// Replaces one existing task definition (`PUT /api/metadata/taskdefs`).
    pub fn update_taskdef(&self, d: TaskDef) -> Result<(), ApiError> {
        d.validate().map_err(bad)?;
        if !self
            .taskdefs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&d.name)
        {
            return Err(ApiError::NotFound(format!(
                "No such task by name {}",
                d.name
            )));
        }
        self.upsert_taskdefs(vec![d])
    }

    /// One task definition.
    pub fn taskdef(&self, name: &str) -> Option<Arc<TaskDef>> {
        self.taskdefs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// All task definitions, sorted by name.
    pub fn taskdefs(&self) -> Vec<Arc<TaskDef>> {
        let mut v: Vec<_> = self
            .taskdefs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Creates or replaces workflow definitions (`PUT /api/metadata/workflow`); with
    /// `fail_if_exists` it is `POST /api/metadata/workflow` (409 on a duplicate).
    pub fn put_workflow_defs(
        &self,
        defs: Vec<WorkflowDef>,
        fail_if_exists: bool,
    ) -> Result<(), ApiError> {
        for d in &defs {
            d.validate().map_err(bad)?;
        }
        let mut map = self.wfdefs.write().unwrap_or_else(|e| e.into_inner());
        if fail_if_exists {
            for d in &defs {
                if map.get(&d.name).is_some_and(|v| v.contains_key(&d.version)) {
                    return Err(ApiError::Conflict(format!(
                        "Workflow with name: {}, version: {} already exists!",
                        d.name, d.version
                    )));
                }
            }
        }
        for d in defs {
            map.entry(d.name.clone())
                .or_default()
                .insert(d.version, Arc::new(CompiledDef::new(d)));
        }
        Ok(())
    }

    pub(super) fn find_wfdef(
        &self,
        name: &str,
        version: Option<i32>,
    ) -> Result<Arc<CompiledDef>, ApiError> {
        let map = self.wfdefs.read().unwrap_or_else(|e| e.into_inner());
        let found = map.get(name).and_then(|v| match version {
            Some(ver) => v.get(&ver).cloned(),
            None => v.values().next_back().cloned(),
        });
        found.ok_or_else(|| {
            ApiError::NotFound(match version {
                Some(v) => format!("No such workflow found by name: {name}, version: {v}"),
                None => format!("No such workflow found by name: {name}"),
            })
        })
    }

    /// A registered workflow definition (latest version unless given).
    pub fn workflow_def(&self, name: &str, version: Option<i32>) -> Result<WorkflowDef, ApiError> {
        self.find_wfdef(name, version).map(|c| c.def.clone())
    }
}
