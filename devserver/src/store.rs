//! The in-memory state and the execution semantics: queues, tasks, workflows, definitions,
//! retries and timeouts.
//!
//! Locking: every task lives inside its workflow, and a workflow has its own mutex, so work on
//! different workflows never contends. Queues have their own mutex each and are only held to pop or
//! push ids. The task-id index and the workflow map are sharded. No lock is global, and the only
//! lock held while a task is serialized is that task's workflow's. Lock order: workflow, then
//! index shard or queue or timeout heap; never the other way.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Notify;

use crate::error::ApiError;
use crate::expr::{self, Scope, TaskData};
use crate::model::{
    HistoryEntry, RetryPolicy, Shared, StartWorkflowRequest, Task, TaskDef, TaskExecLog,
    TaskInternal, TaskResult, TaskStatus, WorkflowDef, WorkflowStatus, WorkflowTask, new_id,
    now_ms,
};
use crate::payload::{PayloadKind, PayloadLimits, Payloads, Placement};
use crate::stats::{Counters, inc};

const SHARDS: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock must not take the whole server down with poisoned locks.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One task queue (a task type in a domain) and the long polls waiting on it.
#[derive(Default)]
pub struct Queue {
    items: Mutex<VecDeque<Arc<str>>>,
    notify: Notify,
}

/// A workflow definition with what scheduling needs precomputed.
pub struct CompiledDef {
    pub def: WorkflowDef,
    /// The embedded `workflowTask` JSON of each task, shared by every task scheduled from it.
    workflow_tasks: Vec<Shared>,
}

impl CompiledDef {
    fn new(def: WorkflowDef) -> CompiledDef {
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

/// A running or finished workflow, with all its tasks.
pub struct Workflow {
    id: Arc<str>,
    name: Arc<str>,
    def: Arc<CompiledDef>,
    status: WorkflowStatus,
    input: Map<String, Value>,
    output: Map<String, Value>,
    correlation_id: Option<Arc<str>>,
    task_to_domain: HashMap<String, String>,
    create_time: i64,
    update_time: i64,
    end_time: i64,
    reason: Option<String>,
    /// Policy for tasks created by `POST /admin/tasks`, which overrides the task definition.
    policy_override: Option<(RetryPolicy, i64)>,
    tasks: Vec<Task>,
}

type WfCell = Mutex<Workflow>;

/// (deadline in ms, task id), earliest first.
type Deadline = Reverse<(i64, Arc<str>)>;

#[derive(Clone)]
struct TaskRef {
    wf: Arc<WfCell>,
    idx: usize,
}

/// A workflow as expressions see it: task payloads stored externally are read back.
struct View<'a> {
    w: &'a Workflow,
    payloads: &'a Payloads,
}

impl View<'_> {
    fn input<'t>(&self, t: &'t Task) -> Cow<'t, Value> {
        match &t.external_input_payload_storage_path {
            Some(k) => Cow::Owned(Value::Object(self.payloads.load(k))),
            None => Cow::Borrowed(&*t.input_data.0),
        }
    }

    fn output<'t>(&self, t: &'t Task) -> Cow<'t, Map<String, Value>> {
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

/// A task input decided once and given to every task of a bulk request.
#[derive(Clone)]
enum PreparedInput {
    Inline(Shared),
    External(Arc<str>),
    TooLarge(u64),
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

/// Queue work decided under a workflow lock and done after releasing it.
enum Action {
    Push {
        key: String,
        id: Arc<str>,
    },
    PushLater {
        key: String,
        id: Arc<str>,
        delay_ms: u64,
        wf: Arc<WfCell>,
        idx: usize,
    },
    Unqueue {
        key: String,
        id: Arc<str>,
    },
}

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

/// How many tasks a poll wants and how long it waits for them.
#[derive(Debug, Clone, Copy)]
pub struct Want {
    pub count: usize,
    pub timeout_ms: u64,
    /// Wait for all `count` until the timeout instead of answering with the first task.
    pub wait_for_count: bool,
}

impl Want {
    /// The real single poll (and update-v2's next task): one task, waiting up to 100 ms.
    pub const ONE: Want = Want {
        count: 1,
        timeout_ms: 100,
        wait_for_count: false,
    };
}

/// What an update did, for update-v2's follow-up poll.
pub struct Updated {
    pub task_id: Arc<str>,
    pub task_type: Arc<str>,
    pub domain: Option<Arc<str>>,
    /// The update made the task terminal (only then does update-v2 poll for the next task).
    pub terminal: bool,
}

/// Updates and polls seen by one task, for `GET /admin/tasks/{id}/history`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct History {
    pub polls: u32,
    pub updates: Vec<HistoryEntry>,
}

