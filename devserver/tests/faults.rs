//! Auth, fault injection, pause, listening on and off, and the command line.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{start, start_with};
use conductor_devserver::{Config, Faults};
use serde_json::{Value, json};

fn with_auth() -> Config {
    Config {
        auth: vec!["key:secret".parse().unwrap()],
        ..Config::default()
    }
}

#[tokio::test]
async fn tokens_are_issued_checked_and_expired() {
    let env = start_with(with_auth()).await;
    let health = format!("{}/health", env.api);
    let r = env.client.get(&health).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "INVALID_TOKEN");
    let r = env
        .client
        .get(&health)
        .header("X-Authorization", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "INVALID_TOKEN");
    let token_url = format!("{}/token", env.api);
    let r = env
        .client
        .post(&token_url)
        .json(&json!({"keyId": "key", "keySecret": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let token = env.token("key", "secret").await;
    let authed = || {
        env.client
            .get(&health)
            .header("X-Authorization", &token)
            .send()
    };
    assert_eq!(authed().await.unwrap().status(), 200);
    // Admin endpoints never need a token.
    let r = env
        .client
        .post(format!("{}/admin/tokens/expire", env.root))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = authed().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "EXPIRED_TOKEN");
    // A short lifetime set at run time.
    let r = env
        .client
        .put(format!("{}/admin/auth", env.root))
        .json(&json!({"token_ttl_secs": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t2 = env.token("key", "secret").await;
    let with_t2 = || {
        env.client
            .get(&health)
            .header("X-Authorization", &t2)
            .send()
    };
    assert_eq!(with_t2().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = with_t2().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "EXPIRED_TOKEN");
}

#[tokio::test]
async fn token_endpoint_is_missing_when_auth_is_off() {
    let env = start().await;
    let r = env
        .client
        .post(format!("{}/token", env.api))
        .json(&json!({"keyId": "k", "keySecret": "s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // No token needed anywhere.
    assert_eq!(env.batch_poll("any", 1, 0).await.len(), 0);
}

#[tokio::test]
async fn fail_rate_answers_a_retryable_500_for_its_group_only() {
    let env = start().await;
    env.enqueue(json!({"taskType": "f"})).await;
    let mut f = Faults::default();
    f.fail_rate.insert("update".into(), 1.0);
    env.server.set_faults(f.clone());
    assert_eq!(env.server.faults(), f);
    let t = env.poll_one("f").await;
    let r = env.update(&t, "COMPLETED", json!({})).await;
    assert_eq!(r.status(), 500);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["retryable"], true);
    assert_eq!(e["status"], 500);
    assert_eq!(env.task(&t["taskId"]).await["status"], "IN_PROGRESS");
    assert_eq!(env.server.stats().faults_injected.fail, 1);
    env.server.set_faults(Faults::default());
    assert_eq!(env.update(&t, "COMPLETED", json!({})).await.status(), 200);
}

#[tokio::test]
async fn drop_rate_closes_the_connection_without_an_answer() {
    let env = start().await;
    let r = env
        .client
        .put(format!("{}/admin/faults", env.root))
        .json(&json!({"drop_rate": {"poll": 1.0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let err = env
        .client
        .get(format!("{}/tasks/poll/batch/x?timeout=0", env.api))
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_timeout(), "{err}");
    assert!(
        err.is_request() || err.is_connect() || err.to_string().contains("connection"),
        "{err:?}"
    );
    assert_eq!(env.server.stats().faults_injected.drop, 1);
    // Other groups are untouched.
    assert_eq!(
        env.get_json(&format!("{}/metadata/taskdefs", env.api))
            .await,
        json!([])
    );
}

#[tokio::test]
async fn malformed_rate_sends_a_200_with_broken_json() {
    let env = start().await;
    env.enqueue(json!({"taskType": "m"})).await;
    let mut f = Faults::default();
    f.malformed_rate.insert("all".into(), 1.0);
    env.server.set_faults(f);
    let r = env
        .client
        .get(format!("{}/tasks/poll/batch/m?timeout=0", env.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    assert!(!body.is_empty());
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    assert_eq!(env.server.stats().faults_injected.malformed, 1);
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let env = start().await;
    env.server.set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let t0 = Instant::now();
    env.get_json(&format!("{}/health", env.root)).await;
    assert!(t0.elapsed() >= Duration::from_millis(290));
    // Admin endpoints are exempt.
    let t0 = Instant::now();
    env.get_json(&format!("{}/admin/faults", env.root)).await;
    assert!(t0.elapsed() < Duration::from_millis(250));
    assert_eq!(env.server.stats().faults_injected.latency, 1);
}

#[tokio::test]
async fn update_v2_can_be_made_to_look_missing() {
    let env = start().await;
    env.enqueue(json!({"taskType": "old"})).await;
    let t = env.poll_one("old").await;
    let url = format!("{}/tasks/update-v2", env.api);
    let body = json!({"taskId": t["taskId"], "workflowInstanceId": t["workflowInstanceId"], "status": "COMPLETED"});
    for status in [404u16, 405] {
        let r = env
            .client
            .put(format!("{}/admin/faults", env.root))
            .json(&json!({"update_v2": false, "update_v2_missing_status": status}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = env.client.post(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), status);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["status"], status);
        // As conductor-oss 3.32 answers a route it does not have: a Spring message, never
        // "No such task/workflow" (which would mean the task is gone).
        let message = e["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("No static resource") || message.contains("not supported"),
            "{e}"
        );
    }
    assert_eq!(env.task(&t["taskId"]).await["status"], "IN_PROGRESS");
    assert_eq!(env.update(&t, "COMPLETED", json!({})).await.status(), 200);
}

#[tokio::test]
async fn admin_faults_merge_validate_and_reset() {
    let env = start().await;
    let url = format!("{}/admin/faults", env.root);
    let f = env.get_json(&url).await;
    assert_eq!(
        f,
        json!({"latency_ms": 0, "fail_rate": {}, "drop_rate": {}, "malformed_rate": {},
               "reset_after_rate": {}, "paused": false, "update_v2": true, "update_v2_missing_status": 404,
               "batch_poll_waits_for_count": false})
    );
    for patch in [
        json!({"fail_rate": {"update": 0.5}}),
        json!({"fail_rate": {"poll": 0.25}}),
    ] {
        let r = env.client.put(&url).json(&patch).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let f = env.get_json(&url).await;
    assert_eq!(f["fail_rate"], json!({"update": 0.5, "poll": 0.25}));
    for bad in [
        json!({"fail_rate": {"update": 2.0}}),
        json!({"drop_rate": {"nope": 0.1}}),
        json!({"latency_ms": "x"}),
    ] {
        let r = env.client.put(&url).json(&bad).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    let r = env
        .client
        .post(format!("{url}/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(env.server.faults(), Faults::default());
}

#[tokio::test]
async fn paused_server_accepts_but_answers_only_after_resume() {
    let env = start().await;
    let r = env
        .client
        .post(format!("{}/admin/pause", env.root))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(env.server.faults().paused);
    let err = env
        .client
        .get(format!("{}/health", env.root))
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let client = env.client.clone();
    let url = format!("{}/health", env.root);
    let t0 = Instant::now();
    let pending = tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished());
    env.server.resume();
    let status = pending.await.unwrap().unwrap();
    assert_eq!(status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(290));
    // The library calls do the same.
    env.server.pause();
    assert!(
        env.client
            .get(format!("{}/health", env.root))
            .timeout(Duration::from_millis(200))
            .send()
            .await
            .is_err()
    );
    let r = env
        .client
        .post(format!("{}/admin/resume", env.root))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    env.get_json(&format!("{}/health", env.root)).await;
}

#[tokio::test]
async fn set_listening_closes_the_port_and_drops_connections_but_keeps_state() {
    let env = start().await;
    env.enqueue(json!({"taskType": "keep", "count": 2})).await;
    let client = env.client.clone();
    let url = format!("{}/tasks/poll/batch/idle?timeout=4000", env.api);
    let hanging = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.server.set_listening(false).await.unwrap();
    let dropped = tokio::time::timeout(Duration::from_secs(2), hanging)
        .await
        .expect("the open long poll should be cut")
        .unwrap();
    assert!(dropped.is_err());
    let err = common::client()
        .get(format!("{}/health", env.root))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    env.server.set_listening(true).await.unwrap();
    // Idempotent.
    env.server.set_listening(true).await.unwrap();
    assert_eq!(
        common::client()
            .get(format!("{}/health", env.root))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(env.queue_size("keep").await, 2);
    env.server.shutdown().await;
    assert!(
        common::client()
            .get(format!("{}/health", env.root))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn faults_from_the_config_apply_from_the_start() {
    let mut config = Config::default();
    config.faults.fail_rate.insert("all".into(), 1.0);
    let env = start_with(config).await;
    let r = env
        .client
        .get(format!("{}/health", env.root))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let mut bad = Config::default();
    bad.faults.drop_rate.insert("nope".into(), 0.5);
    assert!(conductor_devserver::DevServer::start(bad).await.is_err());
}

#[test]
fn cli_rejects_bad_flags_with_exit_code_2() {
    let bin = env!("CARGO_BIN_EXE_conductor-devserver");
    for (args, needle) in [
        (vec!["--fail-rate", "update=1.5"], "--fail-rate"),
        (vec!["--drop-rate", "nothing"], "GROUP=RATE"),
        (vec!["--port", "notaport"], "--port"),
        (vec!["--auth", "nosecret"], "--auth"),
        (vec!["--bogus"], "--bogus"),
    ] {
        let out = Command::new(bin).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn cli_prints_one_line_serves_and_stops_on_sigterm() {
    let bin = env!("CARGO_BIN_EXE_conductor-devserver");
    let mut child = Command::new(bin)
        .args(["--port", "0", "--latency-ms", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("conductor-devserver listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let faults: Value = rt.block_on(async {
        let c = common::client();
        assert_eq!(
            c.get(format!("{url}/health"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        c.get(format!("{url}/admin/faults"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(faults["latency_ms"], 1);
    // SIGTERM by this child's own pid.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            assert!(s.success(), "{s:?}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn put_faults(env: &common::Env, body: Value) {
    let r = env
        .client
        .put(format!("{}/admin/faults", env.root))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn admin_down_closes_the_port_for_n_seconds_and_keeps_the_queues() {
    let env = start().await;
    env.enqueue(json!({"taskType": "down", "count": 3})).await;
    let t = env.poll_one("down").await;
    let r = env
        .client
        .post(format!("{}/admin/down", env.root))
        .json(&json!({"seconds": 1.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["down_for_seconds"], 1.5);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let err = common::client()
        .get(format!("{}/health", env.root))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "the port should be closed: {err:?}");
    // Back on the same port within the time asked for (plus the bind), same state.
    let back = Instant::now();
    loop {
        if common::client()
            .get(format!("{}/health", env.root))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(5), "never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        back.elapsed() > Duration::from_millis(700),
        "came back too early"
    );
    assert_eq!(env.queue_size("down").await, 2);
    assert_eq!(env.task(&t["taskId"]).await["status"], "IN_PROGRESS");
    assert_eq!(env.update(&t, "COMPLETED", json!({})).await.status(), 200);
    for bad in [json!({"seconds": 0}), json!({"seconds": -1}), json!({})] {
        let r = env
            .client
            .post(format!("{}/admin/down", env.root))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn admin_down_does_not_reopen_a_server_that_was_shut_down() {
    let env = start().await;
    let r = env
        .client
        .post(format!("{}/admin/down", env.root))
        .json(&json!({"seconds": 0.3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let root = env.root.clone();
    env.server.shutdown().await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        common::client()
            .get(format!("{root}/health"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn reset_after_applies_the_update_then_drops_the_connection() {
    let env = start().await;
    env.enqueue(json!({"taskType": "ra", "count": 2})).await;
    put_faults(&env, json!({"reset_after_rate": {"update": 1.0}})).await;
    let t = env.poll_one("ra").await;
    // v1 update: applied, no answer.
    let body = json!({"taskId": t["taskId"], "workflowInstanceId": t["workflowInstanceId"],
                      "status": "COMPLETED"});
    let err = env
        .client
        .post(format!("{}/tasks", env.api))
        .json(&body)
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    assert_eq!(env.task(&t["taskId"]).await["status"], "COMPLETED");
    let s = env.server.stats();
    assert_eq!(s.faults_injected.reset_after, 1);
    assert_eq!(s.tasks.completed, 1);
    put_faults(&env, json!({"reset_after_rate": {"update": 0.0}})).await;
    // The worker could not know: its resend is not a duplicate...
    assert_eq!(env.update(&t, "COMPLETED", json!({})).await.status(), 200);
    let s = env.server.stats();
    assert_eq!(
        (s.updates.terminal_task, s.updates.duplicate_results),
        (1, 0)
    );
    // ...but once it has been answered, another one is.
    assert_eq!(env.update(&t, "COMPLETED", json!({})).await.status(), 200);
    assert_eq!(env.server.stats().updates.duplicate_results, 1);

    // update-v2: the result is applied and the next task handed out, but never seen.
    put_faults(&env, json!({"reset_after_rate": {"update": 1.0}})).await;
    env.enqueue(json!({"taskType": "ra"})).await;
    let t2 = env.poll_one("ra").await;
    let body = json!({"taskId": t2["taskId"], "workflowInstanceId": t2["workflowInstanceId"],
                      "status": "COMPLETED"});
    assert!(
        env.client
            .post(format!("{}/tasks/update-v2", env.api))
            .json(&body)
            .send()
            .await
            .is_err()
    );
    assert_eq!(env.task(&t2["taskId"]).await["status"], "COMPLETED");
    let s = env.server.stats();
    assert_eq!(
        s.tasks.in_progress, 1,
        "the next task went out with the lost answer"
    );
    assert_eq!(s.faults_injected.reset_after, 2);
}

#[tokio::test]
async fn drop_before_the_update_leaves_the_task_untouched() {
    let env = start().await;
    env.enqueue(json!({"taskType": "db"})).await;
    put_faults(&env, json!({"drop_rate": {"update": 1.0}})).await;
    let t = env.poll_one("db").await;
    let body = json!({"taskId": t["taskId"], "workflowInstanceId": t["workflowInstanceId"],
                      "status": "COMPLETED"});
    assert!(
        env.client
            .post(format!("{}/tasks", env.api))
            .json(&body)
            .send()
            .await
            .is_err()
    );
    assert_eq!(env.task(&t["taskId"]).await["status"], "IN_PROGRESS");
    assert_eq!(env.server.stats().tasks.completed, 0);
}

#[tokio::test]
async fn deliveries_and_redeliveries_are_counted() {
    let env = start().await;
    env.enqueue(json!({"taskType": "rd", "count": 2})).await;
    let a = env.poll_one("rd").await;
    let b = env.poll_one("rd").await;
    assert_eq!(
        env.update(&a, "IN_PROGRESS", json!({"callbackAfterSeconds": 0}))
            .await
            .status(),
        200
    );
    let again = env.poll_one("rd").await;
    assert_eq!(again["taskId"], a["taskId"]);
    assert_eq!(again["pollCount"], 2);
    env.update(&again, "COMPLETED", json!({})).await;
    env.update(&b, "COMPLETED", json!({})).await;
    let s = env.server.stats();
    assert_eq!((s.tasks.deliveries, s.tasks.redelivered), (3, 1));
    assert_eq!(s.updates.duplicate_results, 0);
    env.server.reset_stats();
    assert_eq!(env.server.stats().tasks.deliveries, 0);
}
