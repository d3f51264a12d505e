//! The listener, the per-request fault/auth/counting wrapper, and [`DevServer`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Mutex as AsyncMutex, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::app::{App, Port};
use crate::auth::{ApiKey, Auth, AuthError};
use crate::error::{error_response, json_bytes};
use crate::faults::{FaultError, FaultState, Faults, Group};
use crate::payload::{PayloadLimitError, PayloadLimits};
use crate::routes::{router, spring_missing};
use crate::stats::{Endpoint, Stats, inc};
use crate::store::Store;

/// Server settings; the fields mirror the command-line flags.
///
/// ```
/// use conductor_devserver::Config;
/// let mut config = Config { port: 0, sweep_interval_ms: 20, ..Config::default() };
/// config.faults.latency_ms = 5;
/// config.auth.push("key:secret".parse().unwrap());
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind (`--host`).
    pub host: String,
    /// Port to bind; 0 picks a free one (`--port`; the library default is 0, the CLI's 8080).
    pub port: u16,
    /// Keys accepted by `POST /api/token`; auth is on when this is not empty (`--auth KEY:SECRET`).
    pub auth: Vec<ApiKey>,
    /// Lifetime of issued tokens (`--token-ttl-secs`).
    pub token_ttl_secs: u64,
    /// Faults active from the start (`--latency-ms`, `--fail-rate`, `--drop-rate`,
    /// `--malformed-rate`, `--paused`, `--no-update-v2`, `--update-v2-missing-status`).
    pub faults: Faults,
    /// How often response timeouts are checked, in ms (`--sweep-interval-ms`).
    pub sweep_interval_ms: u64,
    /// Task payload size limits and external storage (`--task-input-threshold-kb`,
    /// `--task-output-threshold-kb`, `--max-task-payload-kb`, `--external-storage`,
    /// `--external-storage-url`).
    pub payloads: PayloadLimits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 0,
            auth: Vec::new(),
            token_ttl_secs: 3600,
            faults: Faults::default(),
            sweep_interval_ms: 100,
            payloads: PayloadLimits::default(),
        }
    }
}

