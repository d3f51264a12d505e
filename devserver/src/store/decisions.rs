//! What happens next in a workflow: creating and queueing its tasks, and after a task ends,
//! retrying it, moving on to the next one or ending the workflow.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::instance::View;
use super::queues::{Action, unqueue};
use super::{Store, TaskRef, WfCell, Workflow, queue_key};
use crate::expr;
use crate::model::{
    RetryPolicy, Shared, Task, TaskInternal, TaskStatus, WorkflowStatus, WorkflowTask, new_id,
    now_ms,
};
use crate::payload::{PayloadKind, Placement};
use crate::stats::inc;

/// A task input decided once and given to every task of a bulk request.
#[derive(Clone)]
pub(super) enum PreparedInput {
    Inline(Shared),
    External(Arc<str>),
    TooLarge(u64),
}

impl Store {
    /// A task input placed by its size: inline, stored externally, or too large.
    fn prepare_input(&self, input: Map<String, Value>) -> PreparedInput {
        match self.payloads.place(PayloadKind::Input, &input) {
            Placement::Inline => PreparedInput::Inline(Shared::new(Value::Object(input))),
            Placement::External(k) => PreparedInput::External(k.into()),
            Placement::TooLarge(n) => PreparedInput::TooLarge(n),
        }
    }

    /// Creates the task for position `pos` of the definition and queues it. `memo` carries the
    /// input decided for the first task of a bulk request to the others (same input for all).
    pub(super) fn schedule(
        &self,
        cell: &Arc<WfCell>,
        w: &mut Workflow,
        pos: usize,
        now: i64,
        actions: &mut Vec<Action>,
        memo: Option<&mut Option<PreparedInput>>,
    ) {
        let def = w.def.clone();
        let wt: &WorkflowTask = &def.def.tasks[pos];
        let resolve = || {
            let view = View {
                w,
                payloads: &self.payloads,
            };
            self.prepare_input(expr::resolve_map(&wt.input_parameters, &view))
        };
        let prepared = match memo {
            Some(Some(p)) => p.clone(),
            Some(slot) => slot.insert(resolve()).clone(),
            None => resolve(),
        };
        let mut task = self.new_task(w, pos, now);
        match prepared {
            PreparedInput::Inline(input) => task.input_data = input,
            PreparedInput::External(key) => {
                inc(&self.stats.externalized_inputs);
                task.external_input_payload_storage_path = Some(key);
            }
            PreparedInput::TooLarge(size) => {
                let reason = self.payloads.too_large_reason(size, &task.task_id, &w.id);
                task.status = TaskStatus::FailedWithTerminalError;
                task.reason_for_incompletion = Some(reason);
                task.end_time = now;
                inc(&self.stats.failed_terminal);
                let idx = w.tasks.len();
                self.add_task(cell, w, task, None, actions);
                self.fail_for_payload(w, idx, now, actions);
                return;
            }
        }
        self.add_task(cell, w, task, Some(0), actions);
    }

    /// The task for position `pos` of the definition, `SCHEDULED`, with an empty input.
    fn new_task(&self, w: &Workflow, pos: usize, now: i64) -> Task {
        let def = &w.def;
        let wt: &WorkflowTask = &def.def.tasks[pos];
        let (policy, rto) = match &w.policy_override {
            Some(p) => p.clone(),
            None => match self.taskdef(&wt.name) {
                Some(d) => (d.policy(), d.response_timeout_seconds),
                None => (RetryPolicy::default(), 3600),
            },
        };
        let domain = w
            .task_to_domain
            .get(&wt.name)
            .or_else(|| w.task_to_domain.get("*"))
            .and_then(|d| d.split(',').next())
            .map(str::trim)
            .filter(|d| !d.is_empty() && *d != "NO_DOMAIN")
            .map(Arc::<str>::from);
        let task_type: Arc<str> = wt.name.as_str().into();
        Task {
            task_type: task_type.clone(),
            status: TaskStatus::Scheduled,
            input_data: Shared::new(Value::Object(Map::new())),
            reference_task_name: wt.task_reference_name.as_str().into(),
            retry_count: 0,
            seq: w.tasks.len() as u32 + 1,
            correlation_id: w.correlation_id.clone(),
            poll_count: 0,
            task_def_name: task_type,
            scheduled_time: now,
            start_time: 0,
            end_time: 0,
            update_time: now,
            start_delay_in_seconds: 0,
            retried_task_id: None,
            retried: false,
            executed: false,
            callback_from_worker: true,
            response_timeout_seconds: rto,
            workflow_instance_id: w.id.clone(),
            workflow_type: w.name.clone(),
            task_id: new_id(),
            reason_for_incompletion: None,
            callback_after_seconds: 0,
            worker_id: None,
            output_data: Map::new(),
            workflow_task: def.workflow_tasks[pos].clone(),
            domain,
            rate_limit_per_frequency: 0,
            rate_limit_frequency_in_seconds: 1,
            workflow_priority: 0,
            iteration: 0,
            first_start_time: 0,
            external_input_payload_storage_path: None,
            external_output_payload_storage_path: None,
            sub_workflow_id: None,
            internal: TaskInternal {
                policy,
                ..Default::default()
            },
        }
    }

    /// Task `idx` was failed for a payload above the hard limit: the workflow fails with it,
    /// optional or not, as the real server's `TerminateWorkflowException` does.
    pub(super) fn fail_for_payload(
        &self,
        w: &mut Workflow,
        idx: usize,
        now: i64,
        actions: &mut Vec<Action>,
    ) {
        let t = &w.tasks[idx];
        // The real server names the workflow's status here, not the task's.
        let reason = format!(
            "Task {} failed with status: FAILED and reason: '{}'",
            t.task_id,
            t.reason_for_incompletion.as_deref().unwrap_or("")
        );
        self.end_workflow(w, WorkflowStatus::Failed, Some(reason), now, actions);
    }

