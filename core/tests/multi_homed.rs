//! Three dev servers at once: every server is polled, each result goes back to the server its
//! task came from, and a server that is down, slow or flapping neither stops nor slows the
//! others.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, count, init_tracing};
use conductor_devserver::{ApiKey, Config};
use conductor_worker::cluster::CircuitState;
use conductor_worker::telemetry::Event;
use conductor_worker::{
    Credentials, Runtime, RuntimeOptions, ServerConfig, TaskDef, TaskOutcome, WorkerOptions,
};
use serde_json::{Map, json};

async fn three() -> Vec<Server> {
    vec![
        Server::start().await,
        Server::start().await,
        Server::start().await,
    ]
}

fn options(servers: &[Server]) -> RuntimeOptions {
    let mut options = servers[0].options();
    options.servers = servers
        .iter()
        .map(|s| ServerConfig::new(&s.api()).unwrap())
        .collect();
    options.breaker_reset = Duration::from_secs(2);
    options
}

fn worker(task_type: &str, concurrency: usize) -> WorkerOptions {
    WorkerOptions::new(task_type)
        .concurrency(concurrency)
        .poll_timeout(Duration::from_millis(300))
        .poll_interval(Duration::from_millis(50))
}

fn noop(runtime: &Runtime, options: WorkerOptions) {
    runtime
        .spawn_fn(options, |_t| async { TaskOutcome::Completed(Map::new()) })
        .unwrap();
}

fn record_circuits(runtime: &Runtime) -> Arc<Mutex<Vec<(usize, CircuitState)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    runtime.add_listener(move |e| {
        if let Event::CircuitStateChanged { server, state, .. } = e {
            s.lock().unwrap().push((server.0, *state));
        }
    });
    seen
}

