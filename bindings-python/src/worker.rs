//! `Worker`: what Python executors pull tasks from and hand results to.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use conductor_worker::host::ProcessBound;
use conductor_worker::{Cancel, ClaimedTask, Error, TaskResult};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use tokio::runtime::Handle;

use crate::errors;
use crate::gil::{SIGNAL_SLICE, fork_check};
use crate::json;
use crate::task::PyTask;

/// One task type (in one domain) on every server of its runtime.
#[pyclass(frozen, name = "Worker", module = "conductor_worker._native")]
pub(crate) struct PyWorker {
    inner: ProcessBound<conductor_worker::Worker>,
    handle: Handle,
    /// Wakes every wait of this worker for good: `interrupt()`.
    cancel: Cancel,
    /// Tasks claimed for an asyncio loop (`request_tasks`), until it takes them.
    mailbox: Arc<Mutex<Mailbox>>,
}

/// Where `request_tasks` leaves what it claimed for an asyncio loop, and the socket pair that
/// wakes the loop: the loop watches the read end (`loop.add_reader`) and takes the tasks on its
/// own thread, with the GIL it already holds. Nothing here needs the GIL, so handing tasks
/// over costs one byte on a socket instead of a blocking-pool thread that waits for the GIL
/// while the loop runs Python code.
#[derive(Default)]
struct Mailbox {
    tasks: Vec<ClaimedTask>,
    /// Slots asked for by requests that have been answered (with tasks or without).
    answered: usize,
    /// The worker stopped (or was interrupted): no more tasks will come.
    stopped: bool,
    /// A byte was written since the loop last took the mailbox.
    woken: bool,
    /// (read end, write end), both non-blocking; made on first use.
    wakeup: Option<(UnixStream, UnixStream)>,
}

impl Mailbox {
    fn wake(&mut self) {
        if self.woken {
            return;
        }
        if let Some((_, writer)) = &self.wakeup {
            // A full socket buffer (WouldBlock) already holds a wake-up; nothing else can fail
            // on a live socket pair that this struct owns.
            let _ = (&*writer).write(&[1]);
            self.woken = true;
        }
    }
}

fn lock(mailbox: &Mutex<Mailbox>) -> MutexGuard<'_, Mailbox> {
    mailbox
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PyWorker {
    pub(crate) fn new(worker: conductor_worker::Worker, handle: Handle) -> Self {
        Self {
            inner: ProcessBound::new(worker),
            handle,
            cancel: Cancel::new(),
            mailbox: Arc::default(),
        }
    }
}

