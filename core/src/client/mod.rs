//! One Conductor server: polls, updates (update-v2 with per-server detection, falling back to
//! `POST /api/tasks`), lease extension, task logs and task-definition registration, with token
//! auth when the server has it.

mod auth;
pub mod external;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode, header};

use crate::api::{ErrorResponse, Task, TaskDef, TaskResult};
use crate::config::{RuntimeOptions, ServerConfig};
use crate::error::{Error, Result};
use auth::TokenManager;

/// Which server a task came from: an index into the runtime's server list. Every task carries
/// one, and its results, lease extensions and logs go to that server and no other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId(pub usize);

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server#{}", self.0)
    }
}

/// What the server said to a result.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOutcome {
    /// Accepted. With update-v2, `next` is the next task of the same type, already polled for
    /// this worker: run it without polling.
    Delivered {
        /// The next task, if the server handed one out.
        next: Option<Box<Task>>,
    },
    /// The server does not know the task (404): it was deleted, or its workflow is gone.
    /// Retrying cannot help.
    TaskGone,
}

/// A long poll shorter than this cannot tell a server that waits for a full batch from one
/// that answered a task which arrived at the end of the wait.
const MIN_TELLING_LONG_POLL: Duration = Duration::from_millis(200);

/// Whether a poll that took `elapsed` answered at the end of its `long_poll`, as a server that
/// waits for a full batch does (3.32.3 answers 0.1-0.5 s after the long poll), rather than
/// late for another reason: a slow network or server answers seconds after it.
fn waited_out(long_poll: Duration, elapsed: Duration) -> bool {
    long_poll >= MIN_TELLING_LONG_POLL
        && elapsed >= long_poll.mul_f32(0.95)
        && elapsed <= long_poll + Duration::from_millis(600)
}

const V2_UNKNOWN: u8 = 0;
const V2_PRESENT: u8 = 1;
const V2_MISSING: u8 = 2;

/// Whether a server has `POST /api/tasks/update-v2`, as far as this client has seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateV2 {
    /// Not used yet.
    Unknown,
    /// Answered normally.
    Present,
    /// The route is missing (an old server); results go to `POST /api/tasks`.
    Missing,
}

/// A client for one server.
pub struct ServerClient {
    id: ServerId,
    url: String,
    http: reqwest::Client,
    auth: Option<TokenManager>,
    update_v2: AtomicU8,
    /// Whether the external payload storage takes uploads (see [`external`]).
    uploads: AtomicU8,
    /// Whether this server's batch long poll waits for `count` tasks (see [`Self::poll`]).
    batch_waits_for_count: AtomicBool,
    /// The base URL, parsed: storage URIs on its origin get credentials, others never do.
    base: reqwest::Url,
    /// A client that never carries credentials, for storage URIs elsewhere.
    storage_http: reqwest::Client,
    request_timeout: Duration,
    poll_grace: Duration,
    /// `…/tasks` and `…/tasks/update-v2`, parsed once: they are on every task's path.
    update_url: reqwest::Url,
    update_v2_url: reqwest::Url,
    /// When a poll or an update last got a 2xx answer (ms since the epoch; 0: never): the
    /// readiness probe's evidence that this server is reachable.
    answered_ms: AtomicU64,
    /// `http_api_client_request_seconds`, once the runtime gave it.
    request_seconds: std::sync::OnceLock<prometheus::HistogramVec>,
}

impl fmt::Debug for ServerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerClient")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("auth", &self.auth.is_some())
            .field("update_v2", &self.update_v2())
            .finish()
    }
}

