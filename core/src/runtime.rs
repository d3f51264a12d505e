//! The runtime: servers, workers, the update pipeline and their lifecycle: `start`, `stop`
//! with a deadline (stop polling, let running tasks finish, flush results, journal the rest),
//! `kill` (stop now, journal), and a supervisor that restarts poll loops that died or stopped
//! making progress.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::api::{Task, TaskDef, TaskResult};
use crate::client::ServerClient;
use crate::cluster::Cluster;
use crate::config::{JournalConfig, RuntimeOptions, WorkerOptions};
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::runner::delivery::Deliveries;
use crate::runner::poller::{NO_DEADLINE, PollLoop};
use crate::runner::{ClaimedTask, TaskOutcome, Worker, WorkerHealth, WorkerState};
use crate::telemetry::endpoint::{self, Exposition};

mod probes;
mod queue_depth;
mod signals;
use crate::telemetry::metrics::Registry;
use crate::telemetry::{Event, EventBus, EventQueue, Listener};

const CREATED: u8 = 0;
const RUNNING: u8 = 1;
const STOPPING: u8 = 2;
const STOPPED: u8 = 3;

type TaskFn =
    Arc<dyn Fn(Task) -> std::pin::Pin<Box<dyn Future<Output = TaskOutcome> + Send>> + Send + Sync>;

struct LoopSlot {
    worker: Worker,
    server: Arc<ServerClient>,
    deadline: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
    /// The deadline the supervisor last saw: a new one is the loop's progress.
    seen_deadline: u64,
    /// Restarts since the loop last made progress (see [`probes`]).
    restarts_without_progress: u32,
}

struct Inner {
    options: RuntimeOptions,
    servers: Arc<Cluster>,
    handle: Handle,
    events: Arc<EventBus>,
    metrics: Arc<Registry>,
    deliveries: Arc<Deliveries>,
    journal: Option<Journal>,
    state: AtomicU8,
    workers: Mutex<Vec<Worker>>,
    functions: Mutex<Vec<(Worker, TaskFn)>>,
    loops: Mutex<Vec<LoopSlot>>,
    background: Mutex<Vec<JoinHandle<()>>>,
    metrics_addr: Mutex<Option<SocketAddr>>,
    /// [`Runtime::quiet`] was called (and not undone by [`Runtime::resume_all`]).
    quiet: AtomicBool,
    /// When the supervisor last ticked (ms since the epoch).
    supervisor_beat: AtomicU64,
    /// Tests: every poll loop started from now on ends at once.
    #[cfg(test)]
    loops_end_at_once: AtomicBool,
}

/// The runtime as a whole ([`Runtime::status`]); hosts get it as JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuntimeStatus {
    /// [`Runtime::is_healthy`].
    pub healthy: bool,
    /// [`Runtime::pending_results`].
    pub pending_results: usize,
    /// Host and port of the metrics and health endpoint, once started.
    pub metrics_addr: Option<(String, u16)>,
    /// The servers' base URLs, in configuration order.
    pub servers: Vec<String>,
}

/// What [`Runtime::stop`] and [`Runtime::kill`] left behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StopReport {
    /// Tasks still running when the runtime gave up waiting (their results, if they come, go
    /// to the journal).
    pub abandoned_tasks: usize,
    /// Results written to the journal for the next start.
    pub journalled_results: usize,
    /// Polled tasks no executor had started, handed back to their server.
    pub returned_tasks: usize,
}

