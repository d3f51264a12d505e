//! The server's JSON types: what a poll returns ([`Task`]), what a worker sends back
//! ([`TaskResult`]) and what registration sends ([`TaskDef`]).
//!
//! Decoding is lenient the way a worker must be: unknown fields are ignored, `null` where a
//! number or string is expected reads as its default, and an unknown status string is kept as
//! [`TaskStatus::Unknown`] rather than failing the whole poll.
//!
//! ```
//! use conductor_worker::api::{Task, TaskStatus};
//! let task: Task = serde_json::from_str(
//!     r#"{"taskId":"t1","taskType":"greet","workflowInstanceId":"w1","status":"IN_PROGRESS",
//!         "inputData":{"name":"Ada"},"someFieldFromANewerServer":{"x":1},"retryCount":null}"#,
//! ).unwrap();
//! assert_eq!(task.task_id, "t1");
//! assert_eq!(task.status, TaskStatus::InProgress);
//! assert_eq!(task.retry_count, 0);
//! ```

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// A JSON object, as task input and output are.
pub type JsonObject = Map<String, Value>;

/// Status of a task, as the server reports it and as a worker sets it in a [`TaskResult`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Queued, not yet polled.
    Scheduled,
    /// Polled by a worker (or, in a result, "call me back later": see [`TaskResult::in_progress`]).
    InProgress,
    /// Done.
    Completed,
    /// Done with errors (server-side only).
    CompletedWithErrors,
    /// Failed; the server retries it per the task definition.
    Failed,
    /// Failed; the server never retries it.
    FailedWithTerminalError,
    /// Timed out (set by the server only).
    TimedOut,
    /// Canceled.
    Canceled,
    /// Skipped (server-side only).
    Skipped,
    /// A status this version does not know; kept so one new status never breaks a poll.
    #[serde(other)]
    Unknown,
}

impl TaskStatus {
    /// Whether the server considers a task in this status finished.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Scheduled | Self::InProgress | Self::Unknown)
    }

    /// The name the server uses for this status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "SCHEDULED",
            Self::InProgress => "IN_PROGRESS",
            Self::Completed => "COMPLETED",
            Self::CompletedWithErrors => "COMPLETED_WITH_ERRORS",
            Self::Failed => "FAILED",
            Self::FailedWithTerminalError => "FAILED_WITH_TERMINAL_ERROR",
            Self::TimedOut => "TIMED_OUT",
            Self::Canceled => "CANCELED",
            Self::Skipped => "SKIPPED",
            Self::Unknown => "UNKNOWN",
        }
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TaskStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match serde_json::from_value::<TaskStatus>(Value::String(s.to_owned())) {
            Ok(Self::Unknown) | Err(_) => Err(format!("unknown task status {s:?}")),
            Ok(status) => Ok(status),
        }
    }
}

fn null_as_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

fn default_status() -> TaskStatus {
    TaskStatus::InProgress
}

/// A task as a poll returns it. Only the fields a worker uses are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// Unique id of this attempt; a retry gets a new id.
    pub task_id: String,
    /// The task type (the task definition's name).
    #[serde(default, deserialize_with = "null_as_default")]
    pub task_type: String,
    /// The task definition's name (usually equal to `task_type`).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub task_def_name: String,
    /// The task's reference name inside its workflow.
    #[serde(default, deserialize_with = "null_as_default")]
    pub reference_task_name: String,
    /// The workflow this task belongs to.
    #[serde(default, deserialize_with = "null_as_default")]
    pub workflow_instance_id: String,
    /// The workflow's name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub workflow_type: String,
    /// Status; `IN_PROGRESS` for a freshly polled task.
    #[serde(default = "default_status", deserialize_with = "status_or_default")]
    pub status: TaskStatus,
    /// The task's input.
    #[serde(default, deserialize_with = "null_as_default")]
    pub input_data: JsonObject,
    /// How many times this task has been retried (0 for the first attempt).
    #[serde(default, deserialize_with = "null_as_default")]
    pub retry_count: u32,
    /// How many times this attempt has been polled (more than 1 after `IN_PROGRESS` callbacks).
    #[serde(default, deserialize_with = "null_as_default")]
    pub poll_count: u32,
    /// The workflow's correlation id, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The domain the task was scheduled in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Seconds after which the server times out an attempt that has not been updated.
    #[serde(default, deserialize_with = "null_as_default")]
    pub response_timeout_seconds: u64,
    /// The callback delay of the last `IN_PROGRESS` update.
    #[serde(default, deserialize_with = "null_as_default")]
    pub callback_after_seconds: u64,
    /// The worker id the server recorded for the poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// Iteration inside a loop task.
    #[serde(default, deserialize_with = "null_as_default")]
    pub iteration: u32,
    /// Output stored so far (set by earlier `IN_PROGRESS` updates).
    #[serde(default, deserialize_with = "null_as_default")]
    pub output_data: JsonObject,
    /// Milliseconds since the epoch when the task was scheduled.
    #[serde(default, deserialize_with = "null_as_default")]
    pub scheduled_time: i64,
    /// Milliseconds since the epoch of the first poll.
    #[serde(default, deserialize_with = "null_as_default")]
    pub start_time: i64,
    /// Where the server stored this task's input instead of sending it (the input was larger
    /// than its threshold). The runtime downloads it into `input_data` before any executor sees
    /// the task, and keeps the path here for reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_input_payload_storage_path: Option<String>,
}

