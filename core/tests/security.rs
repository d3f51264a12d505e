//! Secrets and tokens never leave the process except in the one request that needs them: every
//! log record down to TRACE (the core's and its HTTP stack's), every error, every event and every
//! `Debug` rendering is captured and searched. Credentials over plain `http://` to a host that
//! is not loopback log a warning.
//!
//! One subscriber per process: the tests of this file share the capture buffer, which is fine,
//! since nothing they log may hold a secret.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{Server, count};
use conductor_devserver::Config;
use conductor_worker::config::{MapEnv, ServerConfig};
use conductor_worker::{Credentials, Runtime, RuntimeOptions, TaskOutcome, WorkerOptions};
use serde_json::json;

const KEY_ID: &str = "app-key-7f3a91c2";
const SECRET: &str = "s3cr3t-Xq9vLp2-never-print-me";
const WRONG_SECRET: &str = "wr0ng-s3cr3t-Zk81-also-hidden";
/// Every token the dev server issues starts with this.
const TOKEN_PREFIX: &str = "devtoken.";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs a global TRACE subscriber (everything: the core, reqwest, hyper, rustls) writing
/// into one buffer.
fn capture() -> Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let c = Capture::default();
            let writer = c.clone();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .init();
            c
        })
        .clone()
}

fn captured(c: &Capture) -> String {
    String::from_utf8_lossy(&c.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

fn assert_clean(what: &str, text: &str) {
    for needle in [SECRET, WRONG_SECRET, TOKEN_PREFIX] {
        if let Some(at) = text.find(needle) {
            let from = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let to = text[at..].find('\n').map_or(text.len(), |i| at + i);
            panic!("{what} holds {needle:?}: {}", &text[from..to]);
        }
    }
}

fn options(server: &Server, secret: &str) -> RuntimeOptions {
    let mut options = server.options();
    options.servers = vec![
        ServerConfig::new(&server.api())
            .unwrap()
            .with_credentials(Credentials::new(KEY_ID, secret)),
    ];
    options.auth_backoff =
        conductor_worker::backoff::Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_tokens_never_appear_in_logs_errors_events_or_debug_output() {
    let logs = capture();
    let server = Server::with_config(Config {
        auth: vec![format!("{KEY_ID}:{SECRET}").parse().unwrap()],
        // Tokens expire every second: refreshes and EXPIRED_TOKEN answers are on the path.
        token_ttl_secs: 1,
        ..Config::default()
    })
    .await;
    server.enqueue("sec", 300, json!({})).await;

    let runtime = Runtime::new(options(&server, SECRET)).unwrap();
    let events = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&events);
    runtime.add_listener(move |e| {
        let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
        s.push_str(&format!("{e:?}\n"));
    });
    runtime
        .spawn_fn(
            WorkerOptions::new("sec")
                .concurrency(4)
                .poll_timeout(Duration::from_millis(200)),
            |task| async move {
                // Slow enough that the run outlives several token lifetimes.
                if task.input_data.get("n").is_some() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                TaskOutcome::Completed(serde_json::Map::new())
            },
        )
        .unwrap();
    runtime.start().await.unwrap();
    server.wait_completed(150, Duration::from_secs(60)).await;
    server.expire_tokens().await;
    let stats = server.wait_completed(300, Duration::from_secs(60)).await;
    assert!(
        count(&stats, "requests", "token") >= 2,
        "the token was never refreshed, so the refresh path was not exercised: {stats}"
    );

    // A second runtime with a wrong secret: authentication errors, logged and reported.
    let wrong = Runtime::new(options(&server, WRONG_SECRET)).unwrap();
    let worker = wrong
        .spawn_fn(WorkerOptions::new("sec-wrong"), |_t| async {
            TaskOutcome::Completed(serde_json::Map::new())
        })
        .unwrap();
    wrong.start().await.unwrap();
    let client = &wrong.servers()[0];
    let direct = client
        .batch_poll("sec-wrong", None, "w", 1, Duration::ZERO)
        .await
        .expect_err("a wrong secret must not authenticate");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let health = format!("{:?} {:?}", wrong.health(), worker.health());
    wrong.stop(Duration::from_secs(2)).await;

    let debug_output = format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{}\n{direct}\n{direct:?}\n{health}\n{}",
        options(&server, SECRET),
        runtime.servers(),
        runtime.health(),
        Credentials::new(KEY_ID, SECRET),
        runtime.metrics_text(),
        wrong.metrics_text(),
    );
    runtime.stop(Duration::from_secs(5)).await;

    let logs = captured(&logs);
    // The capture really holds the run, at every level (else this test proves nothing).
    for needle in ["TRACE", "DEBUG", "authentication", &server.api()] {
        assert!(logs.contains(needle), "the capture has no {needle:?}");
    }
    assert!(
        direct.to_string().contains("401") || direct.to_string().contains("auth"),
        "{direct}"
    );
    assert_clean("the logs", &logs);
    assert_clean(
        "the events",
        &events.lock().unwrap_or_else(|e| e.into_inner()),
    );
    assert_clean("Debug/Display output", &debug_output);
    // The key id is shown shortened at most.
    assert!(!debug_output.contains(KEY_ID), "{debug_output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_over_plain_http_to_a_remote_host_log_a_warning() {
    let logs = capture();
    let creds = Credentials::new("k", "plain-http-secret-91");
    let build = |url: &str, with_creds: bool| {
        let mut server = ServerConfig::new(url).unwrap();
        if with_creds {
            server = server.with_credentials(creds.clone());
        }
        // Building the runtime builds the clients; nothing is sent.
        Runtime::new(RuntimeOptions::new(vec![server])).unwrap()
    };
    let _remote = build("http://10.11.12.13:8080/api", true);
    let _remote_no_creds = build("http://10.11.12.14:8080/api", false);
    let _loopback = build("http://127.0.0.1:8080/api", true);
    let _localhost = build("http://localhost:8081/api", true);
    let _tls = build("https://10.11.12.15/api", true);
    let text = captured(&logs);
    let warned = |host: &str| {
        text.lines()
            .any(|l| l.contains("WARN") && l.contains(host) && l.contains("plain http"))
    };
    assert!(
        warned("10.11.12.13"),
        "no warning for credentials over http:// to 10.11.12.13"
    );
    for quiet in [
        "10.11.12.14",
        "127.0.0.1:8080",
        "localhost:8081",
        "10.11.12.15",
    ] {
        assert!(!warned(quiet), "a needless warning for {quiet}");
    }
    assert!(!text.contains("plain-http-secret-91"));
}

#[test]
fn an_env_configured_secret_is_redacted_everywhere_it_is_shown() {
    let env = MapEnv::from([
        (
            "CONDUCTOR_SERVER_URL",
            "https://a.example/api,https://b.example/api",
        ),
        ("CONDUCTOR_AUTH_KEY", "key-a,key-b"),
        ("CONDUCTOR_AUTH_SECRET", "env-s3cret-aa,env-s3cret-bb"),
    ]);
    let options = RuntimeOptions::from_env(&env).unwrap();
    assert_eq!(
        options.servers[1]
            .credentials
            .as_ref()
            .map(|c| c.key_secret.expose()),
        Some("env-s3cret-bb")
    );
    let shown = format!("{options:?} {:#?}", options.servers);
    assert!(!shown.contains("env-s3cret"), "{shown}");
    assert!(shown.contains("redacted"), "{shown}");
}