/// The worker runtime. Cheap to clone; clones share it.
///
/// See the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field(
                "servers",
                &self
                    .inner
                    .servers
                    .members()
                    .iter()
                    .map(|m| m.client.url())
                    .collect::<Vec<_>>(),
            )
            .field(
                "workers",
                &self
                    .workers()
                    .iter()
                    .map(|w| w.task_type().to_owned())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Runtime {
    /// A runtime for the servers in `options`, on the current tokio runtime.
    pub fn new(options: RuntimeOptions) -> Result<Self> {
        let handle = Handle::try_current().map_err(|_| {
            Error::NotRunning(
                "outside a tokio runtime: create it inside one, or use Runtime::with_handle",
            )
        })?;
        Self::with_handle(options, handle)
    }

    /// A runtime whose background work runs on `handle` (what the bindings use: they own a
    /// tokio runtime and call in from host threads).
    pub fn with_handle(options: RuntimeOptions, handle: Handle) -> Result<Self> {
        if options.servers.is_empty() {
            return Err(Error::config(
                "servers",
                "[]",
                "no Conductor server configured: set CONDUCTOR_SERVER_URL or pass servers",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for server in &options.servers {
            if !seen.insert(server.url.as_str()) {
                return Err(Error::config(
                    "servers",
                    &server.url,
                    "the same server is listed twice",
                ));
            }
        }
        crate::alloc::return_large_blocks();
        let servers = Arc::new(Cluster::new(&options)?);
        let journal = match &options.journal {
            JournalConfig::Disabled => None,
            JournalConfig::File(path) => Some(Journal::open(path.clone())?),
        };
        let events = Arc::new(EventBus::default());
        let metrics = Arc::new(Registry::new(options.servers.len() > 1));
        for member in servers.members() {
            member.client.observe_requests(metrics.requests.clone());
        }
        let deliveries = Arc::new(Deliveries::new(
            handle.clone(),
            Arc::clone(&servers),
            journal.clone(),
            options.update_backoff,
            options.external_payload_threshold_bytes(),
            Arc::clone(&events),
            Arc::clone(&metrics),
        ));
        Ok(Self {
            inner: Arc::new(Inner {
                options,
                servers,
                handle,
                events,
                metrics,
                deliveries,
                journal,
                state: AtomicU8::new(CREATED),
                workers: Mutex::new(Vec::new()),
                functions: Mutex::new(Vec::new()),
                loops: Mutex::new(Vec::new()),
                background: Mutex::new(Vec::new()),
                metrics_addr: Mutex::new(None),
                quiet: AtomicBool::new(false),
                supervisor_beat: AtomicU64::new(0),
                #[cfg(test)]
                loops_end_at_once: AtomicBool::new(false),
            }),
        })
    }

    /// The servers' clients, in configuration order ([`ServerId`] indexes this list).
    pub fn servers(&self) -> Vec<Arc<ServerClient>> {
        self.inner
            .servers
            .members()
            .iter()
            .map(|m| Arc::clone(&m.client))
            .collect()
    }

    /// The servers with their circuit breakers.
    pub fn cluster(&self) -> &Cluster {
        &self.inner.servers
    }

    /// Adds a worker whose executors pull tasks themselves ([`Worker::take`]).
    /// Environment overrides are applied to `options` first.
    pub fn add_worker(&self, mut options: WorkerOptions) -> Result<Worker> {
        options.apply_env(&crate::config::ProcessEnv)?;
        let mut workers = self
            .inner
            .workers
            .lock()
            .map_err(|_| Error::NotRunning("poisoned"))?;
        if workers
            .iter()
            .any(|w| w.task_type() == options.task_type && w.options().domain == options.domain)
        {
            return Err(Error::config(
                "task_type",
                &options.task_type,
                "a worker for this task type and domain is already registered",
            ));
        }
        let metrics = (self.inner.metrics).worker_in(&options.task_type, options.domain.as_deref());
        let worker = Worker::new(
            options,
            Arc::clone(&self.inner.servers),
            Arc::clone(&self.inner.deliveries),
            Arc::clone(&self.inner.events),
            metrics,
            self.inner.handle.clone(),
        );
        workers.push(worker.clone());
        if self.inner.state.load(Ordering::Acquire) == RUNNING {
            drop(workers);
            self.launch(&worker);
        }
        Ok(worker)
    }

    /// Adds a worker run by an async function, with `options.concurrency` executors on this
    /// runtime. A panicking function fails its task (`FAILED`, with the panic message).
    pub fn spawn_fn<F, Fut, O>(&self, options: WorkerOptions, f: F) -> Result<Worker>
    where
        F: Fn(Task) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = O> + Send + 'static,
        O: Into<TaskOutcome> + 'static,
    {
        let worker = self.add_worker(options)?;
        let f: TaskFn = Arc::new(move |task| {
            let fut = f(task);
            Box::pin(async move { fut.await.into() })
        });
        if let Ok(mut functions) = self.inner.functions.lock() {
            functions.push((worker.clone(), Arc::clone(&f)));
        }
        if self.inner.state.load(Ordering::Acquire) == RUNNING {
            self.spawn_executors(&worker, &f);
        }
        Ok(worker)
    }

    /// The workers.
    pub fn workers(&self) -> Vec<Worker> {
        self.inner
            .workers
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default()
    }

    /// The worker for `task_type` (the first, if several domains are registered).
    pub fn worker(&self, task_type: &str) -> Option<Worker> {
        self.workers()
            .into_iter()
            .find(|w| w.task_type() == task_type)
    }

    /// Calls `listener` for every [`Event`], on a dedicated thread.
    pub fn add_listener(&self, listener: impl Fn(&Event) + Send + Sync + 'static) {
        let listener: Listener = Arc::new(listener);
        self.inner.events.add_listener(listener);
    }

    /// A new queue of the runtime's events from now on, for a host language to pull in
    /// batches (its listeners then run on a thread of its own, never on the core's).
    pub fn event_queue(&self) -> Arc<EventQueue> {
        let (queue, tx) = EventQueue::new();
        // A full queue means the host does not keep up: lose events, never stall the core.
        self.add_listener(move |event| {
            let _ = tx.try_send((event.kind(), event.fields()));
        });
        queue
    }

    /// The Prometheus text exposition of the runtime's metrics.
    pub fn metrics_text(&self) -> String {
        for m in self.inner.servers.members() {
            let state = match m.breaker.state() {
                crate::cluster::CircuitState::Closed => 0,
                crate::cluster::CircuitState::Open => 1,
                crate::cluster::CircuitState::HalfOpen => 2,
            };
            (self.inner.metrics).set_circuit(m.client.url(), state, m.breaker.transitions());
        }
        for worker in self.workers() {
            let health = worker.health();
            let held = i64::try_from(health.running + health.buffered).unwrap_or(i64::MAX);
            worker.inner.metrics.in_flight.set(held);
        }
        let journalled = self.inner.deliveries.journalled();
        (self.inner.metrics.journal_entries).set(i64::try_from(journalled).unwrap_or(i64::MAX));
        self.inner.metrics.render()
    }

    /// Where the metrics and health endpoint listens, once started.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.inner.metrics_addr.lock().ok().and_then(|a| *a)
    }

    /// Registers task definitions on every server.
    pub async fn register_task_defs(&self, defs: &[TaskDef]) -> Result<()> {
        for member in self.inner.servers.members() {
            member.client.register_task_defs(defs).await?;
        }
        Ok(())
    }

    /// Health of every worker.
    pub fn health(&self) -> Vec<WorkerHealth> {
        self.workers().iter().map(Worker::health).collect()
    }

    /// Whether the runtime is running and every worker polls without errors piling up.
    pub fn is_healthy(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) == RUNNING
            && self.health().iter().all(|h| h.consecutive_poll_errors < 10)
    }

    /// Quiet before a deploy (Sidekiq's `TSTP`): every worker stops polling, running tasks
    /// finish and their results are delivered, and the process stays up; `/health/ready`
    /// answers 503 from now on while `/health/live` stays 200. [`stop`](Self::stop) then drains
    /// as usual; [`resume_all`](Self::resume_all) undoes it.
    pub fn quiet(&self) {
        self.inner.quiet.store(true, Ordering::Release);
        for worker in self.workers() {
            worker.pause();
        }
        tracing::info!("quiet: no worker polls until resume_all");
    }

    /// Every worker polls again (after [`quiet`](Self::quiet), or workers paused one by one).
    pub fn resume_all(&self) {
        self.inner.quiet.store(false, Ordering::Release);
        for worker in self.workers() {
            worker.resume();
        }
    }

    /// Whether [`start`](Self::start) was called.
    pub fn is_started(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) != CREATED
    }

    /// Whether [`quiet`](Self::quiet) is in effect.
    pub fn is_quiet(&self) -> bool {
        self.inner.quiet.load(Ordering::Acquire)
    }

    /// Results accepted but not yet delivered.
    pub fn pending_results(&self) -> usize {
        self.inner.deliveries.pending()
    }

    /// What a host shows of the runtime as a whole, in one snapshot.
    pub fn status(&self) -> RuntimeStatus {
        RuntimeStatus {
            healthy: self.is_healthy(),
            pending_results: self.pending_results(),
            metrics_addr: self.metrics_addr().map(|a| (a.ip().to_string(), a.port())),
            servers: self.servers().iter().map(|s| s.url().to_owned()).collect(),
        }
    }

    /// Starts polling: registers the workers' task definitions, delivers journalled results,
    /// starts the metrics endpoint if configured, then the poll loops and the supervisor.
    pub async fn start(&self) -> Result<()> {
        if self
            .inner
            .state
            .compare_exchange(CREATED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Error::NotRunning("already started (a runtime starts once)"));
        }
        let defs: Vec<TaskDef> = self
            .workers()
            .iter()
            .filter_map(|w| w.options().register.clone())
            .collect();
        if !defs.is_empty() {
            self.register_task_defs(&defs).await?;
        }
        if let Some(port) = self.inner.options.metrics_port {
            let exposition: Arc<dyn Exposition> = Arc::new(self.clone());
            let host = self.inner.options.metrics_host;
            let (addr, task) = endpoint::serve(host, port, exposition).await?;
            tracing::info!(%addr, "metrics and health endpoint listening");
            if let Ok(mut a) = self.inner.metrics_addr.lock() {
                *a = Some(addr);
            }
            self.keep(task);
            let every = self.inner.options.queue_depth_interval;
            if !every.is_zero() {
                let watcher = queue_depth::watch(Arc::downgrade(&self.inner), every);
                self.keep(self.inner.handle.spawn(watcher));
            }
        }
        self.replay_journal().await?;
        for worker in self.workers() {
            self.launch(&worker);
        }
        let functions: Vec<(Worker, TaskFn)> = self
            .inner
            .functions
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default();
        for (worker, f) in &functions {
            self.spawn_executors(worker, f);
        }
        let now = crate::api::now_millis() as u64;
        self.inner.supervisor_beat.store(now, Ordering::Relaxed);
        let supervisor = self
            .inner
            .handle
            .spawn(supervise(Arc::downgrade(&self.inner)));
        self.keep(supervisor);
        Ok(())
    }

    fn keep(&self, task: JoinHandle<()>) {
        if let Ok(mut background) = self.inner.background.lock() {
            background.push(task);
        }
    }

    async fn replay_journal(&self) -> Result<()> {
        let Some(journal) = self.inner.journal.clone() else {
            return Ok(());
        };
        let entries = tokio::task::spawn_blocking(move || journal.load())
            .await
            .map_err(|e| Error::Journal {
                path: String::new(),
                message: e.to_string(),
            })??;
        if entries.is_empty() {
            return Ok(());
        }
        let mut replayed = 0;
        for entry in entries {
            let Some(server) = self
                .inner
                .servers
                .members()
                .iter()
                .map(|m| &m.client)
                .find(|s| s.url() == entry.server)
            else {
                tracing::warn!(server = %entry.server, task_id = %entry.result.task_id,
                    "journalled result for a server that is not configured: kept in the journal");
                continue;
            };
            let origin = crate::runner::delivery::Origin {
                worker: std::sync::Weak::new(),
                task_type: String::new(),
            };
            self.inner
                .deliveries
                .submit(server.id(), entry.result, origin, Some(entry.id));
            replayed += 1;
        }
        tracing::info!(replayed, "delivering results journalled by an earlier run");
        Ok(())
    }

    fn launch(&self, worker: &Worker) {
        let initial = if worker.options().paused {
            WorkerState::Paused
        } else {
            WorkerState::Running
        };
        worker.inner.set_state(initial);
        let Ok(mut loops) = self.inner.loops.lock() else {
            return;
        };
        for member in self.inner.servers.members() {
            let mut slot = LoopSlot {
                worker: worker.clone(),
                server: Arc::clone(&member.client),
                deadline: Arc::new(AtomicU64::new(NO_DEADLINE)),
                seen_deadline: NO_DEADLINE,
                restarts_without_progress: 0,
                handle: None,
            };
            slot.handle = Some(self.inner.spawn_loop(&slot));
            loops.push(slot);
        }
    }

    fn spawn_executors(&self, worker: &Worker, f: &TaskFn) {
        for _ in 0..worker.options().concurrency {
            let (worker, f) = (worker.clone(), Arc::clone(f));
            let task = self.inner.handle.spawn(async move {
                loop {
                    let claimed = match worker.take(1, None, None).await {
                        Ok(mut claimed) => match claimed.pop() {
                            Some(claimed) => claimed,
                            None => continue,
                        },
                        Err(_) => return,
                    };
                    let ClaimedTask { task, claim, .. } = claimed;
                    let (id, wf) = (task.task_id.clone(), task.workflow_instance_id.clone());
                    let span =
                        tracing::debug_span!("execute", task_type = %task.task_type, task_id = %id);
                    // Its own tokio task, so that a panic fails this task and not the executor.
                    let run = tokio::spawn(tracing::Instrument::instrument(f(task), span));
                    let result = match run.await {
                        Ok(outcome) => outcome.into_result(&id, &wf),
                        Err(e) => {
                            let reason = panic_message(e);
                            worker.inner.metrics.uncaught.inc();
                            tracing::error!(task_id = %id, %reason, "task function panicked");
                            TaskResult::failed(&id, &wf, reason)
                        }
                    };
                    if let Err(e) = claim.complete(result) {
                        tracing::error!(error = %e, "cannot complete a task");
                    }
                }
            });
            self.keep(task);
        }
    }

    /// Stops gracefully: no more polls; running tasks get until `deadline` to finish and their
    /// results to be delivered; whatever is still undelivered then goes to the journal.
    pub async fn stop(&self, deadline: Duration) -> StopReport {
        let until = Instant::now() + deadline;
        if self.inner.state.swap(STOPPING, Ordering::AcqRel) == STOPPED {
            self.inner.state.store(STOPPED, Ordering::Release);
            return StopReport::default();
        }
        let workers = self.workers();
        let mut report = StopReport::default();
        for worker in &workers {
            worker.inner.set_state(WorkerState::Stopping);
        }
        // Polls in flight may still bring tasks; they are handed back as they arrive.
        let loops: Vec<JoinHandle<()>> = self
            .inner
            .loops
            .lock()
            .map(|mut l| l.iter_mut().filter_map(|s| s.handle.take()).collect())
            .unwrap_or_default();
        for handle in loops {
            let abort = handle.abort_handle();
            if tokio::time::timeout_at(until.into(), handle).await.is_err() {
                abort.abort();
            }
        }
        for worker in &workers {
            report.returned_tasks += worker.inner.give_back_buffered();
        }
        while workers.iter().any(|w| w.inner.running() > 0) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        report.abandoned_tasks = workers.iter().map(|w| w.inner.running()).sum();
        if !self.inner.deliveries.drain(until).await {
            tracing::warn!(
                pending = self.inner.deliveries.pending(),
                "stop deadline passed with results undelivered"
            );
        }
        report.journalled_results = self.finish().await;
        report
    }

    /// Stops at once: no more polls, deliveries abandoned and journalled.
    pub async fn kill(&self) -> StopReport {
        self.inner.state.store(STOPPING, Ordering::Release);
        let workers = self.workers();
        for worker in &workers {
            worker.inner.set_state(WorkerState::Stopping);
        }
        if let Ok(mut loops) = self.inner.loops.lock() {
            for slot in loops.iter_mut() {
                if let Some(h) = slot.handle.take() {
                    h.abort();
                }
            }
        }
        let report = StopReport {
            abandoned_tasks: workers.iter().map(|w| w.inner.running()).sum(),
            journalled_results: 0,
            returned_tasks: 0,
        };
        StopReport {
            journalled_results: self.finish().await,
            ..report
        }
    }

    async fn finish(&self) -> usize {
        let journalled = self.inner.deliveries.kill().await;
        if let Ok(mut background) = self.inner.background.lock() {
            for task in background.drain(..) {
                task.abort();
            }
        }
        for worker in self.workers() {
            worker.inner.set_state(WorkerState::Stopped);
        }
        self.inner.state.store(STOPPED, Ordering::Release);
        journalled
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return "the task function was cancelled".into();
    }
    let payload = e.into_panic();
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into());
    format!("the task function panicked: {text}")
}