#[pymethods]
impl PyWorker {
    #[getter]
    fn task_type(&self) -> &str {
        self.inner.task_type()
    }
    #[getter]
    fn domain(&self) -> Option<&str> {
        self.inner.options().domain.as_deref()
    }
    /// After environment overrides.
    #[getter]
    fn concurrency(&self) -> usize {
        self.inner.options().concurrency
    }
    #[getter]
    fn poll_interval(&self) -> f64 {
        self.inner.options().poll_interval.as_secs_f64()
    }
    #[getter]
    fn poll_timeout(&self) -> f64 {
        self.inner.options().poll_timeout.as_secs_f64()
    }
    #[getter]
    fn worker_id(&self) -> &str {
        &self.inner.options().worker_id
    }
    #[getter]
    fn lease_extend(&self) -> bool {
        self.inner.options().lease_extend
    }
    #[getter]
    fn state(&self) -> &'static str {
        self.inner.state().as_str()
    }

    /// Up to `max` tasks, waiting up to `timeout` seconds (forever with None) with the GIL
    /// released. `[]` on timeout; `None` once the worker stops or `interrupt()` was called.
    #[pyo3(signature = (max=1, timeout=None))]
    fn next_tasks(
        &self,
        py: Python<'_>,
        max: usize,
        timeout: Option<f64>,
    ) -> PyResult<Option<Vec<PyTask>>> {
        fork_check(&self.inner, "Worker")?;
        let deadline = match timeout {
            Some(t) => Some(
                Instant::now()
                    + Duration::try_from_secs_f64(t).map_err(|_| {
                        PyValueError::new_err(format!("timeout must be >= 0 seconds, not {t}"))
                    })?,
            ),
            None => None,
        };
        let (worker, cancel) = (&*self.inner, &self.cancel);
        loop {
            // Short slices: Python runs signal handlers (Ctrl-C) only between them.
            let slice = deadline.map_or(SIGNAL_SLICE, |d| {
                d.saturating_duration_since(Instant::now())
                    .min(SIGNAL_SLICE)
            });
            match py.detach(|| worker.take_blocking(max, Some(slice), cancel)) {
                Ok(tasks) if !tasks.is_empty() => {
                    return Ok(Some(tasks.into_iter().map(PyTask::new).collect()));
                }
                Ok(_) if cancel.is_cancelled() => return Ok(None),
                Ok(_) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(Some(Vec::new()));
                    }
                    py.check_signals()?;
                }
                Err(Error::NotRunning(_)) => return Ok(None),
                Err(e) => return Err(errors::to_py(e)),
            }
        }
    }

    /// Tasks already polled and waiting for an executor, without waiting and without asking
    /// for more: the fast path of a busy executor, taken with the GIL held.
    #[pyo3(signature = (max=1))]
    fn ready_tasks(&self, max: usize) -> PyResult<Option<Vec<PyTask>>> {
        fork_check(&self.inner, "Worker")?;
        match self
            .inner
            .take_blocking(max, Some(Duration::ZERO), &self.cancel)
        {
            Ok(tasks) => Ok(Some(tasks.into_iter().map(PyTask::new).collect())),
            Err(Error::NotRunning(_)) => Ok(None),
            Err(e) => Err(errors::to_py(e)),
        }
    }

    /// The file descriptor an asyncio loop watches (`loop.add_reader`) to learn that
    /// `request_tasks` has answered: then call `take_requested()`, which also reads it empty.
    /// The worker owns the descriptor; do not close it.
    fn wakeup_fd(&self) -> PyResult<i32> {
        fork_check(&self.inner, "Worker")?;
        let mut mailbox = lock(&self.mailbox);
        if mailbox.wakeup.is_none() {
            let (reader, writer) = UnixStream::pair()?;
            reader.set_nonblocking(true)?;
            writer.set_nonblocking(true)?;
            mailbox.wakeup = Some((reader, writer));
        }
        Ok(mailbox
            .wakeup
            .as_ref()
            .map_or(-1, |(reader, _)| reader.as_raw_fd()))
    }

    /// Asks for up to `max` tasks without blocking the caller; when they come (or the worker
    /// stops) they wait in this worker's mailbox and a byte is written to `wakeup_fd()`.
    fn request_tasks(&self, max: usize) -> PyResult<()> {
        fork_check(&self.inner, "Worker")?;
        let (worker, cancel) = ((*self.inner).clone(), self.cancel.clone());
        let mailbox = Arc::clone(&self.mailbox);
        self.handle.spawn(async move {
            let result = worker.take(max.max(1), None, Some(&cancel)).await;
            let mut mailbox = lock(&mailbox);
            mailbox.answered += max;
            match result {
                Ok(tasks) if tasks.is_empty() && cancel.is_cancelled() => mailbox.stopped = true,
                Ok(tasks) => mailbox.tasks.extend(tasks),
                Err(Error::NotRunning(_)) => mailbox.stopped = true,
                Err(e) => {
                    tracing::error!(error = %e, task_type = worker.task_type(), "waiting for tasks failed");
                    mailbox.stopped = true;
                }
            }
            mailbox.wake();
        });
        Ok(())
    }

    /// What `request_tasks` left: `(tasks, slots answered, stopped)`. `slots answered` adds up
    /// the `max` of every request answered since the last call, whether or not it brought tasks.
    /// Reads the wake-up descriptor empty.
    fn take_requested(&self) -> (Vec<PyTask>, usize, bool) {
        let mut mailbox = lock(&self.mailbox);
        if let Some((reader, _)) = &mailbox.wakeup {
            // Under the lock: a request answered after this writes a new byte.
            let mut buf = [0_u8; 256];
            while matches!((&*reader).read(&mut buf), Ok(n) if n == buf.len()) {}
        }
        mailbox.woken = false;
        let tasks = std::mem::take(&mut mailbox.tasks);
        let answered = std::mem::take(&mut mailbox.answered);
        let stopped = mailbox.stopped;
        drop(mailbox);
        (
            tasks.into_iter().map(PyTask::new).collect(),
            answered,
            stopped,
        )
    }

    /// Hands back the result of `task`; never blocks. Raises TypeError/ValueError (and sends
    /// nothing) if `output` is not JSON, so the caller can fail the task instead.
    #[pyo3(signature = (task, status, output=None, reason=None, callback_after_seconds=None, logs=None))]
    fn complete(
        &self,
        task: &Bound<'_, PyTask>,
        status: &str,
        output: Option<&Bound<'_, PyAny>>,
        reason: Option<String>,
        callback_after_seconds: Option<u64>,
        logs: Option<Vec<String>>,
    ) -> PyResult<()> {
        fork_check(&self.inner, "Worker")?;
        let output = match output {
            Some(o) if !o.is_none() => json::object_from_py(o, "output")?,
            _ => serde_json::Map::new(),
        };
        let held = &task.get().held;
        let result = TaskResult::reported(
            &held.task,
            status,
            output,
            reason,
            callback_after_seconds,
            logs.unwrap_or_default(),
        )
        .map_err(errors::to_py)?;
        held.complete(result).map_err(errors::to_py)
    }

    fn pause(&self) {
        self.inner.pause();
    }

    fn resume(&self) {
        self.inner.resume();
    }

    /// Ends every wait of this worker, now and later (`next_tasks` returns None).
    fn interrupt(&self) {
        self.cancel.cancel();
    }

    fn health<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json::serialized_to_py(py, &self.inner.health())
    }
}