fn status_or_default<'de, D: Deserializer<'de>>(de: D) -> Result<TaskStatus, D::Error> {
    Ok(Option::<TaskStatus>::deserialize(de)?.unwrap_or(TaskStatus::InProgress))
}

/// One line of a task's execution log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskExecLog {
    /// The message.
    pub log: String,
    /// The task it belongs to.
    #[serde(default, deserialize_with = "null_as_default")]
    pub task_id: String,
    /// Milliseconds since the epoch.
    #[serde(default, deserialize_with = "null_as_default")]
    pub created_time: i64,
}

impl TaskExecLog {
    /// A log line for `task_id`, stamped now.
    pub fn new(task_id: impl Into<String>, log: impl Into<String>) -> Self {
        Self {
            log: log.into(),
            task_id: task_id.into(),
            created_time: now_millis(),
        }
    }
}

pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What a worker reports about a task.
///
/// ```
/// use conductor_worker::api::{TaskResult, TaskStatus};
/// let mut output = serde_json::Map::new();
/// output.insert("greeting".into(), "hello".into());
/// let result = TaskResult::completed("task-1", "wf-1", output);
/// assert_eq!(result.status, TaskStatus::Completed);
/// let json = serde_json::to_value(&result).unwrap();
/// assert_eq!(json["outputData"]["greeting"], "hello");
/// assert!(json.get("extendLease").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskResult {
    /// The task this result is for.
    pub task_id: String,
    /// The workflow of that task (the server requires it).
    pub workflow_instance_id: String,
    /// The outcome.
    pub status: TaskStatus,
    /// Output of the task.
    #[serde(default)]
    pub output_data: JsonObject,
    /// Why the task failed, for `FAILED` and `FAILED_WITH_TERMINAL_ERROR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_for_incompletion: Option<String>,
    /// With `IN_PROGRESS`: seconds before the server offers the task again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_after_seconds: Option<u64>,
    /// Log lines appended to the task's execution log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<TaskExecLog>,
    /// The worker reporting; update-v2 polls the next task under this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// `true` turns the update into a pure lease renewal.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub extend_lease: bool,
    /// Where the output was uploaded instead of being sent in `output_data` (set by the update
    /// pipeline for outputs above the external payload threshold, never by task code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_output_payload_storage_path: Option<String>,
}

impl TaskResult {
    fn new(task_id: &str, workflow_id: &str, status: TaskStatus) -> Self {
        Self {
            task_id: task_id.to_owned(),
            workflow_instance_id: workflow_id.to_owned(),
            status,
            output_data: JsonObject::new(),
            reason_for_incompletion: None,
            callback_after_seconds: None,
            logs: Vec::new(),
            worker_id: None,
            extend_lease: false,
            external_output_payload_storage_path: None,
        }
    }

    /// A `COMPLETED` result with `output`.
    pub fn completed(task_id: &str, workflow_id: &str, output: JsonObject) -> Self {
        Self {
            output_data: output,
            ..Self::new(task_id, workflow_id, TaskStatus::Completed)
        }
    }

    /// A `FAILED` result (retried by the server per the task definition).
    pub fn failed(task_id: &str, workflow_id: &str, reason: impl Into<String>) -> Self {
        Self {
            reason_for_incompletion: Some(reason.into()),
            ..Self::new(task_id, workflow_id, TaskStatus::Failed)
        }
    }

    /// A `FAILED_WITH_TERMINAL_ERROR` result (never retried).
    pub fn failed_terminal(task_id: &str, workflow_id: &str, reason: impl Into<String>) -> Self {
        Self {
            reason_for_incompletion: Some(reason.into()),
            ..Self::new(task_id, workflow_id, TaskStatus::FailedWithTerminalError)
        }
    }