impl Inner {
    fn spawn_loop(&self, slot: &LoopSlot) -> JoinHandle<()> {
        #[cfg(test)]
        if self.loops_end_at_once.load(Ordering::Relaxed) {
            return self.handle.spawn(async {});
        }
        let poll_loop = PollLoop {
            worker: Arc::clone(&slot.worker.inner),
            server: Arc::clone(&slot.server),
            cluster: Arc::clone(&self.servers),
            error_backoff: self.options.poll_error_backoff,
            deadline: Arc::clone(&slot.deadline),
            long_polls: Default::default(),
        };
        self.handle.spawn(poll_loop.run())
    }
}

/// Every second: restart poll loops that ended while their worker runs (a panic) or that
/// missed their progress deadline while the worker had free capacity (a hang). The official
/// Python SDK's workers silently stop polling in both cases.
async fn supervise(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.state.load(Ordering::Acquire) != RUNNING {
            return;
        }
        let now = crate::api::now_millis() as u64;
        inner.supervisor_beat.store(now, Ordering::Relaxed);
        let Ok(mut loops) = inner.loops.lock() else {
            return;
        };
        for slot in loops.iter_mut() {
            if let Some(reason) = restart_reason(slot, now) {
                inner.restart_loop(slot, reason, now);
            }
        }
    }
}

