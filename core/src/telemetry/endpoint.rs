//! A minimal HTTP endpoint on loopback for Prometheus (`GET /metrics`) and health checks
//! (`GET /health`: 200 when every worker is polling, 503 otherwise). Two fixed routes do not
//! justify an HTTP server dependency.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::error::{Error, Result};

/// What the endpoint serves; implemented by the runtime.
pub(crate) trait Exposition: Send + Sync + 'static {
    fn metrics(&self) -> String;
    /// (healthy, JSON body)
    fn health(&self) -> (bool, String);
}

pub(crate) async fn serve(
    port: u16,
    source: Arc<dyn Exposition>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| Error::Metrics {
            port,
            message: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| Error::Metrics {
        port,
        message: e.to_string(),
    })?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let source = Arc::clone(&source);
            tokio::spawn(async move {
                let mut request = Vec::with_capacity(1024);
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
                let path = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
                let (status, content_type, body) = match path {
                    b"/metrics" => ("200 OK", "text/plain; version=0.0.4", source.metrics()),
                    b"/health" => {
                        let (healthy, body) = source.health();
                        let status = if healthy {
                            "200 OK"
                        } else {
                            "503 Service Unavailable"
                        };
                        (status, "application/json", body)
                    }
                    _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok((addr, task))
}
