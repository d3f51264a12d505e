//! Task results from workers: validated, applied with the real server's semantics, and the
//! workflow's next step decided.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::queues::{Action, unqueue};
use super::{Store, TaskRef, Workflow, bad, lock, queue_key};
use crate::error::ApiError;
use crate::model::{HistoryEntry, Task, TaskResult, TaskStatus, now_ms};
use crate::payload::{PayloadKind, Placement};
use crate::stats::inc;

/// What an update did, for update-v2's follow-up poll.
pub struct Updated {
    pub task_id: Arc<str>,
    pub task_type: Arc<str>,
    pub domain: Option<Arc<str>>,
    /// The update made the task terminal (only then does update-v2 poll for the next task).
    pub terminal: bool,
}

/// The ids a result must carry, reported together as the real server's validation does.
fn check_result_ids(r: &TaskResult) -> Result<(), ApiError> {
    let mut invalid = Vec::new();
    if r.workflow_instance_id.as_deref().unwrap_or("").is_empty() {
        invalid.push((
            "updateTask.arg0.workflowInstanceId",
            "Workflow Id cannot be null or empty",
        ));
    }
    if r.task_id.as_deref().unwrap_or("").is_empty() {
        invalid.push(("updateTask.arg0.taskId", "Task ID cannot be null or empty"));
    }
    if invalid.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(invalid))
    }
}

/// The status of an accepted result: one a worker may set.
fn worker_status(status: Option<TaskStatus>) -> Result<TaskStatus, ApiError> {
    let status = status.ok_or_else(|| bad("Status cannot be null"))?;
    if matches!(
        status,
        TaskStatus::Scheduled
            | TaskStatus::TimedOut
            | TaskStatus::Skipped
            | TaskStatus::CompletedWithErrors
    ) {
        return Err(bad(format!(
            "Status {} cannot be set by a worker",
            status.as_str()
        )));
    }
    Ok(status)
}

impl Store {
    /// Applies a `TaskResult` with the server's semantics (see the crate docs).
    pub fn update(self: &Arc<Self>, r: TaskResult) -> Result<Updated, ApiError> {
        check_result_ids(&r)?;
        let tr = self.updated_task(&r)?;
        self.check_uploaded_output(&r)?;
        let now = now_ms();
        let mut actions = Vec::new();
        let updated = self.apply_result(&tr, &mut lock(&tr.wf), r, now, &mut actions)?;
        self.run(actions);
        Ok(updated)
    }

    /// The task a result is for. The real server loads the workflow first, so an unknown
    /// workflow id is reported as such, even when the task id is unknown too.
    fn updated_task(&self, r: &TaskResult) -> Result<TaskRef, ApiError> {
        let workflow_id = r.workflow_instance_id.as_deref().unwrap_or("");
        if self.workflow(workflow_id).is_none() {
            inc(&self.stats.unknown_task);
            return Err(ApiError::NotFound(format!(
                "No such workflow found by id: {workflow_id}"
            )));
        }
        let task_id = r.task_id.as_deref().unwrap_or("");
        self.lookup(task_id).ok_or_else(|| {
            inc(&self.stats.unknown_task);
            ApiError::NotFound(format!("No such task found by id: {task_id}"))
        })
    }

    /// An output the worker says it uploaded must be in external storage already.
    fn check_uploaded_output(&self, r: &TaskResult) -> Result<(), ApiError> {
        match r.external_output_payload_storage_path.as_deref() {
            Some(p) if !r.extend_lease && !self.payloads.contains(p) => Err(bad(format!(
                "externalOutputPayloadStoragePath {p:?} is not in external storage: PUT the \
                 output to the uri of a WRITE location first"
            ))),
            _ => Ok(()),
        }
    }

    /// Applies a result to task `tr` of its workflow `w`, locked; queue work goes to `actions`.
    fn apply_result(
        &self,
        tr: &TaskRef,
        w: &mut Workflow,
        r: TaskResult,
        now: i64,
        actions: &mut Vec<Action>,
    ) -> Result<Updated, ApiError> {
        let wf_terminal = w.status.is_terminal();
        let t = &mut w.tasks[tr.idx];
        let mut updated = Updated {
            task_id: t.task_id.clone(),
            task_type: t.task_type.clone(),
            domain: t.domain.clone(),
            terminal: false,
        };
        let status_name = r.status.map_or("", |s| s.as_str()).to_string();
        if t.status.is_terminal() || wf_terminal {
            self.ignore_result(t, r.status, r.extend_lease, status_name, now);
            return Ok(updated);
        }
        if r.extend_lease {
            self.extend_lease(t, status_name, now);
            return Ok(updated);
        }
        let status = worker_status(r.status)?;
        self.accept_result(t, status_name, now);
        let too_large = self.record_result(t, r, &w.id, now);
        if status == TaskStatus::InProgress && !too_large {
            self.requeue(t, tr, actions);
            return Ok(updated);
        }
        updated.terminal = true;
        if too_large {
            self.end_task(t, TaskStatus::FailedWithTerminalError, now, actions);
            self.fail_for_payload(w, tr.idx, now, actions);
        } else {
            self.end_task(t, status, now, actions);
            self.decide(&tr.wf, w, tr.idx, now, actions);
        }
        Ok(updated)
    }