/// Why `slot`'s loop needs a restart, if it does; notes its progress on the way.
fn restart_reason(slot: &mut LoopSlot, now: u64) -> Option<&'static str> {
    if !matches!(
        slot.worker.state(),
        WorkerState::Running | WorkerState::Paused
    ) {
        return None;
    }
    let deadline = slot.deadline.load(Ordering::Relaxed);
    if deadline != slot.seen_deadline {
        slot.seen_deadline = deadline;
        slot.restarts_without_progress = 0;
    }
    match &slot.handle {
        Some(h) if h.is_finished() => Some("the poll loop ended unexpectedly (panic)"),
        Some(_) if deadline < now && slot.worker.inner.free_slots() > 0 => {
            Some("the poll loop stopped making progress")
        }
        _ => None,
    }
}

impl Inner {
    fn restart_loop(&self, slot: &mut LoopSlot, reason: &str, now: u64) {
        tracing::error!(task_type = %slot.worker.task_type(), server = %slot.server.url(), reason, "restarting the poll loop");
        slot.worker.inner.metrics.restarts.inc();
        if slot.handle.as_ref().is_some_and(JoinHandle::is_finished) {
            slot.worker.inner.metrics.uncaught.inc(); // the loop died (a panic)
        }
        self.events.emit(Event::PollLoopRestarted {
            task_type: slot.worker.task_type().to_owned(),
            server: slot.server.id(),
            reason: reason.to_owned(),
        });
        if let Some(h) = slot.handle.take() {
            h.abort();
        }
        // A deadline for the new loop's first round, so that one wedged from its start is
        // seen too; it does not count as progress.
        let first_round = slot.worker.options().poll_timeout + Duration::from_secs(35);
        let deadline = now + first_round.as_millis() as u64;
        slot.deadline.store(deadline, Ordering::Relaxed);
        slot.seen_deadline = deadline;
        slot.restarts_without_progress += 1;
        slot.handle = Some(self.spawn_loop(slot));
    }
}

