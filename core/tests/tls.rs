//! `https://` servers, including one whose certificate comes from a private CA that only a
//! custom CA bundle (`RuntimeOptions::ca_bundle`, `CONDUCTOR_CA_BUNDLE`) makes trusted. The TLS
//! listener is a test-local terminator (tokio-rustls) in front of an in-process dev server; the
//! CA and the certificate are generated for each run (rcgen).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Server, count};
use conductor_worker::config::{MapEnv, ServerConfig};
use conductor_worker::{Error, Runtime, RuntimeOptions, TaskOutcome, WorkerOptions};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

struct Tls {
    /// `https://localhost:PORT/api`
    url: String,
    /// The private CA's certificate, PEM, in a file.
    ca_file: std::path::PathBuf,
}

/// A private CA, a certificate for localhost and 127.0.0.1 signed by it, and a TLS listener
/// that forwards each connection to `backend`.
async fn tls_in_front_of(backend: std::net::SocketAddr, name: &str) -> Tls {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let dir = common::temp_dir(name);
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that rejects the certificate ends the handshake: nothing to forward.
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    Tls {
        url: format!("https://localhost:{port}/api"),
        ca_file,
    }
}

fn options_for(url: &str, server: &Server) -> RuntimeOptions {
    let mut options = server.options();
    options.servers = vec![ServerConfig::new(url).unwrap()];
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_custom_ca_bundle_completes_every_task() {
    common::init_tracing();
    let server = Server::start().await;
    let tls = tls_in_front_of(server.dev.addr(), "tls-ok").await;
    server.enqueue("tls", 200, json!({})).await;

    // From the environment, exactly as a user would configure it.
    let env = MapEnv::from([
        ("CONDUCTOR_SERVER_URL", tls.url.as_str()),
        ("CONDUCTOR_CA_BUNDLE", tls.ca_file.to_str().unwrap()),
        ("CONDUCTOR_WORKER_JOURNAL", "off"),
    ]);
    let mut options = RuntimeOptions::from_env(&env).unwrap();
    options.update_backoff = server.options().update_backoff;
    assert_eq!(options.ca_bundle.as_deref(), Some(tls.ca_file.as_path()));
    let runtime = Runtime::new(options).unwrap();
    runtime
        .spawn_fn(
            WorkerOptions::new("tls")
                .concurrency(8)
                .poll_timeout(Duration::from_millis(200)),
            |_t| async { TaskOutcome::Completed(serde_json::Map::new()) },
        )
        .unwrap();
    runtime.start().await.unwrap();
    let stats = server.wait_completed(200, Duration::from_secs(60)).await;
    runtime.stop(Duration::from_secs(5)).await;
    assert_eq!(count(&stats, "updates", "unknown_task"), 0);
    assert_eq!(count(&server.stats().await, "tasks", "completed"), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_without_the_ca_is_refused_with_a_certificate_error() {
    common::init_tracing();
    let server = Server::start().await;
    let tls = tls_in_front_of(server.dev.addr(), "tls-refused").await;
    server.enqueue("tls-no", 5, json!({})).await;

    let runtime = Runtime::new(options_for(&tls.url, &server)).unwrap();
    let err = runtime.servers()[0]
        .batch_poll("tls-no", None, "w", 1, Duration::ZERO)
        .await
        .expect_err("a certificate from an unknown CA must be refused");
    let text = err.to_string();
    assert!(matches!(err, Error::Transport { .. }), "{text}");
    assert!(
        text.to_lowercase().contains("certificate") || text.contains("UnknownIssuer"),
        "the error should say what is wrong: {text}"
    );
    // A worker keeps retrying but gets nothing: the tasks stay queued on the server.
    runtime
        .spawn_fn(WorkerOptions::new("tls-no"), |_t| async {
            TaskOutcome::Completed(serde_json::Map::new())
        })
        .unwrap();
    runtime.start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    runtime.stop(Duration::from_secs(2)).await;
    let stats = server.stats().await;
    assert_eq!(count(&stats, "tasks", "completed"), 0);
    assert_eq!(count(&stats, "tasks", "queued"), 5);

    // The same URL with the bundle set in code works.
    let mut options = options_for(&tls.url, &server);
    options.ca_bundle = Some(tls.ca_file.clone());
    let runtime = Runtime::new(options).unwrap();
    let polled = runtime.servers()[0]
        .batch_poll("tls-no", None, "w", 5, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(polled.tasks.len(), 5);
}