    /// An `IN_PROGRESS` result: the server puts the task back in its queue and offers it again
    /// after `callback_after_seconds` (with `pollCount` + 1).
    pub fn in_progress(task_id: &str, workflow_id: &str, callback_after_seconds: u64) -> Self {
        Self {
            callback_after_seconds: Some(callback_after_seconds),
            ..Self::new(task_id, workflow_id, TaskStatus::InProgress)
        }
    }

    /// A lease renewal: only the task's update time changes on the server.
    pub fn lease_extension(task_id: &str, workflow_id: &str) -> Self {
        Self {
            extend_lease: true,
            ..Self::new(task_id, workflow_id, TaskStatus::InProgress)
        }
    }

    /// The result a host executor (Python, Ruby) reports for `task`: `status` as the server
    /// spells it (`COMPLETED`, `FAILED`, `FAILED_WITH_TERMINAL_ERROR` or `IN_PROGRESS`; any
    /// other is an error naming it), `callback_after_seconds` for `IN_PROGRESS` (0 if not
    /// given), and lines for the task's log.
    ///
    /// ```
    /// # use conductor_worker::{Task, TaskResult, TaskStatus};
    /// let task: Task = serde_json::from_str(r#"{"taskId":"t1","workflowInstanceId":"w1"}"#).unwrap();
    /// let result = TaskResult::reported(&task, "IN_PROGRESS", Default::default(), None, None, vec!["half".into()]).unwrap();
    /// assert_eq!((result.status, result.callback_after_seconds, result.logs.len()), (TaskStatus::InProgress, Some(0), 1));
    /// assert!(TaskResult::reported(&task, "SCHEDULED", Default::default(), None, None, vec![]).is_err());
    /// ```
    pub fn reported(
        task: &Task,
        status: &str,
        output: JsonObject,
        reason: Option<String>,
        callback_after_seconds: Option<u64>,
        logs: Vec<String>,
    ) -> crate::Result<Self> {
        let status = match status {
            "COMPLETED" => TaskStatus::Completed,
            "FAILED" => TaskStatus::Failed,
            "FAILED_WITH_TERMINAL_ERROR" => TaskStatus::FailedWithTerminalError,
            "IN_PROGRESS" => TaskStatus::InProgress,
            other => {
                return Err(crate::Error::config(
                    "status",
                    other,
                    "a worker reports COMPLETED, FAILED, FAILED_WITH_TERMINAL_ERROR or IN_PROGRESS",
                ));
            }
        };
        let mut result = Self {
            output_data: output,
            reason_for_incompletion: reason,
            callback_after_seconds: (status == TaskStatus::InProgress)
                .then(|| callback_after_seconds.unwrap_or(0)),
            ..Self::new(&task.task_id, &task.workflow_instance_id, status)
        };
        for line in logs {
            result.log(line);
        }
        Ok(result)
    }

    /// This result with its output replaced by the `path` it was uploaded to (the output
    /// itself is not copied).
    ///
    /// ```
    /// # use conductor_worker::TaskResult;
    /// let mut output = serde_json::Map::new();
    /// output.insert("big".into(), "x".into());
    /// let sent = TaskResult::completed("t1", "w1", output).with_external_output("k.json".into());
    /// let json = serde_json::to_value(&sent).unwrap();
    /// assert_eq!(json["externalOutputPayloadStoragePath"], "k.json");
    /// assert_eq!(json["outputData"], serde_json::json!({}));
    /// ```
    pub fn with_external_output(&self, path: String) -> Self {
        Self {
            task_id: self.task_id.clone(),
            workflow_instance_id: self.workflow_instance_id.clone(),
            status: self.status,
            output_data: JsonObject::new(),
            reason_for_incompletion: self.reason_for_incompletion.clone(),
            callback_after_seconds: self.callback_after_seconds,
            logs: self.logs.clone(),
            worker_id: self.worker_id.clone(),
            extend_lease: self.extend_lease,
            external_output_payload_storage_path: Some(path),
        }
    }

    /// Appends a line to the task's execution log.
    pub fn log(&mut self, line: impl Into<String>) -> &mut Self {
        let log = TaskExecLog::new(self.task_id.clone(), line);
        self.logs.push(log);
        self
    }
}

