//! Single tasks by id: their JSON, execution logs and what the server saw of them.

use serde::{Deserialize, Serialize};

use super::{Store, lock};
use crate::model::{HistoryEntry, TaskExecLog, now_ms};

/// Updates and polls seen by one task, for `GET /admin/tasks/{id}/history`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct History {
    pub polls: u32,
    pub updates: Vec<HistoryEntry>,
}

impl Store {
    /// `GET /api/tasks/{id}` as JSON bytes.
    pub fn task_json(&self, id: &str) -> Option<Vec<u8>> {
        let r = self.lookup(id)?;
        let w = lock(&r.wf);
        serde_json::to_vec(&w.tasks[r.idx]).ok()
    }

    /// Appends a log line; false for an unknown task.
    pub fn add_log(&self, id: &str, log: String) -> bool {
        let Some(r) = self.lookup(id) else {
            return false;
        };
        let mut w = lock(&r.wf);
        let t = &mut w.tasks[r.idx];
        t.internal.logs.push(TaskExecLog {
            log: Some(log),
            task_id: Some(id.to_string()),
            created_time: now_ms(),
        });
        true
    }

    /// A task's execution logs (empty for an unknown task).
    pub fn logs(&self, id: &str) -> Vec<TaskExecLog> {
        let mut logs = self
            .lookup(id)
            .map(|r| lock(&r.wf).tasks[r.idx].internal.logs.clone())
            .unwrap_or_default();
        // The real server returns them ordered by their createdTime, not by arrival.
        logs.sort_by_key(|l| l.created_time);
        logs
    }

    /// Polls and updates one task received.
    pub fn history(&self, id: &str) -> Option<History> {
        let r = self.lookup(id)?;
        let w = lock(&r.wf);
        let t = &w.tasks[r.idx];
        Some(History {
            polls: t.poll_count,
            updates: t.internal.history.clone(),
        })
    }
}