    /// Appends a task to its workflow, indexes it and queues it after `delay_ms` (never when
    /// `None`: the task was created terminal).
    fn add_task(
        &self,
        cell: &Arc<WfCell>,
        w: &mut Workflow,
        mut task: Task,
        delay_ms: Option<u64>,
        actions: &mut Vec<Action>,
    ) {
        let idx = w.tasks.len();
        let id = task.task_id.clone();
        let key = queue_key(&task.task_type, task.domain.as_deref()).into_owned();
        match delay_ms {
            None => {}
            Some(0) => {
                task.internal.in_queue = true;
                actions.push(Action::Push {
                    key,
                    id: id.clone(),
                });
            }
            Some(delay_ms) => actions.push(Action::PushLater {
                key,
                id: id.clone(),
                delay_ms,
                wf: cell.clone(),
                idx,
            }),
        }
        w.tasks.push(task);
        w.update_time = now_ms();
        self.register(
            id,
            TaskRef {
                wf: cell.clone(),
                idx,
            },
        );
        inc(&self.stats.scheduled);
    }

    /// The workflow's next step after task `idx` reached a terminal status.
    pub(super) fn decide(
        &self,
        cell: &Arc<WfCell>,
        w: &mut Workflow,
        idx: usize,
        now: i64,
        actions: &mut Vec<Action>,
    ) {
        let t = &w.tasks[idx];
        let optional = w
            .def
            .def
            .tasks
            .iter()
            .find(|d| d.task_reference_name == *t.reference_task_name)
            .is_some_and(|d| d.optional);
        match t.status {
            TaskStatus::Completed => self.advance(cell, w, idx, now, actions),
            TaskStatus::Failed | TaskStatus::TimedOut
                if t.retry_count < t.internal.policy.retry_count =>
            {
                self.retry(cell, w, idx, now, actions)
            }
            _ if optional => self.advance(cell, w, idx, now, actions),
            status => {
                let t = &w.tasks[idx];
                let reason = format!(
                    "Task {} failed with status: {} and reason: '{}'",
                    t.task_id,
                    status.as_str(),
                    t.reason_for_incompletion.as_deref().unwrap_or("")
                );
                let wf_status = if status == TaskStatus::TimedOut {
                    WorkflowStatus::TimedOut
                } else {
                    WorkflowStatus::Failed
                };
                self.end_workflow(w, wf_status, Some(reason), now, actions);
            }
        }
    }

    fn retry(
        &self,
        cell: &Arc<WfCell>,
        w: &mut Workflow,
        idx: usize,
        now: i64,
        actions: &mut Vec<Action>,
    ) {
        let old = &mut w.tasks[idx];
        old.retried = true;
        let delay_ms = old.internal.policy.delay_ms(old.retry_count);
        let mut t = old.clone();
        t.internal = TaskInternal {
            policy: old.internal.policy.clone(),
            ..Default::default()
        };
        t.retried_task_id = Some(old.task_id.clone());
        t.task_id = new_id();
        t.retry_count += 1;
        t.status = TaskStatus::Scheduled;
        t.retried = false;
        t.poll_count = 0;
        t.seq = w.tasks.len() as u32 + 1;
        t.scheduled_time = now;
        t.start_time = 0;
        t.end_time = 0;
        t.update_time = now;
        t.callback_after_seconds = 0;
        t.worker_id = None;
        t.reason_for_incompletion = None;
        t.output_data = Map::new();
        // The input (and its storage key) carries over; the output starts afresh.
        t.external_output_payload_storage_path = None;
        t.executed = false;
        self.add_task(cell, w, t, Some(delay_ms), actions);
    }

    fn advance(
        &self,
        cell: &Arc<WfCell>,
        w: &mut Workflow,
        idx: usize,
        now: i64,
        actions: &mut Vec<Action>,
    ) {
        let reference = w.tasks[idx].reference_task_name.clone();
        let pos = w
            .def
            .def
            .tasks
            .iter()
            .position(|d| *d.task_reference_name == *reference);
        match pos {
            Some(p) if p + 1 < w.def.def.tasks.len() => {
                self.schedule(cell, w, p + 1, now, actions, None)
            }
            _ => {
                let params = &w.def.def.output_parameters;
                let view = View {
                    w,
                    payloads: &self.payloads,
                };
                // Stored outputs are read back: the workflow's output is always inline.
                let output = if params.is_empty() {
                    // The real server's default: the last task's output becomes the workflow's.
                    view.output(&w.tasks[idx]).into_owned()
                } else {
                    expr::resolve_map(params, &view)
                };
                w.output = output;
                self.end_workflow(w, WorkflowStatus::Completed, None, now, actions);
            }
        }
    }

    fn end_workflow(
        &self,
        w: &mut Workflow,
        status: WorkflowStatus,
        reason: Option<String>,
        now: i64,
        actions: &mut Vec<Action>,
    ) {
        w.status = status;
        w.reason = reason;
        w.end_time = now;
        w.update_time = now;
        for t in w.tasks.iter_mut().filter(|t| !t.status.is_terminal()) {
            if t.status == TaskStatus::InProgress {
                self.stats
                    .in_progress
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
            t.status = TaskStatus::Canceled;
            t.end_time = now;
            unqueue(t, actions);
        }
    }
}
