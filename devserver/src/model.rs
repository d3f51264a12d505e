//! Wire types: the JSON the server reads and writes, shaped like conductor-oss 3.32's.
//!
//! Fields the server does not interpret are kept in `extra` maps so that what a client registers is
//! what it reads back.

use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// Milliseconds since the Unix epoch, the unit of every timestamp on the wire.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A random UUID v4 in its usual text form, as the real server uses for task and workflow ids.
pub fn new_id() -> Arc<str> {
    let v = fastrand::u128(..);
    // Version 4, variant 10xx: what a UUID parser on the client side expects.
    let v = (v & !(0xF << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let hex = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
    .into()
}

/// Task status, as `Task.Status` in conductor-common.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    InProgress,
    Canceled,
    Failed,
    FailedWithTerminalError,
    Completed,
    CompletedWithErrors,
    Scheduled,
    TimedOut,
    Skipped,
}

impl TaskStatus {
    /// Whether the task has reached an end state; updates to such a task are ignored.
    pub fn is_terminal(self) -> bool {
        !matches!(self, TaskStatus::InProgress | TaskStatus::Scheduled)
    }

    /// The wire name, e.g. `"IN_PROGRESS"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::InProgress => "IN_PROGRESS",
            TaskStatus::Canceled => "CANCELED",
            TaskStatus::Failed => "FAILED",
            TaskStatus::FailedWithTerminalError => "FAILED_WITH_TERMINAL_ERROR",
            TaskStatus::Completed => "COMPLETED",
            TaskStatus::CompletedWithErrors => "COMPLETED_WITH_ERRORS",
            TaskStatus::Scheduled => "SCHEDULED",
            TaskStatus::TimedOut => "TIMED_OUT",
            TaskStatus::Skipped => "SKIPPED",
        }
    }
}

/// Workflow status, as `Workflow.WorkflowStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkflowStatus {
    Running,
    Completed,
    Failed,
    TimedOut,
    Terminated,
    Paused,
}

impl WorkflowStatus {
    /// Whether the workflow has ended.
    pub fn is_terminal(self) -> bool {
        !matches!(self, WorkflowStatus::Running | WorkflowStatus::Paused)
    }
}

/// An immutable JSON value shared between many tasks (the embedded `workflowTask`, bulk inputs),
/// so that scheduling a task does not deep-copy it.
#[derive(Debug, Clone, Default)]
pub struct Shared(pub Arc<Value>);

impl Serialize for Shared {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Shared {
    /// Wraps a value.
    pub fn new(v: Value) -> Self {
        Shared(Arc::new(v))
    }
}

/// One entry of a task's execution log (`TaskExecLog`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskExecLog {
    #[serde(default)]
    pub log: Option<String>,
    #[serde(default)]
    pub task_id: Option<String>,
    #[serde(default)]
    pub created_time: i64,
}

/// What a worker sends to `POST /api/tasks` (`TaskResult`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskResult {
    #[serde(default)]
    pub workflow_instance_id: Option<String>,
    #[serde(default)]
    pub task_id: Option<String>,
    #[serde(default)]
    pub status: Option<TaskStatus>,
    #[serde(default)]
    pub output_data: Option<Map<String, Value>>,
    #[serde(default)]
    pub reason_for_incompletion: Option<String>,
    #[serde(default)]
    pub callback_after_seconds: Option<i64>,
    #[serde(default)]
    pub worker_id: Option<String>,
    #[serde(default)]
    pub logs: Option<Vec<TaskExecLog>>,
    #[serde(default)]
    pub extend_lease: bool,
    #[serde(default)]
    pub external_output_payload_storage_path: Option<String>,
    #[serde(default)]
    pub sub_workflow_id: Option<String>,
}

/// A task as the server returns it (`Task`). Internal bookkeeping is skipped on the wire.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub task_type: Arc<str>,
    pub status: TaskStatus,
    pub input_data: Shared,
    pub reference_task_name: Arc<str>,
    pub retry_count: u32,
    pub seq: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Arc<str>>,
    pub poll_count: u32,
    pub task_def_name: Arc<str>,
    pub scheduled_time: i64,
    pub start_time: i64,
    pub end_time: i64,
    pub update_time: i64,
    pub start_delay_in_seconds: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retried_task_id: Option<Arc<str>>,
    pub retried: bool,
    pub executed: bool,
    pub callback_from_worker: bool,
    pub response_timeout_seconds: i64,
    pub workflow_instance_id: Arc<str>,
    pub workflow_type: Arc<str>,
    pub task_id: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_for_incompletion: Option<String>,
    pub callback_after_seconds: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    pub output_data: Map<String, Value>,
    pub workflow_task: Shared,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<Arc<str>>,
    pub rate_limit_per_frequency: i32,
    pub rate_limit_frequency_in_seconds: i32,
    pub workflow_priority: i32,
    pub iteration: i32,
    pub first_start_time: i64,
    /// Key of the input in external storage; `input_data` is then `{}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_input_payload_storage_path: Option<Arc<str>>,
    /// Key of the output in external storage; `output_data` is then `{}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_output_payload_storage_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_workflow_id: Option<String>,
    #[serde(skip)]
    pub internal: TaskInternal,
}