/// Every server completed exactly its own tasks and saw no result for a task it did not issue.
async fn assert_routed(servers: &[Server], per_server: u64) {
    for (i, server) in servers.iter().enumerate() {
        let stats = server.stats().await;
        assert_eq!(
            count(&stats, "tasks", "completed"),
            per_server,
            "server {i}: {stats}"
        );
        assert_eq!(
            count(&stats, "updates", "unknown_task"),
            0,
            "server {i} got foreign results: {stats}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_concurrency_1_every_server_is_polled_and_served() {
    init_tracing();
    let servers = three().await;
    for s in &servers {
        s.enqueue("one_slot", 10, json!({})).await;
    }
    let runtime = Runtime::new(options(&servers)).unwrap();
    noop(&runtime, worker("one_slot", 1));
    runtime.start().await.unwrap();
    for s in &servers {
        s.wait_completed(10, Duration::from_secs(30)).await;
    }
    runtime.stop(Duration::from_secs(5)).await;
    assert_routed(&servers, 10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_server_opens_its_breaker_probes_after_the_reset_and_the_others_go_on() {
    init_tracing();
    let servers = three().await;
    servers[1].dev.set_listening(false).await.unwrap();
    for s in [&servers[0], &servers[2]] {
        s.enqueue("down", 100, json!({})).await;
    }
    let runtime = Runtime::new(options(&servers)).unwrap();
    let circuits = record_circuits(&runtime);
    noop(&runtime, worker("down", 4));
    runtime.start().await.unwrap();
    servers[0]
        .wait_completed(100, Duration::from_secs(20))
        .await;
    servers[2]
        .wait_completed(100, Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = circuits.lock().unwrap().clone();
    let on_1: Vec<CircuitState> = seen
        .iter()
        .filter(|(s, _)| *s == 1)
        .map(|(_, st)| *st)
        .collect();
    assert_eq!(on_1.first(), Some(&CircuitState::Open), "{seen:?}");
    assert!(
        on_1.contains(&CircuitState::HalfOpen),
        "no probe after the reset time: {seen:?}"
    );
    assert!(
        seen.iter().all(|(s, _)| *s == 1),
        "healthy servers changed state: {seen:?}"
    );
    // Back up: the next probe closes the breaker and its tasks get done.
    servers[1].dev.set_listening(true).await.unwrap();
    servers[1].enqueue("down", 20, json!({})).await;
    servers[1].wait_completed(20, Duration::from_secs(15)).await;
    assert_eq!(
        runtime.cluster().members()[1].breaker.state(),
        CircuitState::Closed
    );
    runtime.stop(Duration::from_secs(5)).await;
    assert_eq!(
        count(&servers[1].stats().await, "updates", "unknown_task"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answering_after_10_s_does_not_hold_up_the_others() {
    init_tracing();
    let servers = three().await;
    servers[2].faults(json!({"latency_ms": 10_000})).await;
    for s in &servers[..2] {
        s.enqueue("slow", 200, json!({})).await;
    }
    let runtime = Runtime::new(options(&servers)).unwrap();
    noop(&runtime, worker("slow", 2));
    let started = Instant::now();
    runtime.start().await.unwrap();
    servers[0]
        .wait_completed(200, Duration::from_secs(30))
        .await;
    servers[1]
        .wait_completed(200, Duration::from_secs(30))
        .await;
    let took = started.elapsed();
    // Each slow poll holds slots for at most its long-poll time (300 ms) + 500 ms, and the
    // slow server's breaker opens after 3 timed-out polls: the fast servers never wait 10 s.
    assert!(
        took < Duration::from_secs(10),
        "400 tasks took {took:?} beside a 10 s server"
    );
    runtime.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_server_recovers_to_closed() {
    init_tracing();
    let servers = three().await;
    let runtime = Runtime::new(options(&servers)).unwrap();
    let circuits = record_circuits(&runtime);
    noop(&runtime, worker("flap", 2));
    runtime.start().await.unwrap();
    for _ in 0..2 {
        servers[0].faults(json!({"fail_rate": {"poll": 1.0}})).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        servers[0].reset_faults().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    servers[0].enqueue("flap", 10, json!({})).await;
    servers[0].wait_completed(10, Duration::from_secs(15)).await;
    let seen: Vec<CircuitState> = circuits
        .lock()
        .unwrap()
        .iter()
        .filter(|(s, _)| *s == 0)
        .map(|(_, st)| *st)
        .collect();
    assert!(
        seen.iter().filter(|s| **s == CircuitState::Open).count() >= 2,
        "{seen:?}"
    );
    assert_eq!(seen.last(), Some(&CircuitState::Closed), "{seen:?}");
    assert_eq!(
        runtime.cluster().members()[0].breaker.state(),
        CircuitState::Closed
    );
    runtime.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_result_goes_to_its_own_server_with_its_own_credentials() {
    init_tracing();
    let key = |id: &str, secret: &str| ApiKey {
        key_id: id.into(),
        key_secret: secret.into(),
    };
    let servers = vec![
        Server::with_config(Config {
            auth: vec![key("key-a", "secret-a")],
            token_ttl_secs: 1,
            ..Default::default()
        })
        .await,
        Server::with_config(Config {
            auth: vec![key("key-b", "secret-b")],
            ..Default::default()
        })
        .await,
        Server::start().await,
    ];
    let mut options = options(&servers);
    options.servers[0].credentials = Some(Credentials::new("key-a", "secret-a"));
    options.servers[1].credentials = Some(Credentials::new("key-b", "secret-b"));
    options.servers[2].credentials = Some(Credentials::new("unused", "unused"));
    for s in &servers {
        s.enqueue("routed", 150, json!({})).await;
    }
    let runtime = Runtime::new(options).unwrap();
    runtime
        .spawn_fn(worker("routed", 8), |_t| async {
            // Long enough that the run outlives server 0's 1 s token several times.
            tokio::time::sleep(Duration::from_millis(50)).await;
            TaskOutcome::Completed(Map::new())
        })
        .unwrap();
    runtime.start().await.unwrap();
    for s in &servers {
        s.wait_completed(150, Duration::from_secs(30)).await;
    }
    runtime.stop(Duration::from_secs(5)).await;
    assert_routed(&servers, 150).await;
    let tokens = |stats: &serde_json::Value| count(stats, "requests", "token");
    assert!(
        tokens(&servers[0].stats().await) >= 2,
        "server 0's short-lived token was never refreshed"
    );
    assert_eq!(
        tokens(&servers[1].stats().await),
        1,
        "server 1's token was refreshed because of server 0"
    );
    // Server 2 has no auth: /api/token answered 404 once and it ran unauthenticated.
    assert_eq!(tokens(&servers[2].stats().await), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_definitions_are_registered_on_every_server() {
    init_tracing();
    let servers = three().await;
    let runtime = Runtime::new(options(&servers)).unwrap();
    runtime
        .add_worker(worker("registered", 1).register(TaskDef::new("registered")))
        .unwrap();
    runtime.start().await.unwrap();
    for s in &servers {
        let def: serde_json::Value = s
            .http
            .get(format!("{}/metadata/taskdefs/registered", s.api()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(def["responseTimeoutSeconds"], 60, "{def}");
    }
    runtime.stop(Duration::from_secs(2)).await;
}

#[test]
fn server_lists_from_the_environment_must_match() {
    use conductor_worker::config::MapEnv;
    let env = MapEnv::from([
        (
            "CONDUCTOR_SERVER_URL",
            "http://a:8080/api,http://b:8080/api,http://c:8080/api",
        ),
        ("CONDUCTOR_AUTH_KEY", "ka,kb"),
        ("CONDUCTOR_AUTH_SECRET", "sa,sb,sc"),
    ]);
    let err = RuntimeOptions::from_env(&env).unwrap_err().to_string();
    assert!(
        err.contains("CONDUCTOR_SERVER_URL, CONDUCTOR_AUTH_KEY and CONDUCTOR_AUTH_SECRET"),
        "{err}"
    );
    assert!(err.contains("3 url(s), 2 key(s), 3 secret(s)"), "{err}");
}
