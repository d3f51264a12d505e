//! The metrics and health endpoint as Kubernetes and Prometheus use it: reachable on the pod's
//! address, not held by idle or oversized requests, probes that say what they should, and the
//! queue depth gauge.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Server, init_tracing};
use conductor_worker::{Runtime, TaskOutcome, WorkerOptions};
use serde_json::{Map, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn worker(task_type: &str) -> WorkerOptions {
    WorkerOptions::new(task_type).poll_timeout(Duration::from_millis(100))
}

async fn runtime_with_endpoint(server: &Server, host: IpAddr) -> Runtime {
    let mut options = server.options();
    options.metrics_port = Some(0);
    options.metrics_host = host;
    options.queue_depth_interval = Duration::from_millis(200);
    Runtime::new(options).unwrap()
}

/// A worker that polls (its executors wait for tasks) and completes each task at once.
fn spawn_noop(runtime: &Runtime, task_type: &str) -> conductor_worker::Worker {
    runtime
        .spawn_fn(worker(task_type), |_t| async {
            TaskOutcome::Completed(Map::new())
        })
        .unwrap()
}

/// `GET path` on `addr`: status and body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// An IPv4 address of this machine that is not loopback.
fn non_loopback_address() -> Option<IpAddr> {
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `addrs` with a list freed below; entries are read only.
    unsafe {
        if libc::getifaddrs(&mut addrs) != 0 {
            return None;
        }
        let mut found = None;
        let mut cursor = addrs;
        while !cursor.is_null() {
            let addr = (*cursor).ifa_addr;
            if !addr.is_null() && i32::from((*addr).sa_family) == libc::AF_INET {
                let v4 = &*addr.cast::<libc::sockaddr_in>();
                let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
                if !ip.is_loopback() {
                    found = Some(IpAddr::V4(ip));
                    break;
                }
            }
            cursor = (*cursor).ifa_next;
        }
        libc::freeifaddrs(addrs);
        found
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_to_every_address_the_probes_answer_on_the_machines_own_address() {
    init_tracing();
    let server = Server::start().await;
    let runtime = runtime_with_endpoint(&server, IpAddr::V4(Ipv4Addr::UNSPECIFIED)).await;
    spawn_noop(&runtime, "reachable");
    runtime.start().await.unwrap();
    let port = runtime.metrics_addr().unwrap().port();
    let ip = non_loopback_address().expect("this machine has a non-loopback IPv4 address");
    let addr = SocketAddr::new(ip, port);
    tokio::time::sleep(Duration::from_millis(500)).await; // a poll answered: ready
    let (status, metrics) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("task_poll_total{taskType=\"reachable\"}"),
        "{metrics}"
    );
    assert_eq!(get(addr, "/health/live").await.0, 200);
    let (status, body) = get(addr, "/health/ready").await;
    assert_eq!(status, 200, "{body}");
    runtime.stop(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_and_a_huge_header_do_not_keep_a_probe_from_its_answer() {
    init_tracing();
    let server = Server::start().await;
    let runtime = runtime_with_endpoint(&server, IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    spawn_noop(&runtime, "idle_conns");
    runtime.start().await.unwrap();
    let addr = runtime.metrics_addr().unwrap();
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(TcpStream::connect(addr).await.unwrap()); // they send nothing
    }
    let t0 = Instant::now();
    let (status, _) = get(addr, "/health/live").await;
    let took = t0.elapsed();
    assert_eq!(status, 200);
    assert!(took < Duration::from_millis(100), "the probe took {took:?}");

    let mut huge = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let _ = huge.write_all(request.as_bytes()).await; // the server may close mid-write
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), huge.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "a 1 MB header was answered: {answer:.200}"
    );
    assert_eq!(
        get(addr, "/health/live").await.0,
        200,
        "the endpoint survives"
    );
    drop(idle);
    runtime.stop(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_or_cut_off_it_stays_alive_and_readiness_follows_the_server() {
    init_tracing();
    let server = Server::start().await;
    let runtime = runtime_with_endpoint(&server, IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    let paused = spawn_noop(&runtime, "probe_paused");
    spawn_noop(&runtime, "probe_polling");
    runtime.start().await.unwrap();
    let addr = runtime.metrics_addr().unwrap();
    paused.pause();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(get(addr, "/health/live").await.0, 200);
    assert_eq!(get(addr, "/health/ready").await.0, 200);

    server.dev.set_listening(false).await.unwrap();
    let t0 = Instant::now();
    let window = Duration::from_secs(30); // max(30 s, 3 × poll timeout)
    loop {
        assert_eq!(
            get(addr, "/health/live").await.0,
            200,
            "unreachable is alive"
        );
        let (status, body) = get(addr, "/health/ready").await;
        if status == 503 {
            assert!(body.contains("no server answered"), "{body}");
            break;
        }
        assert!(
            t0.elapsed() < window + Duration::from_secs(5),
            "still ready"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        t0.elapsed() >= window - Duration::from_secs(1),
        "unready too soon"
    );
    let (status, body) = get(addr, "/health").await;
    assert_eq!(status, 503);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["healthy"],
        false
    );

    server.dev.set_listening(true).await.unwrap();
    let t0 = Instant::now();
    while get(addr, "/health/ready").await.0 != 200 {
        assert!(t0.elapsed() < Duration::from_secs(10), "not ready again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    runtime.stop(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_workers_queue_depth_is_exported_within_one_interval() {
    init_tracing();
    let server = Server::start().await;
    let runtime = runtime_with_endpoint(&server, IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    runtime
        .add_worker(worker("deep").domain("blue").paused(true))
        .unwrap();
    runtime.start().await.unwrap();
    let addr = runtime.metrics_addr().unwrap();
    server.enqueue("deep", 7, json!({"domain": "blue"})).await;
    let expected = "task_queue_depth{domain=\"blue\",taskType=\"deep\"} 7";
    let t0 = Instant::now();
    loop {
        let (_, metrics) = get(addr, "/metrics").await;
        if metrics.contains(expected) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "no {expected} in\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    runtime.stop(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_finishes_running_tasks_polls_no_more_and_is_unready_but_alive() {
    init_tracing();
    let server = Server::start().await;
    let runtime = runtime_with_endpoint(&server, IpAddr::V4(Ipv4Addr::LOCALHOST)).await;
    runtime
        .spawn_fn(worker("quieted").concurrency(3), |_t| async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            TaskOutcome::Completed(Map::new())
        })
        .unwrap();
    runtime.start().await.unwrap();
    let addr = runtime.metrics_addr().unwrap();
    server.enqueue("quieted", 3, json!({})).await;
    let t0 = Instant::now();
    while runtime.health()[0].running < 3 {
        assert!(t0.elapsed() < Duration::from_secs(5), "3 tasks not running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    runtime.quiet();
    server.enqueue("quieted", 2, json!({})).await;
    server.wait_completed(3, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = server.stats().await;
    // Handed out by a poll or as update-v2's next task: neither may happen while quiet.
    assert_eq!(
        stats["tasks"]["deliveries"], 3,
        "taken after quiet: {stats}"
    );
    assert_eq!(stats["tasks"]["queued"], 2, "{stats}");
    assert_eq!(get(addr, "/health/live").await.0, 200);
    let (status, body) = get(addr, "/health/ready").await;
    assert_eq!(status, 503);
    assert!(body.contains("quiet"), "{body}");
    runtime.resume_all();
    server.wait_completed(5, Duration::from_secs(5)).await;
    runtime.stop(Duration::from_secs(2)).await;
}