/// Server-side bookkeeping of a task that never goes on the wire.
#[derive(Debug, Clone, Default)]
pub struct TaskInternal {
    /// Whether the task id currently sits in its queue (guards against double delivery when a
    /// delayed re-queue and an immediate one race).
    pub in_queue: bool,
    /// Retry policy snapshotted from the task definition when the task was scheduled.
    pub policy: RetryPolicy,
    pub logs: Vec<TaskExecLog>,
    pub history: Vec<HistoryEntry>,
    /// A worker's terminal result was applied and answered: another terminal result for this
    /// task is a duplicate (`updates.duplicate_results`).
    pub result_answered: bool,
}

/// One update a task received, for `GET /admin/tasks/{id}/history`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryEntry {
    pub status: String,
    pub at_ms: i64,
    #[serde(default)]
    pub extend_lease: bool,
    /// True when the update reached a terminal task and was ignored.
    #[serde(default)]
    pub ignored: bool,
}

/// The retry-relevant part of a task definition.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub retry_count: u32,
    pub retry_delay_seconds: i64,
    pub retry_logic: RetryLogic,
    pub backoff_scale_factor: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retry_count: 3,
            retry_delay_seconds: 60,
            retry_logic: RetryLogic::Fixed,
            backoff_scale_factor: 1,
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `retry_count + 1`, in milliseconds, as the real decider computes it.
    pub fn delay_ms(&self, retry_count: u32) -> u64 {
        let base = self.retry_delay_seconds.max(0) as u64;
        let secs = match self.retry_logic {
            RetryLogic::Fixed => base,
            RetryLogic::ExponentialBackoff => base.saturating_mul(1u64 << retry_count.min(30)),
            RetryLogic::LinearBackoff => base
                .saturating_mul(self.backoff_scale_factor.max(1) as u64)
                .saturating_mul(u64::from(retry_count) + 1),
        };
        secs.saturating_mul(1000)
    }
}

/// `TaskDef.retryLogic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RetryLogic {
    #[default]
    Fixed,
    ExponentialBackoff,
    LinearBackoff,
}

fn default_retry_count() -> u32 {
    3
}
fn default_retry_delay() -> i64 {
    60
}
fn default_response_timeout() -> i64 {
    3600
}
fn default_one() -> i64 {
    1
}

/// A task definition (`TaskDef`), with the real server's defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDef {
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_retry_count")]
    pub retry_count: u32,
    #[serde(default)]
    pub timeout_seconds: i64,
    #[serde(default = "default_retry_delay")]
    pub retry_delay_seconds: i64,
    #[serde(default = "default_response_timeout")]
    pub response_timeout_seconds: i64,
    #[serde(default)]
    pub retry_logic: RetryLogic,
    #[serde(default = "default_one")]
    pub backoff_scale_factor: i64,
    #[serde(default)]
    pub poll_timeout_seconds: Option<i64>,
    #[serde(default)]
    pub owner_email: Option<String>,
    #[serde(default)]
    pub create_time: Option<i64>,
    #[serde(default)]
    pub update_time: Option<i64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl TaskDef {
    /// A definition with every default, as the server assumes for a type nobody registered.
    pub fn with_defaults(name: &str) -> TaskDef {
        TaskDef {
            name: name.to_string(),
            retry_count: default_retry_count(),
            timeout_seconds: 0,
            retry_delay_seconds: default_retry_delay(),
            response_timeout_seconds: default_response_timeout(),
            retry_logic: RetryLogic::Fixed,
            backoff_scale_factor: 1,
            poll_timeout_seconds: None,
            owner_email: None,
            create_time: None,
            update_time: None,
            extra: Map::new(),
        }
    }

    /// The real server's bean validation, reduced to the rules a worker runtime meets.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("TaskDef name cannot be null or empty".into());
        }
        if self.response_timeout_seconds < 1 {
            return Err(format!(
                "TaskDef: {} responseTimeoutSeconds: {} must be greater than 0",
                self.name, self.response_timeout_seconds
            ));
        }
        if self.timeout_seconds > 0 && self.response_timeout_seconds > self.timeout_seconds {
            return Err(format!(
                "TaskDef: {} responseTimeoutSeconds: {} must be less than timeoutSeconds: {}",
                self.name, self.response_timeout_seconds, self.timeout_seconds
            ));
        }
        Ok(())
    }

    /// The part of the definition the retry logic needs.
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy {
            retry_count: self.retry_count,
            retry_delay_seconds: self.retry_delay_seconds,
            retry_logic: self.retry_logic,
            backoff_scale_factor: self.backoff_scale_factor,
        }
    }
}