/// The whole server state.
pub struct Store {
    queues: RwLock<HashMap<String, Arc<Queue>>>,
    index: Vec<Mutex<HashMap<Arc<str>, TaskRef>>>,
    workflows: Vec<Mutex<HashMap<Arc<str>, Arc<WfCell>>>>,
    hasher: RandomState,
    taskdefs: RwLock<HashMap<String, Arc<TaskDef>>>,
    wfdefs: RwLock<HashMap<String, BTreeMap<i32, Arc<CompiledDef>>>>,
    /// (deadline ms, task id) of IN_PROGRESS tasks; stale entries are skipped when popped.
    timeouts: Mutex<BinaryHeap<Deadline>>,
    pub stats: Counters,
    /// Externally stored payloads and the size limits.
    pub payloads: Payloads,
}

/// The queue name of a task type in a domain, as the real server forms it.
pub fn queue_key<'a>(task_type: &'a str, domain: Option<&str>) -> Cow<'a, str> {
    match domain {
        Some(d) => Cow::Owned(format!("{d}:{task_type}")),
        None => Cow::Borrowed(task_type),
    }
}

/// A domain parameter as the server reads it: empty means none.
pub fn norm_domain(d: Option<&str>) -> Option<&str> {
    d.filter(|d| !d.is_empty() && *d != "NO_DOMAIN")
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
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

/// Takes a task that ends out of its queue (after the workflow lock is released).
fn unqueue(t: &mut Task, actions: &mut Vec<Action>) {
    if t.internal.in_queue {
        t.internal.in_queue = false;
        actions.push(Action::Unqueue {
            key: queue_key(&t.task_type, t.domain.as_deref()).into_owned(),
            id: t.task_id.clone(),
        });
    }
}

impl Default for Store {
    fn default() -> Self {
        Store::new(PayloadLimits::default())
    }
}

impl Store {
    /// An empty store with these payload limits.
    pub fn new(limits: PayloadLimits) -> Self {
        Store {
            queues: RwLock::default(),
            index: (0..SHARDS).map(|_| Mutex::default()).collect(),
            workflows: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            taskdefs: RwLock::default(),
            wfdefs: RwLock::default(),
            timeouts: Mutex::default(),
            stats: Counters::default(),
            payloads: Payloads::new(limits),
        }
    }
}

impl Store {
    fn shard(&self, id: &str) -> usize {
        (self.hasher.hash_one(id) as usize) % SHARDS
    }

    fn lookup(&self, id: &str) -> Option<TaskRef> {
        lock(&self.index[self.shard(id)]).get(id).cloned()
    }

    fn register(&self, id: Arc<str>, r: TaskRef) {
        lock(&self.index[self.shard(&id)]).insert(id, r);
    }

    fn workflow(&self, id: &str) -> Option<Arc<WfCell>> {
        lock(&self.workflows[self.shard(id)]).get(id).cloned()
    }

    /// The queue for a key, created on first use.
    fn queue(&self, key: &str) -> Arc<Queue> {
        if let Some(q) = self
            .queues
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            return q.clone();
        }
        self.queues
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    fn push_many(&self, key: &str, ids: impl IntoIterator<Item = Arc<str>>) {
        let q = self.queue(key);
        lock(&q.items).extend(ids);
        q.notify.notify_waiters();
    }

    fn run(self: &Arc<Self>, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Push { key, id } => self.push_many(&key, [id]),
                Action::PushLater {
                    key,
                    id,
                    delay_ms,
                    wf,
                    idx,
                } => {
                    let store = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                        let push = {
                            let mut w = lock(&wf);
                            let t = &mut w.tasks[idx];
                            let due = t.status == TaskStatus::Scheduled && !t.internal.in_queue;
                            if due {
                                t.internal.in_queue = true;
                            }
                            due
                        };
                        if push {
                            store.push_many(&key, [id]);
                        }
                    });
                }
                Action::Unqueue { key, id } => {
                    let q = self.queue(&key);
                    lock(&q.items).retain(|x| *x != id);
                }
            }
        }
    }

    // ---- task definitions -------------------------------------------------------------------

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

    // ---- workflow definitions ---------------------------------------------------------------

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

    fn find_wfdef(&self, name: &str, version: Option<i32>) -> Result<Arc<CompiledDef>, ApiError> {
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

    // ---- workflows ----------------------------------------------------------------------------

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
        let wf = Workflow {
            id: id.clone(),
            name: def.def.name.as_str().into(),
            def,
            status: WorkflowStatus::Running,
            input: req.input.unwrap_or_default(),
            output: Map::new(),
            correlation_id: req.correlation_id.map(Into::into),
            task_to_domain: req.task_to_domain.unwrap_or_default(),
            create_time: now,
            update_time: now,
            end_time: 0,
            reason: None,
            policy_override: None,
            tasks: Vec::new(),
        };
        let cell = Arc::new(Mutex::new(wf));
        let mut actions = Vec::new();
        {
            let mut w = lock(&cell);
            self.schedule(&cell, &mut w, 0, now, &mut actions, None);
        }
        lock(&self.workflows[self.shard(&id)]).insert(id.clone(), cell);
        self.run(actions);
        Ok(id)
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
    fn schedule(
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
    fn fail_for_payload(&self, w: &mut Workflow, idx: usize, now: i64, actions: &mut Vec<Action>) {
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
    fn decide(
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

    // ---- polling ------------------------------------------------------------------------------

    /// Pops up to `count` tasks, marks them IN_PROGRESS and appends their JSON to `buf`
    /// (comma-separated, after the `had` tasks already in it). Returns how many were taken.
    fn try_poll(
        &self,
        q: &Queue,
        worker: Option<&str>,
        count: usize,
        had: usize,
        buf: &mut Vec<u8>,
    ) -> usize {
        let ids: Vec<Arc<str>> = {
            let mut items = lock(&q.items);
            let n = count.min(items.len());
            if n == 0 {
                return 0;
            }
            items.drain(..n).collect()
        };
        let now = now_ms();
        let mut taken = 0;
        let mut deadlines = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(r) = self.lookup(&id) else { continue };
            let mut w = lock(&r.wf);
            let t = &mut w.tasks[r.idx];
            t.internal.in_queue = false;
            if t.status != TaskStatus::Scheduled {
                continue;
            }
            t.status = TaskStatus::InProgress;
            t.poll_count += 1;
            inc(&self.stats.deliveries);
            if t.poll_count > 1 {
                inc(&self.stats.redelivered);
            }
            t.worker_id = worker.map(str::to_string);
            if t.start_time == 0 {
                t.start_time = now;
            }
            if t.first_start_time == 0 {
                t.first_start_time = now;
            }
            t.update_time = now;
            t.callback_after_seconds = 0;
            self.stats
                .in_progress
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            deadlines.push(Reverse((now + t.response_timeout_seconds * 1000, id)));
            if had + taken > 0 {
                buf.push(b',');
            }
            // Serializing into a Vec cannot fail for these types.
            let _ = serde_json::to_writer(&mut *buf, &*t);
            taken += 1;
        }
        if !deadlines.is_empty() {
            lock(&self.timeouts).extend(deadlines);
        }
        taken
    }

    /// A long poll: returns as soon as at least one task is taken (with `wait_for_count`: all
    /// `count`), or after `timeout_ms` with what it has. Appends the tasks' JSON to `buf`,
    /// comma-separated; returns how many.
    pub async fn poll(
        &self,
        task_type: &str,
        domain: Option<&str>,
        worker: Option<&str>,
        want: Want,
        buf: &mut Vec<u8>,
    ) -> usize {
        let Want {
            count,
            timeout_ms,
            wait_for_count,
        } = want;
        if count == 0 {
            return 0;
        }
        let q = self.queue(&queue_key(task_type, norm_domain(domain)));
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        let enough = if wait_for_count { count } else { 1 };
        let mut had = 0;
        loop {
            let notified = q.notify.notified();
            tokio::pin!(notified);
            // Registered before looking at the queue so that a push in between is not missed.
            notified.as_mut().enable();
            had += self.try_poll(&q, worker, count - had, had, buf);
            if had >= enough || tokio::time::Instant::now() >= deadline {
                return had;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return had + self.try_poll(&q, worker, count - had, had, buf);
            }
        }
    }

    /// Number of task ids waiting in one queue.
    pub fn queue_size(&self, task_type: &str, domain: Option<&str>) -> usize {
        let key = queue_key(task_type, norm_domain(domain));
        let q = self
            .queues
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&*key)
            .cloned();
        q.map_or(0, |q| lock(&q.items).len())
    }

    /// Task ids waiting in all queues.
    pub fn queued_total(&self) -> u64 {
        let qs: Vec<_> = self
            .queues
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        qs.iter().map(|q| lock(&q.items).len() as u64).sum()
    }

    // ---- updates ------------------------------------------------------------------------------

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

    /// Times out IN_PROGRESS tasks whose response timeout has passed; returns how many.
    pub fn sweep(self: &Arc<Self>) -> usize {
        let now = now_ms();
        let due: Vec<Arc<str>> = {
            let mut heap = lock(&self.timeouts);
            let mut due = Vec::new();
            while heap.peek().is_some_and(|Reverse((d, _))| *d <= now) {
                if let Some(Reverse((_, id))) = heap.pop() {
                    due.push(id);
                }
            }
            due
        };
        if due.is_empty() {
            return 0;
        }
        let mut later = Vec::new();
        let mut actions = Vec::new();
        let mut timed_out = 0;
        for id in due {
            let Some(r) = self.lookup(&id) else { continue };
            let mut guard = lock(&r.wf);
            let w = &mut *guard;
            let t = &mut w.tasks[r.idx];
            if t.status != TaskStatus::InProgress {
                continue;
            }
            let limit =
                t.update_time + (t.response_timeout_seconds + t.callback_after_seconds) * 1000;
            if now < limit {
                // Its lease was extended since the entry was pushed.
                later.push(Reverse((limit, id)));
                continue;
            }
            t.status = TaskStatus::TimedOut;
            t.end_time = now;
            t.reason_for_incompletion = Some(format!(
                "responseTimeoutSeconds: {} exceeded for task {}",
                t.response_timeout_seconds, t.task_id
            ));
            self.stats
                .in_progress
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            inc(&self.stats.timed_out);
            timed_out += 1;
            self.decide(&r.wf, w, r.idx, now, &mut actions);
        }
        if !later.is_empty() {
            lock(&self.timeouts).extend(later);
        }
        self.run(actions);
        timed_out
    }

    // ---- single tasks -------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(id: &str, wf: &str, status: &str) -> TaskResult {
        serde_json::from_value(json!({"taskId": id, "workflowInstanceId": wf, "status": status}))
            .unwrap()
    }

    async fn poll_one(s: &Store, ty: &str) -> Option<Value> {
        let mut buf = Vec::new();
        let want = Want {
            timeout_ms: 0,
            ..Want::ONE
        };
        let n = s.poll(ty, None, Some("w1"), want, &mut buf).await;
        (n == 1).then(|| serde_json::from_slice(&buf).unwrap())
    }

    #[tokio::test]
    async fn poll_marks_in_progress_and_completion_ends_the_workflow() {
        let s = Arc::new(Store::default());
        s.bulk_create(serde_json::from_value(json!({"taskType": "t", "count": 2})).unwrap())
            .unwrap();
        assert_eq!(s.queue_size("t", None), 2);
        let t = poll_one(&s, "t").await.unwrap();
        assert_eq!(t["status"], "IN_PROGRESS");
        assert_eq!(t["pollCount"], 1);
        assert_eq!(t["workerId"], "w1");
        assert_eq!(s.stats.snapshot(0).tasks.in_progress, 1);
        let id = t["taskId"].as_str().unwrap();
        let wf = t["workflowInstanceId"].as_str().unwrap();
        let u = s.update(result(id, wf, "COMPLETED")).unwrap();
        assert!(u.terminal);
        let w: Value = serde_json::from_slice(&s.workflow_json(wf, true).unwrap()).unwrap();
        assert_eq!(w["status"], "COMPLETED");
        assert_eq!(s.stats.snapshot(0).tasks.in_progress, 0);
        // A second update of the same task is ignored.
        s.update(result(id, wf, "FAILED")).unwrap();
        assert_eq!(s.stats.snapshot(0).updates.terminal_task, 1);
    }

    #[tokio::test]
    async fn in_progress_with_zero_callback_is_repollable_at_once() {
        let s = Arc::new(Store::default());
        s.bulk_create(serde_json::from_value(json!({"taskType": "t"})).unwrap())
            .unwrap();
        let t = poll_one(&s, "t").await.unwrap();
        let (id, wf) = (
            t["taskId"].as_str().unwrap(),
            t["workflowInstanceId"].as_str().unwrap(),
        );
        s.update(result(id, wf, "IN_PROGRESS")).unwrap();
        let again = poll_one(&s, "t").await.unwrap();
        assert_eq!(again["taskId"], t["taskId"]);
        assert_eq!(again["pollCount"], 2);
    }

    #[tokio::test]
    async fn unknown_ids_and_missing_fields_are_errors() {
        let s = Arc::new(Store::default());
        assert!(matches!(
            s.update(result("nope", "wf", "COMPLETED")),
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(
            s.update(result("", "wf", "COMPLETED")),
            Err(ApiError::Validation(ref errors)) if errors.len() == 1
        ));
    }
}
