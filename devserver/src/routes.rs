//! The HTTP routes: the worker API under `/api` and the admin API under `/admin`.
//!
//! Faults, auth and request counting happen before these handlers, in the server's per-request
//! wrapper.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::app::App;
use crate::error::{ApiError, error_response, json_bytes};
use crate::faults::Faults;
use crate::model::{StartWorkflowRequest, TaskDef, TaskResult, WorkflowDef};
use crate::payload::{ExternalStorage, new_key};
use crate::stats::inc;
use crate::store::{BulkRequest, Want};

type S = State<Arc<App>>;

/// The real server's `MAX_POLL_TIMEOUT_MS`.
const MAX_POLL_TIMEOUT_MS: u64 = 5000;

fn parse_json<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid {what} JSON: {e}")))
}

fn json<T: serde::Serialize>(v: &T) -> Response {
    json_bytes(StatusCode::OK, serde_json::to_vec(v).unwrap_or_default())
}

fn text(s: &str) -> Response {
    let mut r = (StatusCode::OK, s.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// What conductor-oss 3.32 answers for a route that does not exist: an `ErrorResponse` whose
/// message is Spring's ("No static resource …" for 404, "Request method 'POST' is not
/// supported" for 405, which is what an old server answers to update-v2 because the path
/// matches `GET /api/tasks/{taskId}`).
pub fn spring_missing(status: StatusCode, path: &str) -> Response {
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        "Request method 'POST' is not supported".to_owned()
    } else {
        format!("No static resource {}.", path.trim_start_matches('/'))
    };
    let body = json!({
        "status": status.as_u16(),
        "message": message,
        "instance": "conductor-devserver",
        "retryable": false,
    });
    json_bytes(status, body.to_string().into_bytes())
}

/// Builds the router over shared state.
pub fn router(app: Arc<App>) -> Router {
    // Results of up to the hard payload limit are posted inline, and workflows started with
    // inputs as big: axum's 2 MB default would refuse them.
    let body_limit = app.store.payloads.limits.body_limit();
    Router::new()
        .route("/health", get(health))
        .route("/api/health", get(health))
        .route("/api/tasks/poll/{task_type}", get(poll))
        .route("/api/tasks/poll/batch/{task_type}", get(batch_poll))
        .route("/api/tasks", post(update))
        .route("/api/tasks/update-v2", post(update_v2))
        .route("/api/tasks/queue/size", get(queue_size))
        .route("/api/tasks/externalstoragelocation", get(storage_location))
        .route(
            "/api/tasks/external-storage-location",
            get(storage_location),
        )
        .route("/api/external/{key}", get(get_external).put(put_external))
        .route("/api/tasks/{id}", get(get_task))
        .route("/api/tasks/{id}/log", post(add_log).get(get_logs))
        .route(
            "/api/metadata/taskdefs",
            post(register_taskdefs)
                .put(update_taskdef)
                .get(all_taskdefs),
        )
        .route("/api/metadata/taskdefs/{name}", get(get_taskdef))
        .route(
            "/api/metadata/workflow",
            put(put_workflow_defs).post(create_workflow_def),
        )
        .route("/api/metadata/workflow/{name}", get(get_workflow_def))
        .route("/api/workflow", post(start_workflow_request))
        .route(
            "/api/workflow/{name_or_id}",
            post(start_workflow).get(get_workflow),
        )
        .route("/api/token", post(token))
        .route("/admin/faults", get(get_faults).put(put_faults))
        .route("/admin/faults/reset", post(reset_faults))
        .route("/admin/pause", post(pause))
        .route("/admin/down", post(down))
        .route("/admin/resume", post(resume))
        .route("/admin/tokens/expire", post(expire_tokens))
        .route("/admin/auth", put(put_auth))
        .route("/admin/stats", get(stats))
        .route("/admin/stats/reset", post(reset_stats))
        .route("/admin/tasks", post(bulk_tasks))
        .route("/admin/tasks/{id}/history", get(history))
        .fallback(|uri: Uri| async move { spring_missing(StatusCode::NOT_FOUND, uri.path()) })
        .method_not_allowed_fallback(|uri: Uri| async move {
            spring_missing(StatusCode::METHOD_NOT_ALLOWED, uri.path())
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(app)
}

async fn health() -> Response {
    json(&json!({"healthy": true, "healthResults": [], "suppressedHealthResults": []}))
}

#[derive(Deserialize)]
struct PollQuery {
    workerid: Option<String>,
    domain: Option<String>,
    count: Option<String>,
    timeout: Option<String>,
}

fn parse_num(v: Option<&str>, name: &str, default: i64) -> Result<i64, ApiError> {
    match v {
        None | Some("") => Ok(default),
        Some(s) => s
            .trim()
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("{name} must be an integer, got {s:?}"))),
    }
}

async fn poll(State(app): S, Path(ty): Path<String>, Query(q): Query<PollQuery>) -> Response {
    let mut buf = Vec::with_capacity(1024);
    // The real single poll is a batch poll of one with a 100 ms wait.
    let n = app
        .store
        .poll(
            &ty,
            q.domain.as_deref(),
            q.workerid.as_deref(),
            Want::ONE,
            &mut buf,
        )
        .await;
    if n == 0 {
        StatusCode::NO_CONTENT.into_response()
    } else {
        json_bytes(StatusCode::OK, buf)
    }
}

async fn batch_poll(
    State(app): S,
    Path(ty): Path<String>,
    Query(q): Query<PollQuery>,
) -> Result<Response, ApiError> {
    let count = parse_num(q.count.as_deref(), "count", 1)?;
    let timeout = parse_num(q.timeout.as_deref(), "timeout", 100)?;
    if timeout > MAX_POLL_TIMEOUT_MS as i64 {
        return Err(ApiError::BadRequest(
            "Long Poll Timeout value cannot be more than 5 seconds".into(),
        ));
    }
    let count = count.max(0) as usize;
    let mut buf = Vec::with_capacity(64 + 1024 * count.min(64));
    buf.push(b'[');
    app.store
        .poll(
            &ty,
            q.domain.as_deref(),
            q.workerid.as_deref(),
            Want {
                count,
                timeout_ms: timeout.max(0) as u64,
                wait_for_count: app.faults.batch_poll_waits_for_count(),
            },
            &mut buf,
        )
        .await;
    buf.push(b']');
    Ok(json_bytes(StatusCode::OK, buf))
}

async fn update(State(app): S, body: Bytes) -> Result<Response, ApiError> {
    let r: TaskResult = parse_json(&body, "TaskResult")?;
    let u = app.store.update(r)?;
    Ok(text(&u.task_id))
}

async fn update_v2(State(app): S, body: Bytes) -> Result<Response, ApiError> {
    let r: TaskResult = parse_json(&body, "TaskResult")?;
    let worker = r.worker_id.clone();
    let u = app.store.update(r)?;
    if !u.terminal {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let mut buf = Vec::with_capacity(1024);
    // What the real server does next: one single poll (100 ms wait) for the same type and domain.
    let n = app
        .store
        .poll(
            &u.task_type,
            u.domain.as_deref(),
            worker.as_deref(),
            Want::ONE,
            &mut buf,
        )
        .await;
    Ok(if n == 0 {
        StatusCode::NO_CONTENT.into_response()
    } else {
        json_bytes(StatusCode::OK, buf)
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LocationQuery {
    path: Option<String>,
    operation: Option<String>,
    payload_type: Option<String>,
}

/// What the real server answers for a missing required query parameter (a 500, Spring's words).
fn required(v: Option<String>, name: &str) -> Result<String, ApiError> {
    v.ok_or_else(|| {
        ApiError::Internal(format!(
            "Required request parameter '{name}' for method parameter type String is not present"
        ))
    })
}

/// `http://host:port` as the client reached this server (its `Host` header), so that uris work
/// through port mappings; the bound address without one.
fn origin(app: &App, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| Some(app.port()?.addr().to_string()))
        .unwrap_or_else(|| "127.0.0.1".into());
    format!("http://{host}")
}

/// `GET /api/tasks/externalstoragelocation`: where a payload is read from or written to. An
/// empty `path` gets a new key; a given one is echoed whether or not it is stored (as the real
/// postgres storage does), so a READ of an unknown key fails only at the `GET` of its uri.
async fn storage_location(
    State(app): S,
    headers: HeaderMap,
    Query(q): Query<LocationQuery>,
) -> Result<Response, ApiError> {
    let path = required(q.path, "path")?;
    let operation = required(q.operation, "operation")?;
    let payload_type = required(q.payload_type, "payloadType")?;
    let op_ok = matches!(operation.to_ascii_uppercase().as_str(), "READ" | "WRITE");
    let type_ok = matches!(
        payload_type.to_ascii_uppercase().as_str(),
        "TASK_INPUT" | "TASK_OUTPUT" | "WORKFLOW_INPUT" | "WORKFLOW_OUTPUT"
    );
    if !(op_ok && type_ok) {
        // The real server's words: it names both values whichever is wrong.
        return Err(ApiError::BadRequest(format!(
            "Invalid input - Operation: {operation}, PayloadType: {payload_type}"
        )));
    }
    let key = if path.trim().is_empty() {
        new_key()
    } else {
        path
    };
    let mut body = serde_json::Map::new();
    if let Some(uri) = app.store.payloads.uri(&key, &origin(&app, &headers)) {
        body.insert("uri".into(), uri.into());
    }
    body.insert("path".into(), key.into());
    Ok(json(&body))
}

/// `GET /api/external/{key}`: a stored payload's JSON. Absent in `none` mode, like the real
/// default storage, which serves nothing.
async fn get_external(
    State(app): S,
    uri: Uri,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let payloads = &app.store.payloads;
    if payloads.limits.storage == ExternalStorage::None {
        return Ok(spring_missing(StatusCode::NOT_FOUND, uri.path()));
    }
    let bytes = payloads
        .get(&key)
        .ok_or_else(|| ApiError::NotFound(format!("No payload stored under key: {key}")))?;
    inc(&app.store.stats.external_reads);
    let mut r = (StatusCode::OK, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// `PUT /api/external/{key}`: stores a JSON object (`upload` mode only; `read-only` answers
/// 405 as the real postgres storage does).
async fn put_external(
    State(app): S,
    uri: Uri,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let payloads = &app.store.payloads;
    match payloads.limits.storage {
        ExternalStorage::None => return Ok(spring_missing(StatusCode::NOT_FOUND, uri.path())),
        ExternalStorage::ReadOnly => {
            return Ok(error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "Request method 'PUT' is not supported".into(),
                false,
            ));
        }
        ExternalStorage::Upload => {}
    }
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
        return Err(ApiError::BadRequest(format!(
            "a stored payload must be a JSON object; the body is not JSON: {e}"
        )));
    }
    if !is_object {
        return Err(ApiError::BadRequest(
            "a stored payload must be a JSON object, not another JSON value".into(),
        ));
    }
    payloads.put(&key, body);
    inc(&app.store.stats.external_writes);
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueueQuery {
    task_type: Option<String>,
    domain: Option<String>,
}

async fn queue_size(State(app): S, Query(q): Query<QueueQuery>) -> Result<Response, ApiError> {
    let ty = q
        .task_type
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::BadRequest("taskType is required".into()))?;
    Ok(json(&app.store.queue_size(&ty, q.domain.as_deref())))
}

async fn get_task(State(app): S, Path(id): Path<String>) -> Result<Response, ApiError> {
    app.store
        .task_json(&id)
        .map(|b| json_bytes(StatusCode::OK, b))
        .ok_or_else(|| ApiError::NotFound(format!("Task not found for taskId: {id}")))
}

async fn add_log(State(app): S, Path(id): Path<String>, body: Bytes) -> Response {
    // The real server stores logs without checking the task exists; here they live with the
    // task, so a log for an unknown id is dropped (still 200, as on the real server).
    app.store
        .add_log(&id, String::from_utf8_lossy(&body).into_owned());
    StatusCode::OK.into_response()
}

async fn get_logs(State(app): S, Path(id): Path<String>) -> Response {
    let logs = app.store.logs(&id);
    if logs.is_empty() {
        // As the real server: no content rather than an empty list.
        return StatusCode::NO_CONTENT.into_response();
    }
    json(&logs)
}

async fn register_taskdefs(State(app): S, body: Bytes) -> Result<Response, ApiError> {
    let defs: Vec<TaskDef> = parse_json(&body, "TaskDef list")?;
    app.store.upsert_taskdefs(defs)?;
    Ok(StatusCode::OK.into_response())
}

async fn update_taskdef(State(app): S, body: Bytes) -> Result<Response, ApiError> {
    let def: TaskDef = parse_json(&body, "TaskDef")?;
    app.store.update_taskdef(def)?;
    Ok(StatusCode::OK.into_response())
}

async fn get_taskdef(State(app): S, Path(name): Path<String>) -> Result<Response, ApiError> {
    app.store
        .taskdef(&name)
        .map(|d| json(&*d))
        .ok_or_else(|| ApiError::NotFound(format!("No such taskType found by name: {name}")))
}

async fn all_taskdefs(State(app): S) -> Response {
    let defs = app.store.taskdefs();
    let refs: Vec<&TaskDef> = defs.iter().map(|d| &**d).collect();
    json(&refs)
}

async fn put_workflow_defs(State(app): S, body: Bytes) -> Result<Response, ApiError> {
    let defs: Vec<WorkflowDef> = parse_json(&body, "WorkflowDef list")?;
    app.store.put_workflow_defs(defs, false)?;
    Ok(StatusCode::OK.into_response())
}

async fn create_workflow_def(State(app): S, body: Bytes) -> Result<Response, ApiError> {
    let def: WorkflowDef = parse_json(&body, "WorkflowDef")?;
    app.store.put_workflow_defs(vec![def], true)?;
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WfQuery {
    version: Option<String>,
    correlation_id: Option<String>,
    include_tasks: Option<String>,
}

fn parse_version(v: Option<&str>) -> Result<Option<i32>, ApiError> {
    match v {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("version must be an integer, got {s:?}"))),
    }
}

async fn get_workflow_def(
    State(app): S,
    Path(name): Path<String>,
    Query(q): Query<WfQuery>,
) -> Result<Response, ApiError> {
    let v = parse_version(q.version.as_deref())?;
    Ok(json(&app.store.workflow_def(&name, v)?))
}

async fn start_workflow(
    State(app): S,
    Path(name): Path<String>,
    Query(q): Query<WfQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(parse_json(&body, "workflow input")?)
    };
    let req = StartWorkflowRequest {
        name,
        version: parse_version(q.version.as_deref())?,
        input,
        task_to_domain: None,
        correlation_id: q.correlation_id,
        workflow_def: None,
    };
    Ok(text(&app.store.start_workflow(req)?))
}

async fn start_workflow_request(State(app): S, body: Bytes) -> Result<Response, ApiError> {
    let req: StartWorkflowRequest = parse_json(&body, "StartWorkflowRequest")?;
    Ok(text(&app.store.start_workflow(req)?))
}

async fn get_workflow(
    State(app): S,
    Path(id): Path<String>,
    Query(q): Query<WfQuery>,
) -> Result<Response, ApiError> {
    let include = !matches!(q.include_tasks.as_deref(), Some("false"));
    Ok(json_bytes(
        StatusCode::OK,
        app.store.workflow_json(&id, include)?,
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequest {
    key_id: Option<String>,
    key_secret: Option<String>,
}

async fn token(State(app): S, uri: Uri, body: Bytes) -> Result<Response, ApiError> {
    if !app.auth.enabled() {
        // What an OSS server answers: the route does not exist.
        return Ok(spring_missing(StatusCode::NOT_FOUND, uri.path()));
    }
    let req: TokenRequest = parse_json(&body, "token request")?;
    let (Some(id), Some(secret)) = (req.key_id, req.key_secret) else {
        return Err(ApiError::BadRequest(
            "keyId and keySecret are required".into(),
        ));
    };
    Ok(match app.auth.issue(&id, &secret) {
        Some(t) => json(&json!({ "token": t })),
        None => json_bytes(
            StatusCode::UNAUTHORIZED,
            json!({"status": 401, "error": "INVALID_CREDENTIALS",
                   "message": "Invalid keyId or keySecret"})
            .to_string()
            .into_bytes(),
        ),
    })
}

// ---- admin -------------------------------------------------------------------------------------

async fn get_faults(State(app): S) -> Response {
    json(&app.faults.get())
}

async fn put_faults(State(app): S, body: Bytes) -> Result<Response, ApiError> {
    let patch: Value = parse_json(&body, "faults")?;
    let merged = app
        .faults
        .get()
        .merge_json(&patch)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    app.faults.set(merged.clone());
    Ok(json(&merged))
}

async fn reset_faults(State(app): S) -> Response {
    app.faults.set(Faults::default());
    json(&app.faults.get())
}

async fn pause(State(app): S) -> Response {
    app.faults.set_paused(true);
    json(&app.faults.get())
}

async fn resume(State(app): S) -> Response {
    app.faults.set_paused(false);
    json(&app.faults.get())
}

#[derive(Deserialize)]
struct DownRequest {
    seconds: f64,
}

/// Closes the port for `seconds` (connection refused, open connections cut), then listens
/// again on the same port; tasks, workflows and definitions are kept. The answer is sent
/// first: the port closes 100 ms later.
async fn down(State(app): S, body: Bytes) -> Result<Response, ApiError> {
    let d: DownRequest = parse_json(&body, "down request")?;
    if !(d.seconds > 0.0 && d.seconds <= 3600.0) {
        return Err(ApiError::BadRequest(format!(
            "seconds must be more than 0 and at most 3600, not {}",
            d.seconds
        )));
    }
    let Some(port) = app.port() else {
        return Err(ApiError::BadRequest("the server is shutting down".into()));
    };
    port.down_for(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs_f64(d.seconds),
    );
    Ok(json(&json!({ "down_for_seconds": d.seconds })))
}

async fn expire_tokens(State(app): S) -> Response {
    app.auth.expire_all();
    StatusCode::OK.into_response()
}

#[derive(Deserialize)]
struct AuthPatch {
    token_ttl_secs: u64,
}

async fn put_auth(State(app): S, body: Bytes) -> Result<Response, ApiError> {
    let p: AuthPatch = parse_json(&body, "auth settings")?;
    app.auth.set_ttl(p.token_ttl_secs);
    Ok(json(&json!({"token_ttl_secs": p.token_ttl_secs})))
}

async fn stats(State(app): S) -> Response {
    json(&app.store.stats.snapshot(app.store.queued_total()))
}

async fn reset_stats(State(app): S) -> Response {
    app.store.stats.reset();
    StatusCode::OK.into_response()
}

async fn bulk_tasks(State(app): S, body: Bytes) -> Result<Response, ApiError> {
    let req: BulkRequest = parse_json(&body, "bulk task request")?;
    let n = app.store.bulk_create(req)?;
    Ok(json(&json!({ "created": n })))
}

async fn history(State(app): S, Path(id): Path<String>) -> Result<Response, ApiError> {
    app.store
        .history(&id)
        .map(|h| json(&h))
        .ok_or_else(|| ApiError::NotFound(format!("No such task found by id: {id}")))
}