impl Exposition for Runtime {
    fn metrics(&self) -> String {
        self.metrics_text()
    }

    fn liveness(&self) -> endpoint::Probe {
        Runtime::liveness(self)
    }

    fn readiness(&self) -> endpoint::Probe {
        Runtime::readiness(self)
    }

    fn health_body(&self, ready: &endpoint::Probe) -> String {
        let workers: Vec<serde_json::Value> = self
            .health()
            .iter()
            .map(|h| {
                serde_json::json!({
                    "taskType": h.task_type,
                    "domain": h.domain,
                    "state": h.state.as_str(),
                    "lastSuccessfulPollMs": h.last_successful_poll
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_millis() as u64),
                    "consecutivePollErrors": h.consecutive_poll_errors,
                    "running": h.running,
                    "buffered": h.buffered,
                    "restarts": h.restarts,
                })
            })
            .collect();
        serde_json::json!({
            "healthy": ready.ok,
            "reasons": ready.reasons,
            "quiet": self.is_quiet(),
            "pendingResults": self.pending_results(),
            "workers": workers,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServerConfig;

    async fn dev_runtime() -> (conductor_devserver::DevServer, Runtime, Worker) {
        let server = conductor_devserver::DevServer::start(conductor_devserver::Config::default())
            .await
            .unwrap();
        let options = RuntimeOptions::new(vec![ServerConfig::new(&server.base_url()).unwrap()]);
        let runtime = Runtime::new(options).unwrap();
        let worker = runtime
            .spawn_fn(
                WorkerOptions::new("supervised").poll_timeout(Duration::from_millis(100)),
                |_t| async { TaskOutcome::Completed(serde_json::Map::new()) },
            )
            .unwrap();
        runtime.start().await.unwrap();
        (server, runtime, worker)
    }

    async fn wait_restarts(worker: &Worker, n: u64) {
        let until = Instant::now() + Duration::from_secs(5);
        while worker.health().restarts < n {
            assert!(
                Instant::now() < until,
                "the supervisor did not restart the poll loop: {:?}",
                worker.health()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_supervisor_restarts_dead_and_stuck_poll_loops() {
        let (server, runtime, worker) = dev_runtime().await;
        // A loop that died (as after a panic).
        if let Some(h) = runtime.inner.loops.lock().unwrap()[0].handle.as_ref() {
            h.abort();
        }
        wait_restarts(&worker, 1).await;
        // A loop that stopped making progress while the worker had capacity: stands in for a
        // poll loop hung on something no timeout covers.
        {
            let mut loops = runtime.inner.loops.lock().unwrap();
            if let Some(h) = loops[0].handle.take() {
                h.abort();
            }
            loops[0].handle = Some(tokio::spawn(std::future::pending::<()>()));
            loops[0].deadline.store(1, Ordering::Relaxed);
        }
        wait_restarts(&worker, 2).await;
        // And the restarted loop polls: tasks get done.
        let http = reqwest::Client::new();
        let admin = server.base_url().trim_end_matches("/api").to_owned();
        http.post(format!("{admin}/admin/tasks"))
            .json(&serde_json::json!({"taskType": "supervised", "count": 3}))
            .send()
            .await
            .unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while server.stats().tasks.completed < 3 {
            assert!(
                Instant::now() < until,
                "no task completed after the restarts"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            runtime
                .metrics_text()
                .contains("worker_restart_total{taskType=\"supervised\"} 2")
        );
        runtime.stop(Duration::from_secs(2)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_poll_loop_the_supervisor_cannot_bring_back_fails_liveness() {
        let (_server, runtime, worker) = dev_runtime().await;
        assert!(runtime.liveness().ok, "{:?}", runtime.liveness());
        runtime
            .inner
            .loops_end_at_once
            .store(true, Ordering::Relaxed);
        if let Some(h) = runtime.inner.loops.lock().unwrap()[0].handle.as_ref() {
            h.abort();
        }
        wait_restarts(&worker, 3).await;
        let until = Instant::now() + Duration::from_secs(5);
        while runtime.liveness().ok {
            assert!(
                Instant::now() < until,
                "still live after 3 fruitless restarts"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let probe = runtime.liveness();
        assert!(
            probe.reasons[0].contains("restarted 3 times in a row without progress"),
            "{probe:?}"
        );
        // A loop that runs again (and so makes progress) makes the runtime live again.
        runtime
            .inner
            .loops_end_at_once
            .store(false, Ordering::Relaxed);
        let until = Instant::now() + Duration::from_secs(10);
        while !runtime.liveness().ok {
            assert!(
                Instant::now() < until,
                "not live again: {:?}",
                runtime.liveness()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        runtime.stop(Duration::from_secs(2)).await;
    }
}