    /// A result for a task or workflow already over is recorded, not applied. A terminal
    /// result counts as answered now, so that sending it again is a duplicate.
    fn ignore_result(
        &self,
        t: &mut Task,
        status: Option<TaskStatus>,
        extend_lease: bool,
        status_name: String,
        now: i64,
    ) {
        inc(&self.stats.terminal_task);
        let terminal_result = matches!(
            status,
            Some(TaskStatus::Completed | TaskStatus::Failed | TaskStatus::FailedWithTerminalError)
        );
        if terminal_result && !extend_lease {
            if t.internal.result_answered {
                inc(&self.stats.duplicate_results);
            }
            // Answered now (unless this answer is withheld too).
            t.internal.result_answered = true;
        }
        t.internal.history.push(HistoryEntry {
            status: status_name,
            at_ms: now,
            extend_lease,
            ignored: true,
        });
    }

    /// `extendLease`: the response timeout starts again; nothing else changes.
    fn extend_lease(&self, t: &mut Task, status_name: String, now: i64) {
        t.update_time = now;
        t.internal.history.push(HistoryEntry {
            status: status_name,
            at_ms: now,
            extend_lease: true,
            ignored: false,
        });
        inc(&self.stats.lease_extensions);
        inc(&self.stats.accepted);
    }

    /// Counts a result that will be applied; the task leaves IN_PROGRESS.
    fn accept_result(&self, t: &mut Task, status_name: String, now: i64) {
        inc(&self.stats.accepted);
        t.internal.history.push(HistoryEntry {
            status: status_name,
            at_ms: now,
            extend_lease: false,
            ignored: false,
        });
        if t.status == TaskStatus::InProgress {
            self.stats
                .in_progress
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Copies an accepted result into the task. True when its output is above the hard limit:
    /// the output is dropped and the task's reason says why.
    fn record_result(&self, t: &mut Task, r: TaskResult, workflow_id: &str, now: i64) -> bool {
        let too_large = self.apply_output(t, r.output_data, r.external_output_payload_storage_path);
        if let Some(size) = too_large {
            let reason = self
                .payloads
                .too_large_reason(size, &t.task_id, workflow_id);
            t.reason_for_incompletion = Some(reason);
        } else if r.reason_for_incompletion.is_some() {
            t.reason_for_incompletion = r.reason_for_incompletion;
        }
        if r.worker_id.is_some() {
            t.worker_id = r.worker_id;
        }
        if r.sub_workflow_id.is_some() {
            t.sub_workflow_id = r.sub_workflow_id;
        }
        for mut l in r.logs.unwrap_or_default() {
            if l.task_id.is_none() {
                l.task_id = Some(t.task_id.to_string());
            }
            if l.created_time == 0 {
                l.created_time = now;
            }
            t.internal.logs.push(l);
        }
        t.callback_after_seconds = r.callback_after_seconds.unwrap_or(0).max(0);
        t.update_time = now;
        t.executed = true;
        too_large.is_some()
    }

    /// IN_PROGRESS from a worker: the task is polled again, at once or after its
    /// `callbackAfterSeconds`.
    fn requeue(&self, t: &mut Task, tr: &TaskRef, actions: &mut Vec<Action>) {
        inc(&self.stats.update_in_progress);
        t.status = TaskStatus::Scheduled;
        if t.internal.in_queue {
            return;
        }
        let key = queue_key(&t.task_type, t.domain.as_deref()).into_owned();
        let id = t.task_id.clone();
        if t.callback_after_seconds == 0 {
            t.internal.in_queue = true;
            actions.push(Action::Push { key, id });
        } else {
            actions.push(Action::PushLater {
                key,
                id,
                delay_ms: t.callback_after_seconds as u64 * 1000,
                wf: tr.wf.clone(),
                idx: tr.idx,
            });
        }
    }

    /// A worker's terminal result ends the task: it leaves its queue and is counted.
    fn end_task(&self, t: &mut Task, status: TaskStatus, now: i64, actions: &mut Vec<Action>) {
        t.status = status;
        t.end_time = now;
        t.internal.result_answered = true;
        unqueue(t, actions);
        match status {
            TaskStatus::Completed => inc(&self.stats.completed),
            TaskStatus::Failed => inc(&self.stats.failed),
            TaskStatus::FailedWithTerminalError => inc(&self.stats.failed_terminal),
            _ => {}
        }
    }

    /// Puts a result's output into the task: a key the worker uploaded to as given, an inline
    /// output stored externally above the threshold (by the server, as the real one does).
    /// Returns the size of an output above the hard limit, which is dropped.
    fn apply_output(
        &self,
        t: &mut Task,
        output: Option<Map<String, Value>>,
        path: Option<String>,
    ) -> Option<u64> {
        if let Some(p) = path {
            t.output_data = Map::new();
            t.external_output_payload_storage_path = Some(p);
            return None;
        }
        let o = output?;
        let (inline, path, too_large) = match self.payloads.place(PayloadKind::Output, &o) {
            Placement::Inline => (o, None, None),
            Placement::External(key) => {
                inc(&self.stats.externalized_outputs);
                (Map::new(), Some(key), None)
            }
            Placement::TooLarge(size) => (Map::new(), None, Some(size)),
        };
        t.output_data = inline;
        t.external_output_payload_storage_path = path;
        too_large
    }

    /// The answer to the last update of `task_id` was withheld (`reset_after_rate`): the worker
    /// does not know its result arrived, so sending it again is not a duplicate.
    pub fn result_unanswered(&self, task_id: &str) {
        if let Some(r) = self.lookup(task_id) {
            lock(&r.wf).tasks[r.idx].internal.result_answered = false;
        }
    }
}