/// The text of an error and its causes (reqwest's own message stops at the outermost layer,
/// which hides "connection refused" behind "error sending request").
pub(crate) fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The HTTP client of the server at `url`, with `redirects` as its redirect policy. A bad CA
/// bundle is an error naming `ca_bundle` and the file.
fn http_client(
    url: &str,
    options: &RuntimeOptions,
    redirects: reqwest::redirect::Policy,
) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(options.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .redirect(redirects)
        .user_agent(concat!("conductor-worker/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &options.ca_bundle {
        let bad = |reason: String| Error::config("ca_bundle", path.display().to_string(), reason);
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("the file holds no PEM certificate".into()));
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(|e| {
        Error::config(
            "server url",
            url,
            format!("HTTP client: {}", error_text(&e)),
        )
    })
}

/// Installs ring as rustls' crypto provider once per process (reqwest is built without one
/// to keep the build lean). Ignored if the host application installed another.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl ServerClient {
    fn observe_request(
        &self,
        endpoint: &str,
        method: &Method,
        answer: Option<&reqwest::Response>,
        took: Duration,
    ) {
        if let Some(histograms) = self.request_seconds.get() {
            let status = answer.map(|r| r.status());
            let status = status.as_ref().map_or("error", StatusCode::as_str);
            histograms
                .with_label_values(&[method.as_str(), route_of(endpoint), status])
                .observe(took.as_secs_f64());
        }
    }
}

/// The route template of each request, as `http_api_client_request_seconds` labels it (never
/// with a task id or type in it, which would make a series per task).
fn route_of(endpoint: &str) -> &'static str {
    match endpoint {
        "batch poll" => "/tasks/poll/batch/{taskType}",
        "update-v2" => "/tasks/update-v2",
        "update" => "/tasks",
        "add task log" => "/tasks/{taskId}/log",
        "get task" => "/tasks/{taskId}",
        "register task definitions" => "/metadata/taskdefs",
        "queue size" => "/tasks/queue/size",
        "external storage location" => "/tasks/externalstoragelocation",
        _ => "other",
    }
}

/// The requests whose 2xx answer shows the server is there for this worker.
const ANSWERS_SHOW_REACHABLE: [&str; 3] = ["batch poll", "update-v2", "update"];

fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl ServerClient {
    /// A client for `config`, the `id`-th server of the runtime.
    pub fn new(id: ServerId, config: &ServerConfig, options: &RuntimeOptions) -> Result<Self> {
        install_crypto_provider();
        let parsed = reqwest::Url::parse(&config.url)
            .map_err(|e| Error::config("server url", &config.url, e.to_string()))?;
        if config.credentials.is_some() && parsed.scheme() == "http" && !is_loopback(&parsed) {
            tracing::warn!(
                server = %config.url,
                "sending credentials over plain http:// to a host that is not loopback: use https://"
            );
        }
        let http = http_client(&config.url, options, external::same_origin_redirects())?;
        let storage_http = http_client(&config.url, options, reqwest::redirect::Policy::default())?;
        let auth = config
            .credentials
            .clone()
            .map(|c| TokenManager::new(c, options.auth_backoff, options.token_refresh_interval));
        Ok(Self {
            id,
            url: config.url.clone(),
            http,
            auth,
            update_v2: AtomicU8::new(V2_UNKNOWN),
            uploads: AtomicU8::new(0),
            batch_waits_for_count: AtomicBool::new(false),
            base: parsed,
            storage_http,
            request_timeout: options.request_timeout,
            poll_grace: options.poll_grace,
            update_url: parse_endpoint(&config.url, "/tasks")?,
            update_v2_url: parse_endpoint(&config.url, "/tasks/update-v2")?,
            answered_ms: AtomicU64::new(0),
            request_seconds: std::sync::OnceLock::new(),
        })
    }

    /// Times every request from now on into `histograms` (labels `method`, `uri`, `status`).
    pub fn observe_requests(&self, histograms: prometheus::HistogramVec) {
        let _ = self.request_seconds.set(histograms);
    }

    /// When a poll or an update last got a 2xx answer from this server.
    pub fn last_answer(&self) -> Option<std::time::SystemTime> {
        let ms = self.answered_ms.load(Ordering::Relaxed);
        (ms > 0).then(|| std::time::UNIX_EPOCH + Duration::from_millis(ms))
    }

    /// How many tasks of `task_type` (in `domain`) wait in this server's queue:
    /// `GET /tasks/queue/size?taskType=&domain=`, which answers a bare integer.
    pub async fn queue_size(&self, task_type: &str, domain: Option<&str>) -> Result<u64> {
        const ENDPOINT: &str = "queue size";
        let mut query = vec![("taskType", task_type)];
        if let Some(domain) = domain {
            query.push(("domain", domain));
        }
        let response = self
            .send(
                ENDPOINT,
                Method::GET,
                Endpoint::Path("/tasks/queue/size"),
                &query,
                None,
                self.request_timeout,
            )
            .await?;
        if response.status() != StatusCode::OK {
            return Err(self.status_error(ENDPOINT, response).await);
        }
        let body = self.read_body(response).await?;
        serde_json::from_slice(&body).map_err(|e| self.decode_error(ENDPOINT, e))
    }

    /// This server's id.
    pub fn id(&self) -> ServerId {
        self.id
    }

    /// This server's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// What this client knows about update-v2 on this server.
    pub fn update_v2(&self) -> UpdateV2 {
        match self.update_v2.load(Ordering::Relaxed) {
            V2_PRESENT => UpdateV2::Present,
            V2_MISSING => UpdateV2::Missing,
            _ => UpdateV2::Unknown,
        }
    }

    /// Sends one request with auth; on 401/403 `EXPIRED_TOKEN`/`INVALID_TOKEN` the token is
    /// refreshed and the request sent once more.
    async fn send(
        &self,
        endpoint: &'static str,
        method: Method,
        url: Endpoint<'_>,
        query: &[(&str, &str)],
        body: Option<(&'static str, bytes::Bytes)>,
        timeout: Duration,
    ) -> Result<reqwest::Response> {
        let url = match url {
            Endpoint::Parsed(url) => url.clone(),
            Endpoint::Path(path) => {
                reqwest::Url::parse(&format!("{}{}", self.url, path)).map_err(|e| {
                    Error::config("server url", format!("{}{path}", self.url), e.to_string())
                })?
            }
        };
        for attempt in 0..2 {
            let token = match &self.auth {
                Some(auth) => {
                    auth.token(&self.http, &self.url, self.request_timeout)
                        .await?
                }
                None => None,
            };
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .timeout(timeout);
            if !query.is_empty() {
                request = request.query(query);
            }
            if let Some((content_type, bytes)) = &body {
                request = request
                    .header(header::CONTENT_TYPE, *content_type)
                    // A clone of `Bytes` shares the buffer: a retried 8 MB upload is not copied.
                    .body(bytes.clone());
            }
            if let Some(token) = &token {
                request = request.header("X-Authorization", token);
            }
            let started = std::time::Instant::now();
            let sent = request.send().await;
            self.observe_request(endpoint, &method, sent.as_ref().ok(), started.elapsed());
            let response = sent.map_err(|e| Error::Transport {
                server: self.url.clone(),
                timed_out: e.is_timeout(),
                message: error_text(&e),
            })?;
            let status = response.status();
            if (status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN)
                && let (Some(auth), Some(token)) = (&self.auth, &token)
            {
                let body = response.bytes().await.unwrap_or_default();
                let error = serde_json::from_slice::<ErrorResponse>(&body)
                    .ok()
                    .and_then(|e| e.error)
                    .unwrap_or_default();
                if error == "EXPIRED_TOKEN" || error == "INVALID_TOKEN" {
                    auth.invalidate(token).await;
                    if attempt == 0 {
                        tracing::debug!(server = %self.url, endpoint, %error, "refreshing the token");
                        continue;
                    }
                }
                return Err(Error::Auth {
                    server: self.url.clone(),
                    message: format!("{endpoint} answered {status} {error}"),
                    retry_in: Duration::from_secs(1),
                });
            }
            if status.is_success() && ANSWERS_SHOW_REACHABLE.contains(&endpoint) {
                self.answered_ms
                    .store(crate::api::now_millis() as u64, Ordering::Relaxed);
            }
            return Ok(response);
        }
        unreachable!("the loop returns on its second pass")
    }

    async fn status_error(&self, endpoint: &'static str, response: reqwest::Response) -> Error {
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        Error::Status {
            server: self.url.clone(),
            endpoint,
            status,
            body: text,
        }
    }

    /// The whole body of a response; failing to read it is a transport error.
    async fn read_body(&self, response: reqwest::Response) -> Result<bytes::Bytes> {
        response.bytes().await.map_err(|e| Error::Transport {
            server: self.url.clone(),
            timed_out: e.is_timeout(),
            message: error_text(&e),
        })
    }

    fn decode_error(&self, endpoint: &'static str, e: impl fmt::Display) -> Error {
        Error::Decode {
            server: self.url.clone(),
            endpoint,
            message: e.to_string(),
        }
    }

    /// Batch poll: up to `count` tasks of `task_type`, the server holding the request open up
    /// to `long_poll` (clamped to its 5 s maximum) while there are none.
    ///
    /// A task that cannot be decoded (nested deeper than 128 levels, a field of the wrong
    /// type) does not fail the poll: it comes back in [`Polled::undecodable`] so that it alone
    /// can be failed, with the reason.
    pub async fn batch_poll(
        &self,
        task_type: &str,
        domain: Option<&str>,
        worker_id: &str,
        count: usize,
        long_poll: Duration,
    ) -> Result<Polled> {
        const ENDPOINT: &str = "batch poll";
        let long_poll = long_poll.min(Duration::from_secs(5));
        let count = count.to_string();
        let timeout_ms = long_poll.as_millis().to_string();
        let mut query = vec![
            ("workerid", worker_id),
            ("count", &count),
            ("timeout", &timeout_ms),
        ];
        if let Some(domain) = domain {
            query.push(("domain", domain));
        }
        let path = format!("/tasks/poll/batch/{}", path_segment(task_type));
        let response = self
            .send(
                ENDPOINT,
                Method::GET,
                Endpoint::Path(&path),
                &query,
                None,
                long_poll + self.poll_grace,
            )
            .await?;
        match response.status() {
            StatusCode::OK => {}
            // Some server versions answer an empty batch poll with 204 (conductor-api.md §4.1).
            StatusCode::NO_CONTENT => return Ok(Polled::default()),
            _ => return Err(self.status_error(ENDPOINT, response).await),
        }
        let body = self.read_body(response).await?;
        if body.is_empty() {
            return Ok(Polled::default());
        }
        decode_tasks(&body).map_err(|e| self.decode_error(ENDPOINT, e))
    }

    /// Polls up to `count` tasks the fastest way this server allows.
    ///
    /// A batch long poll should answer as soon as one task is ready; the real server's SQLite
    /// and Postgres queues wait instead until they have `count` tasks or the long poll is over,
    /// so every pickup would wait a whole long poll unless the queue is deep. A batch that came
    /// back short only at the end of its long poll shows that; from then on this server is
    /// polled with a long poll for one task (which returns as soon as one is ready) followed,
    /// when it brought one, by a poll without waiting for the rest.
    pub async fn poll(
        &self,
        task_type: &str,
        domain: Option<&str>,
        worker_id: &str,
        count: usize,
        long_poll: Duration,
    ) -> Result<Polled> {
        if count < 2 || !self.batch_waits_for_count() {
            let started = std::time::Instant::now();
            let polled = self
                .batch_poll(task_type, domain, worker_id, count, long_poll)
                .await?;
            let received = polled.tasks.len() + polled.undecodable.len();
            if count >= 2
                && (1..count).contains(&received)
                && waited_out(long_poll, started.elapsed())
            {
                self.mark_batch_waits_for_count();
            }
            return Ok(polled);
        }
        let mut polled = self
            .batch_poll(task_type, domain, worker_id, 1, long_poll)
            .await?;
        if polled.tasks.len() + polled.undecodable.len() == 1 {
            // The first task is ours already: an error here must not lose it.
            match self
                .batch_poll(task_type, domain, worker_id, count - 1, Duration::ZERO)
                .await
            {
                Ok(rest) => {
                    polled.tasks.extend(rest.tasks);
                    polled.undecodable.extend(rest.undecodable);
                }
                Err(e) => {
                    tracing::debug!(server = %self.url, error = %e, "polling the rest of a batch failed")
                }
            }
        }
        Ok(polled)
    }

    /// Whether this server's batch long poll was seen waiting for a full batch.
    pub fn batch_waits_for_count(&self) -> bool {
        self.batch_waits_for_count.load(Ordering::Relaxed)
    }

    fn mark_batch_waits_for_count(&self) {
        if !self.batch_waits_for_count.swap(true, Ordering::Relaxed) {
            tracing::info!(server = %self.url, "this server's batch long poll waits for a full batch: polling one task with a long poll, then the rest without waiting");
        }
    }

    /// Sends a result: update-v2 while the server has it, else `POST /api/tasks`.
    ///
    /// A 404 from update-v2 is ambiguous: an unknown task, or an old server without the route.
    /// Conductor's "task not found" carries an `ErrorResponse` with a message; when the body
    /// does not settle it, the result is sent to `POST /api/tasks`, and only if that accepts it
    /// is update-v2 marked missing. So one unknown task never switches update-v2 off.
    pub async fn update(&self, result: &TaskResult) -> Result<UpdateOutcome> {
        const ENDPOINT: &str = "update-v2";
        if result.extend_lease || self.update_v2.load(Ordering::Relaxed) == V2_MISSING {
            return self.update_v1(result).await;
        }
        let response = self
            .post_json(ENDPOINT, &self.update_v2_url, result)
            .await?;
        match response.status() {
            StatusCode::OK => {
                self.update_v2.store(V2_PRESENT, Ordering::Relaxed);
                let bytes = self.read_body(response).await?;
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    return Ok(UpdateOutcome::Delivered { next: None });
                }
                // The result was accepted; an undecodable next task must not turn that into a
                // failure (which would resend the result). The server re-offers it after its
                // response timeout.
                let next = match serde_json::from_slice::<Task>(&bytes) {
                    Ok(task) => Some(Box::new(task)),
                    Err(e) => {
                        tracing::warn!(server = %self.url, error = %e, "update-v2 returned an undecodable next task");
                        None
                    }
                };
                Ok(UpdateOutcome::Delivered { next })
            }
            StatusCode::NO_CONTENT => {
                self.update_v2.store(V2_PRESENT, Ordering::Relaxed);
                Ok(UpdateOutcome::Delivered { next: None })
            }
            StatusCode::METHOD_NOT_ALLOWED => {
                self.mark_v2_missing(405);
                self.update_v1(result).await
            }
            StatusCode::NOT_FOUND => {
                let body = response.bytes().await.unwrap_or_default();
                if is_task_not_found(&body) {
                    return Ok(UpdateOutcome::TaskGone);
                }
                let outcome = self.update_v1(result).await?;
                if matches!(outcome, UpdateOutcome::Delivered { .. }) {
                    self.mark_v2_missing(404);
                }
                Ok(outcome)
            }
            _ => Err(self.status_error(ENDPOINT, response).await),
        }
    }

    fn mark_v2_missing(&self, status: u16) {
        if self.update_v2.swap(V2_MISSING, Ordering::Relaxed) != V2_MISSING {
            tracing::info!(server = %self.url, status, "update-v2 is missing on this server: using POST /api/tasks");
        }
    }

    async fn post_json(
        &self,
        endpoint: &'static str,
        url: &reqwest::Url,
        body: &impl serde::Serialize,
    ) -> Result<reqwest::Response> {
        let body = serde_json::to_vec(body).map_err(|e| self.decode_error(endpoint, e))?;
        let content = Some(("application/json", bytes::Bytes::from(body)));
        let url = Endpoint::Parsed(url);
        self.send(
            endpoint,
            Method::POST,
            url,
            &[],
            content,
            self.request_timeout,
        )
        .await
    }

    /// Sends a result with `POST /api/tasks`.
    pub async fn update_v1(&self, result: &TaskResult) -> Result<UpdateOutcome> {
        const ENDPOINT: &str = "update";
        let response = self.post_json(ENDPOINT, &self.update_url, result).await?;
        match response.status() {
            s if s.is_success() => Ok(UpdateOutcome::Delivered { next: None }),
            StatusCode::NOT_FOUND => Ok(UpdateOutcome::TaskGone),
            _ => Err(self.status_error(ENDPOINT, response).await),
        }
    }

    /// Extends the lease of a running task (its response timeout starts again).
    pub async fn extend_lease(&self, task_id: &str, workflow_id: &str) -> Result<UpdateOutcome> {
        self.update_v1(&TaskResult::lease_extension(task_id, workflow_id))
            .await
    }

    /// Appends a line to a task's execution log at once (results carry their own log lines;
    /// this is for progress reports during a long task).
    pub async fn add_log(&self, task_id: &str, line: &str) -> Result<()> {
        const ENDPOINT: &str = "add task log";
        let path = format!("/tasks/{}/log", path_segment(task_id));
        let response = self
            .send(
                ENDPOINT,
                Method::POST,
                Endpoint::Path(&path),
                &[],
                Some(("text/plain", bytes::Bytes::copy_from_slice(line.as_bytes()))),
                self.request_timeout,
            )
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error(ENDPOINT, response).await)
        }
    }

    /// Registers (creates or replaces) task definitions.
    pub async fn register_task_defs(&self, defs: &[TaskDef]) -> Result<()> {
        const ENDPOINT: &str = "register task definitions";
        let body = serde_json::to_vec(defs).map_err(|e| self.decode_error(ENDPOINT, e))?;
        let response = self
            .send(
                ENDPOINT,
                Method::POST,
                Endpoint::Path("/metadata/taskdefs"),
                &[],
                Some(("application/json", bytes::Bytes::from(body))),
                self.request_timeout,
            )
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error(ENDPOINT, response).await)
        }
    }

    /// The task with `task_id`, or `None` if the server does not know it.
    pub async fn get_task(&self, task_id: &str) -> Result<Option<Task>> {
        const ENDPOINT: &str = "get task";
        let path = format!("/tasks/{}", path_segment(task_id));
        let response = self
            .send(
                ENDPOINT,
                Method::GET,
                Endpoint::Path(&path),
                &[],
                None,
                self.request_timeout,
            )
            .await?;
        match response.status() {
            StatusCode::OK => {
                let bytes = self.read_body(response).await?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| self.decode_error(ENDPOINT, e))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.status_error(ENDPOINT, response).await),
        }
    }
}

