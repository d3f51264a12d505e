//! A claimed task as a binding keeps it inside its host object (a Python `Task`, a Ruby
//! `ConductorWorker::Task`): the task's fields, its input until the host takes it, and its
//! claim until the host completes it.

use std::sync::Mutex;

use super::ProcessBound;
use crate::api::{JsonObject, Task, TaskResult};
use crate::error::{Error, Result};
use crate::runner::{Claim, ClaimedTask};

/// A claimed task held for a host object. The input is given up once taken
/// ([`HostTask::take_input`]): the host converts it once and keeps its own objects, so a large
/// input is held once while the function runs. The claim is leaked, never dropped, in a forked
/// child; dropped in its own process without a result, it abandons the task.
///
/// ```no_run
/// # fn demo(claimed: conductor_worker::ClaimedTask) -> conductor_worker::Result<()> {
/// use conductor_worker::host::HostTask;
/// let task = HostTask::new(claimed);
/// let input = task.take_input().unwrap_or_default();   // the first time only
/// task.complete(conductor_worker::TaskResult::completed("", "", input))?;
/// assert!(task.complete(conductor_worker::TaskResult::completed("", "", Default::default())).is_err());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct HostTask {
    /// The task, without its input.
    pub task: Task,
    input: Mutex<Option<JsonObject>>,
    claim: Mutex<Option<ProcessBound<Claim>>>,
}

impl HostTask {
    /// Holds `claimed` for a host object.
    pub fn new(claimed: ClaimedTask) -> Self {
        let ClaimedTask {
            mut task, claim, ..
        } = claimed;
        let input = std::mem::take(&mut task.input_data);
        Self {
            task,
            input: Mutex::new(Some(input)),
            claim: Mutex::new(Some(ProcessBound::new(claim))),
        }
    }

    /// The task's input the first time; `None` after that.
    pub fn take_input(&self) -> Option<JsonObject> {
        self.input.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Completes the claim with `result` ([`Claim::complete`]). [`Error::UnknownTask`] if the
    /// task was already completed; [`Error::NotRunning`] in a forked child.
    pub fn complete(&self, result: TaskResult) -> Result<()> {
        let claim = self
            .claim
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| Error::UnknownTask {
                worker: self.task.task_type.clone(),
                task_id: self.task.task_id.clone(),
            })?;
        claim
            .into_inner()
            .map_err(|_| Error::NotRunning("in a forked child: create a new Runner in the child"))?
            .complete(result)
    }
}