/// A task definition, as registered with `POST /api/metadata/taskdefs`.
///
/// Fields this crate does not model can be set in `extra`; they are sent as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDef {
    /// The task type.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// How many times a `FAILED` or timed-out task is retried.
    pub retry_count: u32,
    /// `FIXED`, `EXPONENTIAL_BACKOFF` or `LINEAR_BACKOFF`.
    pub retry_logic: String,
    /// Delay before a retry.
    pub retry_delay_seconds: u64,
    /// Total time per attempt (0: unlimited).
    pub timeout_seconds: u64,
    /// `RETRY`, `TIME_OUT_WF` or `ALERT_ONLY`.
    pub timeout_policy: String,
    /// Time without an update after which an attempt is timed out.
    pub response_timeout_seconds: u64,
    /// Owner, required by some server versions.
    pub owner_email: String,
    /// Anything else the server accepts.
    #[serde(flatten)]
    pub extra: JsonObject,
}

impl TaskDef {
    /// A definition with the server's defaults except a 60 s response timeout and a 10 s
    /// retry delay (the server's 3600 s / 60 s make failures slow to notice).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: None,
            retry_count: 3,
            retry_logic: "FIXED".into(),
            retry_delay_seconds: 10,
            timeout_seconds: 0,
            timeout_policy: "RETRY".into(),
            response_timeout_seconds: 60,
            owner_email: "conductor-worker@localhost".into(),
            extra: JsonObject::new(),
        }
    }

    /// [`TaskDef::new`] with `fields` (in the server's own camelCase names) laid over its
    /// defaults: how the bindings read a definition given as a dict or hash. The error names
    /// the task type and the field that did not fit.
    ///
    /// ```
    /// # use conductor_worker::TaskDef;
    /// let fields = serde_json::json!({"retryCount": 5, "concurrentExecLimit": 2});
    /// let def = TaskDef::with_fields("resize", fields.as_object().unwrap().clone()).unwrap();
    /// assert_eq!((def.retry_count, def.response_timeout_seconds), (5, 60));
    /// assert!(TaskDef::with_fields("resize", serde_json::json!({"retryCount": "x"})
    ///     .as_object().unwrap().clone()).is_err());
    /// ```
    pub fn with_fields(name: &str, fields: JsonObject) -> crate::Result<Self> {
        let given: String = serde_json::Value::Object(fields.clone())
            .to_string()
            .chars()
            .take(200)
            .collect();
        let invalid = |e: serde_json::Error| {
            crate::Error::config(
                format!("task definition for {name:?}"),
                &given,
                e.to_string(),
            )
        };
        let mut value = serde_json::to_value(Self::new(name)).map_err(invalid)?;
        if let Some(base) = value.as_object_mut() {
            base.extend(fields);
        }
        serde_json::from_value(value).map_err(invalid)
    }
}

/// The error body the server sends with 4xx/5xx answers (`ErrorResponse`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorResponse {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_status_does_not_fail_decoding() {
        let task: Task =
            serde_json::from_str(r#"{"taskId":"a","status":"SOMETHING_NEW"}"#).unwrap();
        assert_eq!(task.status, TaskStatus::Unknown);
        assert!("SOMETHING_NEW".parse::<TaskStatus>().is_err());
        assert_eq!("COMPLETED".parse::<TaskStatus>(), Ok(TaskStatus::Completed));
    }

    #[test]
    fn nulls_read_as_defaults() {
        let task: Task = serde_json::from_str(
            r#"{"taskId":"a","inputData":null,"pollCount":null,"taskType":null,"status":null}"#,
        )
        .unwrap();
        assert!(task.input_data.is_empty());
        assert_eq!(task.poll_count, 0);
        assert_eq!(task.status, TaskStatus::InProgress);
    }

    #[test]
    fn large_payloads_decode() {
        let big = "x".repeat(10 * 1024 * 1024);
        let json = serde_json::json!({"taskId": "a", "inputData": {"blob": big}}).to_string();
        let task: Task = serde_json::from_str(&json).unwrap();
        assert_eq!(
            task.input_data["blob"].as_str().map(str::len),
            Some(10 * 1024 * 1024)
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let depth = 100_000;
        let json = format!(
            r#"{{"taskId":"a","inputData":{{"x":{}{}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let err = serde_json::from_str::<Task>(&json).unwrap_err();
        assert!(err.to_string().contains("recursion limit"), "{err}");
    }

    #[test]
    fn task_def_keeps_extra_fields() {
        let mut def = TaskDef::new("t");
        def.extra.insert("concurrentExecLimit".into(), 5.into());
        let json = serde_json::to_value(&def).unwrap();
        assert_eq!(json["concurrentExecLimit"], 5);
        assert_eq!(json["responseTimeoutSeconds"], 60);
    }
}