/// Why the server could not start or listen again.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid faults: {0}")]
    Faults(#[from] FaultError),
    #[error("sweep_interval_ms must be at least 1")]
    SweepInterval,
    #[error("invalid payload limits: {0}")]
    Payloads(#[from] PayloadLimitError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Returned by the service to make hyper close the connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by fault injection")]
struct DropConnection;

/// Which stats key and fault group a request belongs to.
fn classify(method: &Method, path: &str) -> (Option<Endpoint>, Group) {
    let Some(rest) = path.strip_prefix("/api/") else {
        return if path == "/health" {
            (Some(Endpoint::Health), Group::Other)
        } else {
            (None, Group::Other)
        };
    };
    let post = method == Method::POST;
    if rest.starts_with("external/") {
        let e = if method == Method::PUT {
            Endpoint::ExternalPut
        } else {
            Endpoint::ExternalGet
        };
        return (Some(e), Group::External);
    }
    if matches!(
        rest,
        "tasks/externalstoragelocation" | "tasks/external-storage-location"
    ) {
        return (Some(Endpoint::ExternalLocation), Group::External);
    }
    if let Some(t) = rest.strip_prefix("tasks") {
        return match t {
            "" => (Some(Endpoint::Update), Group::Update),
            "/update-v2" => (Some(Endpoint::UpdateV2), Group::Update),
            "/queue/size" => (Some(Endpoint::QueueSize), Group::Task),
            _ if t.starts_with("/poll/batch/") => (Some(Endpoint::BatchPoll), Group::Poll),
            _ if t.starts_with("/poll/") => (Some(Endpoint::Poll), Group::Poll),
            _ if t.ends_with("/log") && post => (Some(Endpoint::LogAdd), Group::Log),
            _ if t.ends_with("/log") => (Some(Endpoint::LogGet), Group::Log),
            _ => (Some(Endpoint::TaskGet), Group::Task),
        };
    }
    if rest.starts_with("metadata/taskdefs") {
        return (Some(Endpoint::Taskdefs), Group::Metadata);
    }
    if rest.starts_with("metadata/") {
        return (Some(Endpoint::WorkflowDefs), Group::Metadata);
    }
    if rest.starts_with("workflow") {
        let e = if post {
            Endpoint::WorkflowStart
        } else {
            Endpoint::WorkflowGet
        };
        return (Some(e), Group::Workflow);
    }
    match rest {
        "token" => (Some(Endpoint::Token), Group::Token),
        "health" => (Some(Endpoint::Health), Group::Other),
        _ => (None, Group::Other),
    }
}

fn auth_error(e: AuthError) -> Response<Body> {
    let (code, msg) = match e {
        AuthError::Invalid => ("INVALID_TOKEN", "missing or invalid X-Authorization token"),
        AuthError::Expired => ("EXPIRED_TOKEN", "the X-Authorization token has expired"),
    };
    let body = serde_json::json!({"status": 401, "error": code, "message": msg});
    json_bytes(StatusCode::UNAUTHORIZED, body.to_string().into_bytes())
}

/// Garbles a response into a 200 with a truncated JSON body.
async fn malform(resp: Response<Body>) -> Response<Body> {
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let body = if bytes.len() > 2 {
        bytes.slice(..bytes.len() / 2).to_vec()
    } else {
        br#"{"taskId": "trunc"#.to_vec()
    };
    json_bytes(StatusCode::OK, body)
}

async fn handle(
    app: Arc<App>,
    svc: TowerToHyperService<Router>,
    req: Request<Incoming>,
) -> Result<Response<Body>, DropConnection> {
    use hyper::service::Service;
    let path = req.uri().path();
    if path.starts_with("/admin/") {
        return Ok(svc
            .call(req)
            .await
            .unwrap_or_else(|e: Infallible| match e {}));
    }
    let (endpoint, group) = classify(req.method(), path);
    let stats = &app.store.stats;
    if let Some(e) = endpoint {
        stats.request(e);
    }
    app.faults.wait_unpaused().await;
    let d = app.faults.decide(group);
    if d.latency_ms > 0 {
        inc(&stats.f_latency);
        tokio::time::sleep(Duration::from_millis(d.latency_ms)).await;
        // A pause that began during the delay holds this request too.
        app.faults.wait_unpaused().await;
    }
    if d.drop {
        inc(&stats.f_drop);
        return Err(DropConnection);
    }
    if d.fail {
        inc(&stats.f_fail);
        return Ok(error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Injected fault: internal server error".into(),
            true,
        ));
    }
    let path = req.uri().path();
    if app.auth.enabled() && path.starts_with("/api/") && path != "/api/token" {
        let token = req
            .headers()
            .get("x-authorization")
            .and_then(|v| v.to_str().ok());
        if let Err(e) = app.auth.check(token) {
            return Ok(auth_error(e));
        }
    }
    if path == "/api/tasks/update-v2" {
        let (on, status) = app.faults.update_v2();
        if !on {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND);
            return Ok(spring_missing(code, path));
        }
    }
    if d.reset_after {
        inc(&stats.f_reset_after);
        return Err(handle_then_reset(&app, &svc, endpoint, req).await);
    }
    let resp = svc
        .call(req)
        .await
        .unwrap_or_else(|e: Infallible| match e {});
    if d.malformed {
        inc(&stats.f_malformed);
        return Ok(malform(resp).await);
    }
    Ok(resp)
}