fn default_task_type() -> String {
    "SIMPLE".into()
}

/// One task of a workflow definition (`WorkflowTask`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowTask {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub task_reference_name: String,
    #[serde(default = "default_task_type", rename = "type")]
    pub task_type: String,
    #[serde(default)]
    pub input_parameters: Map<String, Value>,
    #[serde(default)]
    pub optional: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn default_version() -> i32 {
    1
}

/// A workflow definition (`WorkflowDef`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowDef {
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_version")]
    pub version: i32,
    #[serde(default)]
    pub tasks: Vec<WorkflowTask>,
    #[serde(default)]
    pub output_parameters: Map<String, Value>,
    #[serde(default)]
    pub timeout_seconds: Option<i64>,
    #[serde(default)]
    pub owner_email: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl WorkflowDef {
    /// Rejects what the dev server cannot run, naming the offending task.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("WorkflowDef name cannot be null or empty".into());
        }
        if self.tasks.is_empty() {
            return Err(format!(
                "WorkflowDef {}: workflowTask list cannot be empty",
                self.name
            ));
        }
        let mut refs = std::collections::HashSet::new();
        for t in &self.tasks {
            if t.task_type != "SIMPLE" {
                return Err(format!(
                    "WorkflowDef {}: task {:?} has type {}; the dev server runs only SIMPLE tasks",
                    self.name, t.task_reference_name, t.task_type
                ));
            }
            if t.name.is_empty() || t.task_reference_name.is_empty() {
                return Err(format!(
                    "WorkflowDef {}: every task needs a name and a taskReferenceName",
                    self.name
                ));
            }
            if !refs.insert(t.task_reference_name.as_str()) {
                return Err(format!(
                    "WorkflowDef {}: taskReferenceName {} is used twice",
                    self.name, t.task_reference_name
                ));
            }
        }
        Ok(())
    }
}

/// Body of `POST /api/workflow` (`StartWorkflowRequest`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartWorkflowRequest {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: Option<i32>,
    #[serde(default)]
    pub input: Option<Map<String, Value>>,
    #[serde(default)]
    pub task_to_domain: Option<std::collections::HashMap<String, String>>,
    #[serde(default)]
    pub correlation_id: Option<String>,
    #[serde(default)]
    pub workflow_def: Option<WorkflowDef>,
}

/// The error body of the real server (`ErrorResponse`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub status: u16,
    pub message: String,
    pub instance: String,
    pub retryable: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_v4_shaped() {
        let id = new_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(new_id(), id);
    }

    #[test]
    fn task_def_defaults_match_the_server() {
        let d: TaskDef = serde_json::from_str(r#"{"name":"t"}"#).unwrap();
        assert_eq!(d.retry_count, 3);
        assert_eq!(d.retry_delay_seconds, 60);
        assert_eq!(d.response_timeout_seconds, 3600);
        assert_eq!(d.timeout_seconds, 0);
        assert!(d.validate().is_ok());
        let bad: TaskDef =
            serde_json::from_str(r#"{"name":"t","timeoutSeconds":5,"responseTimeoutSeconds":10}"#)
                .unwrap();
        assert!(bad.validate().is_err());
    }

    #[test]
    fn retry_delays_follow_the_retry_logic() {
        let mut p = RetryPolicy {
            retry_count: 3,
            retry_delay_seconds: 2,
            retry_logic: RetryLogic::Fixed,
            backoff_scale_factor: 1,
        };
        assert_eq!(p.delay_ms(2), 2000);
        p.retry_logic = RetryLogic::ExponentialBackoff;
        assert_eq!(p.delay_ms(2), 8000);
        p.retry_logic = RetryLogic::LinearBackoff;
        p.backoff_scale_factor = 3;
        assert_eq!(p.delay_ms(1), 12000);
    }

    #[test]
    fn workflow_defs_with_other_task_types_are_rejected() {
        let d: WorkflowDef = serde_json::from_str(
            r#"{"name":"w","tasks":[{"name":"x","taskReferenceName":"x","type":"HTTP"}]}"#,
        )
        .unwrap();
        let err = d.validate().unwrap_err();
        assert!(err.contains("HTTP"), "{err}");
    }
}
