//! The in-memory state and the execution semantics: queues, tasks, workflows, definitions,
//! retries and timeouts.
//!
//! Locking: every task lives inside its workflow, and a workflow has its own mutex, so work on
//! different workflows never contends. Queues have their own mutex each and are only held to pop or
//! push ids. The task-id index and the workflow map are sharded. No lock is global, and the only
//! lock held while a task is serialized is that task's workflow's. Lock order: workflow, then
//! index shard or queue or timeout heap; never the other way.
//!
//! This file holds the state and its sharded indices. The submodules, each one concern:
//! `defs` (task and workflow definitions), `instance` (a workflow's state and how expressions
//! see it), `queues` (queue work and the long poll), `decisions` (a workflow's next step:
//! schedule, retry, advance, end), `workflows` (starting and reading them), `updates` (worker
//! results), `timeouts` (the response-timeout sweep), `tasks` (single tasks by id) and `bulk`
//! (`POST /admin/tasks`). Each depends only on those listed before it.

mod bulk;
mod decisions;
mod defs;
mod instance;
mod queues;
mod tasks;
#[cfg(test)]
mod tests;
mod timeouts;
mod updates;
mod workflows;

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::error::ApiError;
use crate::model::TaskDef;
use crate::payload::{PayloadLimits, Payloads};
use crate::stats::Counters;

pub use bulk::BulkRequest;
pub use defs::CompiledDef;
pub use instance::Workflow;
pub use queues::{Queue, Want};
pub use tasks::History;
pub use updates::Updated;

const SHARDS: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock must not take the whole server down with poisoned locks.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type WfCell = Mutex<Workflow>;

/// (deadline in ms, task id), earliest first.
type Deadline = Reverse<(i64, Arc<str>)>;

#[derive(Clone)]
struct TaskRef {
    wf: Arc<WfCell>,
    idx: usize,
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
}