/// `reset_after_rate`: handles the request (an update is applied, a poll hands its tasks out),
/// then drops the connection without an answer. For an update, the task is marked as not
/// answered, so that the worker's resend is not counted as a duplicate result.
async fn handle_then_reset(
    app: &App,
    svc: &TowerToHyperService<Router>,
    endpoint: Option<Endpoint>,
    req: Request<Incoming>,
) -> DropConnection {
    use hyper::service::Service;
    #[derive(serde::Deserialize)]
    struct TaskIdOnly {
        #[serde(rename = "taskId")]
        task_id: Option<String>,
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(Body::new(body), usize::MAX).await else {
        return DropConnection;
    };
    let task_id = if matches!(endpoint, Some(Endpoint::Update | Endpoint::UpdateV2)) {
        serde_json::from_slice::<TaskIdOnly>(&bytes)
            .ok()
            .and_then(|t| t.task_id)
    } else {
        None
    };
    let _ = svc
        .call(Request::from_parts(parts, Body::from(bytes)))
        .await
        .unwrap_or_else(|e: Infallible| match e {});
    if let Some(id) = task_id {
        app.store.result_unanswered(&id);
    }
    DropConnection
}

/// A running listener: the accept loop and its connections.
struct Listening {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

async fn accept_loop(
    listener: TcpListener,
    app: Arc<App>,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let svc = TowerToHyperService::new(router.clone());
                conns.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle(app.clone(), svc.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .header_read_timeout(None)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
    drop(listener);
    // Aborting the connection tasks closes their sockets: clients see the connection drop.
    conns.shutdown().await;
}

/// An in-process dev server.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use conductor_devserver::{Config, DevServer};
/// let server = DevServer::start(Config::default()).await?;
/// let url = server.base_url(); // "http://127.0.0.1:PORT/api"
/// server.set_listening(false).await?; // connection refused from now on
/// server.set_listening(true).await?; // same port, same state
/// assert_eq!(server.stats().tasks.completed, 0);
/// server.shutdown().await;
/// # Ok(()) }
/// ```
pub struct DevServer {
    app: Arc<App>,
    net: Arc<Net>,
    sweeper: JoinHandle<()>,
}

/// The port: listening on it, closing it, opening it again (shared with `POST /admin/down`).
struct Net {
    app: Arc<App>,
    addr: SocketAddr,
    router: Router,
    listening: AsyncMutex<Option<Listening>>,
    /// Set by shutdown: a pending `/admin/down` must not open the port again.
    shut: std::sync::atomic::AtomicBool,
}

impl Net {
    fn spawn_listener(&self, listener: TcpListener) -> Listening {
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            listener,
            self.app.clone(),
            self.router.clone(),
            rx,
        ));
        Listening { stop, task }
    }

    async fn set_listening(&self, on: bool) -> Result<(), StartError> {
        let mut guard = self.listening.lock().await;
        if on {
            if guard.is_none() && !self.shut.load(std::sync::atomic::Ordering::Acquire) {
                let listener =
                    TcpListener::bind(self.addr)
                        .await
                        .map_err(|source| StartError::Bind {
                            addr: self.addr.to_string(),
                            source,
                        })?;
                *guard = Some(self.spawn_listener(listener));
            }
        } else if let Some(l) = guard.take() {
            let _ = l.stop.send(true);
            let _ = l.task.await;
        }
        Ok(())
    }
}

impl Port for Net {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn down_for(self: Arc<Self>, grace: Duration, down: Duration) {
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = self.set_listening(false).await;
            tokio::time::sleep(down).await;
            // The port was just released; retry a bind that races a lingering socket.
            for _ in 0..50 {
                match self.set_listening(true).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "listening again after /admin/down");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
}

impl DevServer {
    /// Binds, starts serving and starts the timeout sweeper.
    pub async fn start(config: Config) -> Result<DevServer, StartError> {
        config.faults.validate()?;
        config.payloads.validate()?;
        if config.sweep_interval_ms == 0 {
            return Err(StartError::SweepInterval);
        }
        let addr = format!("{}:{}", config.host, config.port);
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let app = Arc::new(App {
            store: Arc::new(Store::new(config.payloads)),
            faults: FaultState::new(config.faults),
            auth: Auth::new(config.auth, config.token_ttl_secs),
            port: std::sync::OnceLock::new(),
        });
        let router = router(app.clone());
        let store = app.store.clone();
        let every = Duration::from_millis(config.sweep_interval_ms);
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                store.sweep();
            }
        });
        let net = Arc::new(Net {
            app: app.clone(),
            addr: local,
            router,
            listening: AsyncMutex::new(None),
            shut: std::sync::atomic::AtomicBool::new(false),
        });
        let port: Arc<dyn Port> = net.clone();
        let _ = app.port.set(Arc::downgrade(&port));
        *net.listening.lock().await = Some(net.spawn_listener(listener));
        Ok(DevServer { app, net, sweeper })
    }

    /// The worker API base URL, `http://HOST:PORT/api`, as SDKs expect it.
    pub fn base_url(&self) -> String {
        format!("http://{}/api", self.net.addr)
    }

    /// The server root, `http://HOST:PORT` (admin endpoints live under `/admin`).
    pub fn url(&self) -> String {
        format!("http://{}", self.net.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.net.addr
    }

    /// The current faults.
    pub fn faults(&self) -> Faults {
        self.app.faults.get()
    }

    /// Replaces the faults. Out-of-range rates are clamped and unknown groups ignored; use
    /// [`Faults::validate`] first to be strict.
    pub fn set_faults(&self, faults: Faults) {
        self.app.faults.set(faults);
    }

    /// Stops answering (connections are still accepted) until [`DevServer::resume`].
    pub fn pause(&self) {
        self.app.faults.set_paused(true);
    }

    /// Answers again, including the requests held while paused.
    pub fn resume(&self) {
        self.app.faults.set_paused(false);
    }

    /// Expires every token issued so far.
    pub fn expire_tokens(&self) {
        self.app.auth.expire_all();
    }

    /// The same data as `GET /admin/stats`.
    pub fn stats(&self) -> Stats {
        self.app.store.stats.snapshot(self.app.store.queued_total())
    }

    /// Zeroes the stats counters (gauges keep their values).
    pub fn reset_stats(&self) {
        self.app.store.stats.reset();
    }

    /// `false` closes the port and drops every open connection; `true` listens again on the same
    /// port. Tasks, workflows and definitions are kept either way.
    pub async fn set_listening(&self, on: bool) -> Result<(), StartError> {
        self.net.set_listening(on).await
    }

    /// Stops listening, drops connections and background work.
    pub async fn shutdown(self) {
        self.net
            .shut
            .store(true, std::sync::atomic::Ordering::Release);
        let _ = self.set_listening(false).await;
        self.sweeper.abort();
        // Wakes requests held by a pause so they do not outlive the server.
        self.app.faults.set_paused(false);
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        self.sweeper.abort();
        self.net
            .shut
            .store(true, std::sync::atomic::Ordering::Release);
        if let Ok(mut guard) = self.net.listening.try_lock()
            && let Some(l) = guard.take()
        {
            let _ = l.stop.send(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classified_into_endpoints_and_groups() {
        let g = Method::GET;
        let p = Method::POST;
        assert_eq!(
            classify(&g, "/api/tasks/poll/batch/t"),
            (Some(Endpoint::BatchPoll), Group::Poll)
        );
        assert_eq!(
            classify(&g, "/api/tasks/poll/t"),
            (Some(Endpoint::Poll), Group::Poll)
        );
        assert_eq!(
            classify(&p, "/api/tasks"),
            (Some(Endpoint::Update), Group::Update)
        );
        assert_eq!(
            classify(&p, "/api/tasks/update-v2"),
            (Some(Endpoint::UpdateV2), Group::Update)
        );
        assert_eq!(
            classify(&p, "/api/tasks/x/log"),
            (Some(Endpoint::LogAdd), Group::Log)
        );
        assert_eq!(
            classify(&g, "/api/tasks/x/log"),
            (Some(Endpoint::LogGet), Group::Log)
        );
        assert_eq!(
            classify(&g, "/api/tasks/x"),
            (Some(Endpoint::TaskGet), Group::Task)
        );
        assert_eq!(
            classify(&g, "/api/metadata/taskdefs/t"),
            (Some(Endpoint::Taskdefs), Group::Metadata)
        );
        assert_eq!(
            classify(&p, "/api/metadata/workflow"),
            (Some(Endpoint::WorkflowDefs), Group::Metadata)
        );
        assert_eq!(
            classify(&p, "/api/workflow/w"),
            (Some(Endpoint::WorkflowStart), Group::Workflow)
        );
        assert_eq!(
            classify(&g, "/api/workflow/w"),
            (Some(Endpoint::WorkflowGet), Group::Workflow)
        );
        assert_eq!(
            classify(&p, "/api/token"),
            (Some(Endpoint::Token), Group::Token)
        );
        assert_eq!(
            classify(&g, "/health"),
            (Some(Endpoint::Health), Group::Other)
        );
        assert_eq!(
            classify(&g, "/api/health"),
            (Some(Endpoint::Health), Group::Other)
        );
        assert_eq!(classify(&g, "/nope"), (None, Group::Other));
        for path in [
            "/api/tasks/externalstoragelocation",
            "/api/tasks/external-storage-location",
        ] {
            assert_eq!(
                classify(&g, path),
                (Some(Endpoint::ExternalLocation), Group::External)
            );
        }
        assert_eq!(
            classify(&g, "/api/external/k.json"),
            (Some(Endpoint::ExternalGet), Group::External)
        );
        assert_eq!(
            classify(&Method::PUT, "/api/external/k.json"),
            (Some(Endpoint::ExternalPut), Group::External)
        );
    }
}
