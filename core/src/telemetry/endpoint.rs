//! The metrics and health endpoint: `GET /metrics` (Prometheus text), `GET /health/live`,
//! `GET /health/ready` and `GET /health` (JSON, answers like ready), on the address the
//! runtime options give (loopback by default; `0.0.0.0` for Kubernetes).
//!
//! Every answer comes from state already in memory. The server is axum's router on hyper's
//! HTTP/1 connection builder, because that builder has what a probe port needs and axum's own
//! `serve` does not: a header read timeout (an idle connection that sends nothing is closed),
//! a bounded header buffer (an oversized request is refused with 431), and a connection limit
//! here on top, so neither can keep the kubelet's probe from an answer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// Connections served at once; more wait in the kernel's backlog until one closes.
const MAX_CONNECTIONS: usize = 32;
/// A connection that has not sent a whole request head within this long is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read (hyper's minimum is 8 KiB); a larger one gets 431.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A probe's verdict and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Probe {
    /// 200 when true, 503 when false.
    pub ok: bool,
    /// What failed (empty when `ok`).
    pub reasons: Vec<String>,
}

/// What the endpoint serves; implemented by the runtime.
pub(crate) trait Exposition: Send + Sync + 'static {
    fn metrics(&self) -> String;
    fn liveness(&self) -> Probe;
    fn readiness(&self) -> Probe;
    /// The JSON body of `/health` (each worker's state).
    fn health_body(&self, ready: &Probe) -> String;
}

type Source = Arc<dyn Exposition>;

/// Binds `host:port` and serves until the returned task is aborted.
pub(crate) async fn serve(
    host: IpAddr,
    port: u16,
    source: Source,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let bind_error = |e: std::io::Error| Error::Metrics {
        port,
        message: format!("cannot listen on {}: {e}", SocketAddr::new(host, port)),
    };
    let listener = TcpListener::bind((host, port)).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(source);
    Ok((addr, tokio::spawn(accept_loop(listener, router))))
}

async fn accept_loop(listener: TcpListener, router: Router) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: try again shortly, never spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            let _ = connection.await;
            drop(slot);
        });
    }
}

async fn metrics(State(source): State<Source>) -> Response {
    let text = source.metrics();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn probe_response(probe: &Probe, body: String) -> Response {
    let status = if probe.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn probe_json(probe: &Probe) -> String {
    serde_json::to_string(probe).unwrap_or_default()
}

async fn live(State(source): State<Source>) -> Response {
    let probe = source.liveness();
    probe_response(&probe, probe_json(&probe))
}

async fn ready(State(source): State<Source>) -> Response {
    let probe = source.readiness();
    probe_response(&probe, probe_json(&probe))
}

async fn health(State(source): State<Source>) -> Response {
    let probe = source.readiness();
    let body = source.health_body(&probe);
    probe_response(&probe, body)
}