/// What a batch poll brought.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Polled {
    /// The tasks.
    pub tasks: Vec<Task>,
    /// Tasks the server handed out that could not be decoded; they are now in progress on the
    /// server and must be failed, or they wait for their response timeout.
    pub undecodable: Vec<Undecodable>,
}

/// A polled task that could not be decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Undecodable {
    /// Its id.
    pub task_id: String,
    /// Its workflow.
    pub workflow_instance_id: String,
    /// Why it could not be decoded.
    pub error: String,
}

/// Decodes a batch poll's answer. The whole list is decoded in one go; only when that fails is
/// it split into raw items (which takes any depth without recursion) and each decoded on its
/// own, so that one bad task fails alone. A body that is not valid UTF-8 is split after a lossy
/// conversion, and the items that held the invalid bytes are undecodable (never decoded with
/// replacement characters in their input).
fn decode_tasks(body: &[u8]) -> std::result::Result<Polled, serde_json::Error> {
    if let Ok(tasks) = serde_json::from_slice::<Vec<Task>>(body) {
        return Ok(Polled {
            tasks,
            undecodable: Vec::new(),
        });
    }
    let lossy;
    let (text, invalid_utf8) = match std::str::from_utf8(body) {
        Ok(text) => (text, false),
        Err(_) => {
            lossy = String::from_utf8_lossy(body);
            (lossy.as_ref(), true)
        }
    };
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Ids {
        task_id: String,
        #[serde(default)]
        workflow_instance_id: String,
    }
    let items: Vec<&serde_json::value::RawValue> = serde_json::from_str(text)?;
    let mut polled = Polled::default();
    for item in items {
        let decoded = if invalid_utf8 && item.get().contains('\u{FFFD}') {
            Err("the task's JSON is not valid UTF-8".to_owned())
        } else {
            serde_json::from_str::<Task>(item.get()).map_err(|e| e.to_string())
        };
        match decoded {
            Ok(task) => polled.tasks.push(task),
            Err(e) => match serde_json::from_str::<Ids>(item.get()) {
                Ok(ids) => polled.undecodable.push(Undecodable {
                    task_id: ids.task_id,
                    workflow_instance_id: ids.workflow_instance_id,
                    error: e,
                }),
                // Not even an id: nothing can be done for it but say so.
                Err(_) => {
                    tracing::error!(error = %e, "a polled task without a readable taskId was skipped")
                }
            },
        }
    }
    Ok(polled)
}

/// Where a request goes: a URL parsed once, or a path under the server's base URL.
#[derive(Clone, Copy)]
enum Endpoint<'a> {
    Parsed(&'a reqwest::Url),
    Path(&'a str),
}

fn parse_endpoint(base: &str, path: &str) -> Result<reqwest::Url> {
    reqwest::Url::parse(&format!("{base}{path}"))
        .map_err(|e| Error::config("server url", base, e.to_string()))
}

/// Conductor's `NotFoundException` for an update: "No such task found by id: …", or "No such
/// workflow found by id: …" (the server loads the workflow first). A missing route answers
/// "No static resource …" (3.32), Spring's default body, HTML or nothing.
fn is_task_not_found(body: &[u8]) -> bool {
    serde_json::from_slice::<ErrorResponse>(body)
        .ok()
        .and_then(|e| e.message)
        .is_some_and(|m| {
            let m = m.to_ascii_lowercase();
            m.contains("no such task") || m.contains("no such workflow")
        })
}

/// Percent-encodes one path segment.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_bodies() {
        assert!(is_task_not_found(
            br#"{"status":404,"message":"No such task found by id: abc","instance":"x","retryable":false}"#
        ));
        assert!(is_task_not_found(
            br#"{"status":404,"message":"No such workflow found by id: w-x","instance":"vm","retryable":false}"#
        ));
        assert!(!is_task_not_found(
            br#"{"status":404,"message":"No static resource api/tasks/update-v2.","instance":"vm","retryable":false}"#
        ));
        assert!(!is_task_not_found(
            br#"{"timestamp":"2026","status":404,"error":"Not Found","path":"/api/tasks/update-v2"}"#
        ));
        assert!(!is_task_not_found(b""));
        assert!(!is_task_not_found(b"<html>Not Found</html>"));
    }

    #[test]
    fn one_undecodable_task_fails_alone() {
        let depth = 100_000;
        let body = format!(
            r#"[{{"taskId":"ok-1","inputData":{{"a":1}}}},
                {{"taskId":"deep","workflowInstanceId":"wf","inputData":{{"x":{}{}}}}},
                {{"taskId":"bad-type","workflowInstanceId":"wf","pollCount":"many"}},
                {{"taskId":"ok-2"}}]"#,
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let polled = decode_tasks(body.as_bytes()).unwrap();
        let ids: Vec<&str> = polled.tasks.iter().map(|t| t.task_id.as_str()).collect();
        assert_eq!(ids, ["ok-1", "ok-2"]);
        let bad: Vec<&str> = polled
            .undecodable
            .iter()
            .map(|u| u.task_id.as_str())
            .collect();
        assert_eq!(bad, ["deep", "bad-type"]);
        assert!(polled.undecodable[0].error.contains("recursion limit"));
        assert!(
            polled
                .undecodable
                .iter()
                .all(|u| u.workflow_instance_id == "wf")
        );
        assert!(
            decode_tasks(b"[{\"taskId\": tru").is_err(),
            "a truncated body fails the poll"
        );
    }

    #[test]
    fn a_task_with_invalid_utf8_fails_alone() {
        let mut body = r#"[{"taskId":"ok-1","inputData":{"s":"café"}},"#.as_bytes().to_vec();
        body.extend_from_slice(br#"{"taskId":"bad","workflowInstanceId":"wf","inputData":{"s":""#);
        body.extend_from_slice(b"\xff\xfe\x80");
        body.extend_from_slice(br#""}},{"taskId":"ok-2"}]"#);
        let polled = decode_tasks(&body).unwrap();
        let ids: Vec<&str> = polled.tasks.iter().map(|t| t.task_id.as_str()).collect();
        assert_eq!(ids, ["ok-1", "ok-2"]);
        assert_eq!(polled.tasks[0].input_data["s"], "café");
        assert_eq!(polled.undecodable.len(), 1);
        assert_eq!(polled.undecodable[0].task_id, "bad");
        assert!(polled.undecodable[0].error.contains("UTF-8"));
    }

    #[test]
    fn only_an_answer_at_the_end_of_the_long_poll_shows_a_wait_for_a_full_batch() {
        let second = Duration::from_secs(1);
        let ms = Duration::from_millis;
        assert!(waited_out(second, ms(1000)) && waited_out(second, ms(1450)));
        assert!(!waited_out(second, ms(300)), "answered early");
        assert!(
            !waited_out(second, ms(2300)),
            "a slow server, not a waiting one"
        );
        assert!(!waited_out(ms(100), ms(100)), "too short to tell");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(path_segment("send email/x"), "send%20email%2Fx");
        assert_eq!(path_segment("greet-v2.x"), "greet-v2.x");
    }
}

/// Property test (fuzzing) of the batch-poll decoder: any mix of good tasks, tasks with
/// wrong-typed fields, deep nesting and items without an id. Every task with a readable id comes
/// out exactly once, as a task or as undecodable, in order; nothing panics. `PROPTEST_CASES`
/// sets the number of cases (tests/fuzz.sh runs many).
#[cfg(test)]
mod decode_props {
    use super::decode_tasks;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Item {
        Good(String),
        WrongType(String),
        Deep(String, usize),
        NoId,
    }

    fn item() -> impl Strategy<Value = Item> {
        let id = "[a-z0-9]{1,8}";
        prop_oneof![
            4 => id.prop_map(Item::Good),
            1 => id.prop_map(Item::WrongType),
            // Beyond serde_json's recursion limit (128).
            1 => (id, 200usize..3000).prop_map(|(i, d)| Item::Deep(i, d)),
            1 => Just(Item::NoId),
        ]
    }

    fn render(item: &Item) -> String {
        match item {
            Item::Good(id) => {
                format!(
                    r#"{{"taskId":"{id}","workflowInstanceId":"wf","inputData":{{"a":[1,2]}}}}"#
                )
            }
            Item::WrongType(id) => {
                format!(r#"{{"taskId":"{id}","workflowInstanceId":"wf","retryCount":"x"}}"#)
            }
            Item::Deep(id, depth) => format!(
                r#"{{"taskId":"{id}","workflowInstanceId":"wf","inputData":{{"x":{}{}}}}}"#,
                "[".repeat(*depth),
                "]".repeat(*depth)
            ),
            Item::NoId => r#"{"inputData":{}}"#.to_string(),
        }
    }

    proptest! {
        #[test]
        fn every_task_with_an_id_comes_out_once(items in prop::collection::vec(item(), 0..12)) {
            let body = format!(
                "[{}]",
                items.iter().map(render).collect::<Vec<_>>().join(",")
            );
            let polled = decode_tasks(body.as_bytes()).unwrap();
            let good: Vec<&str> = items
                .iter()
                .filter_map(|i| match i {
                    Item::Good(id) => Some(id.as_str()),
                    _ => None,
                })
                .collect();
            let bad: Vec<&str> = items
                .iter()
                .filter_map(|i| match i {
                    Item::WrongType(id) | Item::Deep(id, _) => Some(id.as_str()),
                    _ => None,
                })
                .collect();
            let got_good: Vec<&str> = polled
                .tasks
                .iter()
                .map(|t| t.task_id.as_str())
                .filter(|id| good.contains(id))
                .collect();
            let got_bad: Vec<&str> = polled.undecodable.iter().map(|u| u.task_id.as_str()).collect();
            prop_assert_eq!(got_good, good);
            prop_assert_eq!(got_bad, bad);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_tasks(&bytes);
        }
    }
}
