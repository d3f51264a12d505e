//! The worker API over HTTP: polling, updates, retries, timeouts, logs, definitions, stats.

mod common;

use std::time::{Duration, Instant};

use common::start;
use serde_json::{Value, json};

#[tokio::test]
async fn long_poll_returns_early_when_a_task_arrives() {
    let env = start().await;
    let api = env.api.clone();
    let client = env.client.clone();
    let t0 = Instant::now();
    let poll = tokio::spawn(async move {
        let r = client
            .get(format!("{api}/tasks/poll/batch/lp?count=5&timeout=4000"))
            .send()
            .await
            .unwrap();
        (
            r.status(),
            r.json::<Vec<Value>>().await.unwrap(),
            t0.elapsed(),
        )
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.enqueue(json!({"taskType": "lp", "count": 1})).await;
    let (status, tasks, took) = poll.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(tasks.len(), 1);
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(
        took < Duration::from_millis(1500),
        "long poll did not return early: {took:?}"
    );
}

#[tokio::test]
async fn long_poll_waits_the_timeout_and_answers_an_empty_list() {
    let env = start().await;
    let t0 = Instant::now();
    let tasks = env.batch_poll("empty", 3, 500).await;
    let took = t0.elapsed();
    assert!(tasks.is_empty());
    assert!(took >= Duration::from_millis(480), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

#[tokio::test]
async fn poll_parameters_are_validated() {
    let env = start().await;
    let r = env
        .client
        .get(format!("{}/tasks/poll/batch/t?timeout=5001", env.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], 400);
    assert_eq!(body["retryable"], false);
    assert!(
        body["message"].as_str().unwrap().contains("5 seconds"),
        "{body}"
    );
    let r = env
        .client
        .get(format!("{}/tasks/poll/batch/t?count=abc", env.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("count"));
    // The limit itself is allowed (a queued task makes it return at once).
    env.enqueue(json!({"taskType": "t"})).await;
    assert_eq!(env.batch_poll("t", 1, 5000).await.len(), 1);
}

#[tokio::test]
async fn single_poll_answers_204_when_empty_and_marks_the_task_in_progress() {
    let env = start().await;
    let url = format!("{}/tasks/poll/sp?workerid=me", env.api);
    let r = env.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 204);
    env.enqueue(json!({"taskType": "sp", "input": {"k": 1}}))
        .await;
    let r = env.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["status"], "IN_PROGRESS");
    assert_eq!(t["pollCount"], 1);
    assert_eq!(t["workerId"], "me");
    assert_eq!(t["callbackAfterSeconds"], 0);
    assert!(t["startTime"].as_i64().unwrap() > 0);
    assert_eq!(t["inputData"], json!({"k": 1}));
    for field in [
        "taskId",
        "taskType",
        "taskDefName",
        "referenceTaskName",
        "workflowInstanceId",
        "workflowType",
        "retryCount",
        "seq",
        "responseTimeoutSeconds",
        "scheduledTime",
        "updateTime",
        "workflowTask",
        "outputData",
    ] {
        assert!(t.get(field).is_some(), "missing {field} in {t}");
    }
    // Batch poll never hands out a task twice.
    assert!(env.batch_poll("sp", 5, 0).await.is_empty());
}

#[tokio::test]
async fn update_of_an_unknown_task_is_a_404_error_response() {
    let env = start().await;
    let r = env
        .update(
            &json!({"taskId": "nope", "workflowInstanceId": "wf"}),
            "COMPLETED",
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], 404);
    // The real server looks the workflow up first.
    assert_eq!(body["message"], "No such workflow found by id: wf");
    assert_eq!(body["retryable"], false);
    assert!(body["instance"].is_string());
    assert_eq!(env.server.stats().updates.unknown_task, 1);
}

#[tokio::test]
async fn bad_update_bodies_are_400() {
    let env = start().await;
    let url = format!("{}/tasks", env.api);
    for body in [
        r#"{"workflowInstanceId":"w","status":"COMPLETED"}"#,
        r#"{"taskId":"t","status":"COMPLETED"}"#,
        r#"{"taskId": "#,
        r#"{"taskId":"t","workflowInstanceId":"w","status":"BOGUS"}"#,
    ] {
        let r = env
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().await.unwrap();
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn update_returns_the_task_id_and_completes_the_task() {
    let env = start().await;
    env.enqueue(json!({"taskType": "u"})).await;
    let t = env.poll_one("u").await;
    let r = env
        .update(&t, "COMPLETED", json!({"outputData": {"r": 7}}))
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(r.text().await.unwrap(), t["taskId"].as_str().unwrap());
    let got = env.task(&t["taskId"]).await;
    assert_eq!(got["status"], "COMPLETED");
    assert_eq!(got["outputData"], json!({"r": 7}));
    assert!(got["endTime"].as_i64().unwrap() > 0);
    let wf = env
        .workflow(t["workflowInstanceId"].as_str().unwrap())
        .await;
    assert_eq!(wf["status"], "COMPLETED");
    assert_eq!(wf["output"], json!({"r": 7}));
}

#[tokio::test]
async fn an_update_of_a_terminal_task_is_ignored() {
    let env = start().await;
    env.enqueue(json!({"taskType": "term"})).await;
    let t = env.poll_one("term").await;
    env.update(&t, "COMPLETED", json!({"outputData": {"a": 1}}))
        .await;
    let r = env
        .update(&t, "FAILED", json!({"outputData": {"a": 2}}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), t["taskId"].as_str().unwrap());
    let got = env.task(&t["taskId"]).await;
    assert_eq!(got["status"], "COMPLETED");
    assert_eq!(got["outputData"], json!({"a": 1}));
    let s = env.server.stats();
    assert_eq!(s.updates.terminal_task, 1);
    assert_eq!(s.tasks.failed, 0);
    let h = env
        .get_json(&format!(
            "{}/admin/tasks/{}/history",
            env.root,
            t["taskId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(h["polls"], 1);
    assert_eq!(h["updates"][0]["status"], "COMPLETED");
    assert_eq!(h["updates"][1]["status"], "FAILED");
    assert_eq!(h["updates"][1]["ignored"], true);
    assert!(h["updates"][0]["at_ms"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn extend_lease_only_moves_the_update_time() {
    let env = start().await;
    env.enqueue(json!({"taskType": "lease", "responseTimeoutSeconds": 1}))
        .await;
    let t = env.poll_one("lease").await;
    let before = env.task(&t["taskId"]).await["updateTime"].as_i64().unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = env
            .update(
                &t,
                "COMPLETED",
                json!({"extendLease": true, "outputData": {"x": 1}}),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    // 1.5 s after the poll, past the 1 s response timeout: alive thanks to the heartbeats.
    let got = env.task(&t["taskId"]).await;
    assert_eq!(got["status"], "IN_PROGRESS");
    assert_eq!(got["outputData"], json!({}));
    assert!(got["updateTime"].as_i64().unwrap() >= before + 1400);
    assert_eq!(env.server.stats().updates.lease_extensions, 3);
    // Without heartbeats it times out.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(env.task(&t["taskId"]).await["status"], "TIMED_OUT");
}

#[tokio::test]
async fn in_progress_with_a_callback_requeues_after_the_delay() {
    let env = start().await;
    env.enqueue(json!({"taskType": "cb"})).await;
    let t = env.poll_one("cb").await;
    let t0 = Instant::now();
    let r = env
        .update(&t, "IN_PROGRESS", json!({"callbackAfterSeconds": 1}))
        .await;
    assert_eq!(r.status(), 200);
    let got = env.task(&t["taskId"]).await;
    assert_eq!(got["status"], "SCHEDULED");
    assert_eq!(got["callbackAfterSeconds"], 1);
    assert!(env.batch_poll("cb", 1, 200).await.is_empty());
    let again = env.batch_poll("cb", 1, 3000).await;
    let took = t0.elapsed();
    assert_eq!(again.len(), 1);
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert!(took < Duration::from_millis(2000), "{took:?}");
    assert_eq!(again[0]["taskId"], t["taskId"]);
    assert_eq!(again[0]["pollCount"], 2);
    assert_eq!(again[0]["callbackAfterSeconds"], 0);
    assert_eq!(env.server.stats().updates.in_progress, 1);
}

#[tokio::test]
async fn failed_is_retried_as_a_new_task_after_the_retry_delay() {
    let env = start().await;
    env.enqueue(json!({"taskType": "fr", "retryCount": 1, "retryDelaySeconds": 1}))
        .await;
    let t = env.poll_one("fr").await;
    let t0 = Instant::now();
    env.update(&t, "FAILED", json!({"reasonForIncompletion": "boom"}))
        .await;
    assert_eq!(env.task(&t["taskId"]).await["status"], "FAILED");
    assert!(env.batch_poll("fr", 1, 200).await.is_empty());
    let retry = env.batch_poll("fr", 1, 3000).await;
    let took = t0.elapsed();
    assert_eq!(retry.len(), 1);
    let r = &retry[0];
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert_ne!(r["taskId"], t["taskId"]);
    assert_eq!(r["retryCount"], 1);
    assert_eq!(r["retriedTaskId"], t["taskId"]);
    assert_eq!(r["workflowInstanceId"], t["workflowInstanceId"]);
    assert_eq!(r["referenceTaskName"], t["referenceTaskName"]);
    assert_eq!(env.task(&t["taskId"]).await["status"], "FAILED");
    // Out of retries: the workflow fails.
    env.update(r, "FAILED", json!({"reasonForIncompletion": "again"}))
        .await;
    let wf = env
        .workflow(t["workflowInstanceId"].as_str().unwrap())
        .await;
    assert_eq!(wf["status"], "FAILED");
    assert!(
        wf["reasonForIncompletion"]
            .as_str()
            .unwrap()
            .contains("again")
    );
    assert_eq!(wf["tasks"].as_array().unwrap().len(), 2);
    assert_eq!(env.server.stats().tasks.failed, 2);
}

#[tokio::test]
async fn failed_with_terminal_error_is_never_retried() {
    let env = start().await;
    env.enqueue(json!({"taskType": "fte", "retryCount": 3, "retryDelaySeconds": 0}))
        .await;
    let t = env.poll_one("fte").await;
    env.update(
        &t,
        "FAILED_WITH_TERMINAL_ERROR",
        json!({"reasonForIncompletion": "bad input"}),
    )
    .await;
    assert!(env.batch_poll("fte", 1, 300).await.is_empty());
    let wf = env
        .workflow(t["workflowInstanceId"].as_str().unwrap())
        .await;
    assert_eq!(wf["status"], "FAILED");
    assert_eq!(wf["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(env.server.stats().tasks.failed_terminal, 1);
}

#[tokio::test]
async fn response_timeout_retries_as_a_new_task_and_then_times_the_workflow_out() {
    let env = start().await;
    env.enqueue(json!({"taskType": "rt", "responseTimeoutSeconds": 1, "retryCount": 1, "retryDelaySeconds": 0}))
        .await;
    let t = env.poll_one("rt").await;
    let t0 = Instant::now();
    let retry = env.batch_poll("rt", 1, 3000).await;
    let took = t0.elapsed();
    assert_eq!(retry.len(), 1);
    assert!(took >= Duration::from_millis(950), "{took:?}");
    assert!(
        took < Duration::from_millis(1900),
        "sub-second detection expected: {took:?}"
    );
    assert_ne!(retry[0]["taskId"], t["taskId"]);
    assert_eq!(retry[0]["retryCount"], 1);
    let old = env.task(&t["taskId"]).await;
    assert_eq!(old["status"], "TIMED_OUT");
    // A late update of the timed-out attempt is answered 200 and ignored.
    let r = env.update(&t, "COMPLETED", json!({})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(env.task(&t["taskId"]).await["status"], "TIMED_OUT");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let wf = env
        .workflow(t["workflowInstanceId"].as_str().unwrap())
        .await;
    assert_eq!(wf["status"], "TIMED_OUT");
    assert_eq!(env.server.stats().tasks.timed_out, 2);
}

#[tokio::test]
async fn update_v2_returns_the_next_task_or_204() {
    let env = start().await;
    env.enqueue(json!({"taskType": "v2", "count": 2})).await;
    let t = env.poll_one("v2").await;
    let url = format!("{}/tasks/update-v2", env.api);
    let body = |t: &Value, status: &str| {
        json!({"taskId": t["taskId"], "workflowInstanceId": t["workflowInstanceId"],
               "status": status, "workerId": "next-worker"})
    };
    let r = env
        .client
        .post(&url)
        .json(&body(&t, "COMPLETED"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let next: Value = r.json().await.unwrap();
    assert_ne!(next["taskId"], t["taskId"]);
    assert_eq!(next["status"], "IN_PROGRESS");
    assert_eq!(next["workerId"], "next-worker");
    // Not terminal: nothing next.
    let r = env
        .client
        .post(&url)
        .json(&body(&next, "IN_PROGRESS"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let again = env.poll_one("v2").await;
    // Terminal, queue empty: 204.
    let r = env
        .client
        .post(&url)
        .json(&body(&again, "COMPLETED"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Unknown id: the task-not-found ErrorResponse, not a missing route.
    let r = env
        .client
        .post(&url)
        .json(&json!({"taskId": "x", "workflowInstanceId": "y", "status": "COMPLETED"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.json::<Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("No such workflow")
    );
}

#[tokio::test]
async fn logs_from_the_log_endpoint_and_from_task_results_are_ordered_by_created_time() {
    let env = start().await;
    env.enqueue(json!({"taskType": "logs"})).await;
    let t = env.poll_one("logs").await;
    let id = t["taskId"].as_str().unwrap();
    let r = env
        .client
        .post(format!("{}/tasks/{id}/log", env.api))
        .body("first line")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    env.update(
        &t,
        "IN_PROGRESS",
        json!({"logs": [{"log": "second", "createdTime": 42}]}),
    )
    .await;
    let logs = env.get_json(&format!("{}/tasks/{id}/log", env.api)).await;
    let logs = logs.as_array().unwrap();
    assert_eq!(logs.len(), 2);
    // As the real server does: by createdTime, not by arrival.
    assert_eq!(logs[0]["log"], "second");
    assert_eq!(logs[0]["createdTime"], 42);
    assert_eq!(logs[1]["log"], "first line");
    assert_eq!(logs[1]["taskId"], id);
    assert!(logs[1]["createdTime"].as_i64().unwrap() > 42);
}

#[tokio::test]
async fn task_definitions_have_the_server_defaults_and_404s() {
    let env = start().await;
    env.taskdefs(json!([{"name": "td1", "ownerEmail": "a@b.c", "description": "kept"}, {"name": "td2", "retryCount": 0}]))
        .await;
    let d = env
        .get_json(&format!("{}/metadata/taskdefs/td1", env.api))
        .await;
    assert_eq!(d["retryCount"], 3);
    assert_eq!(d["retryDelaySeconds"], 60);
    assert_eq!(d["responseTimeoutSeconds"], 3600);
    assert_eq!(d["timeoutSeconds"], 0);
    assert_eq!(d["description"], "kept");
    let all = env
        .get_json(&format!("{}/metadata/taskdefs", env.api))
        .await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let r = env
        .client
        .get(format!("{}/metadata/taskdefs/none", env.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let put = |body: Value| {
        env.client
            .put(format!("{}/metadata/taskdefs", env.api))
            .json(&body)
            .send()
    };
    assert_eq!(put(json!({"name": "none"})).await.unwrap().status(), 404);
    assert_eq!(
        put(json!({"name": "td2", "retryCount": 5}))
            .await
            .unwrap()
            .status(),
        200
    );
    let d = env
        .get_json(&format!("{}/metadata/taskdefs/td2", env.api))
        .await;
    assert_eq!(d["retryCount"], 5);
    // Re-registering is an idempotent upsert; invalid definitions are 400.
    env.taskdefs(json!([{"name": "td1"}])).await;
    let r = env
        .client
        .post(format!("{}/metadata/taskdefs", env.api))
        .json(&json!([{"name": "bad", "responseTimeoutSeconds": 0}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The task definition drives retries of workflow tasks.
    env.taskdefs(json!([{"name": "td3", "retryCount": 1, "retryDelaySeconds": 0}]))
        .await;
    let wf = start_inline(&env, "td3").await;
    let t = env.poll_one("td3").await;
    assert_eq!(t["workflowInstanceId"], wf.as_str());
    env.update(&t, "FAILED", json!({})).await;
    assert_eq!(env.poll_one("td3").await["retryCount"], 1);
}

async fn start_inline(env: &common::Env, task: &str) -> String {
    let r = env
        .client
        .post(format!("{}/workflow", env.api))
        .json(
            &json!({"name": "inline", "workflowDef": {"name": "inline", "version": 1,
              "tasks": [{"name": task, "taskReferenceName": "only", "type": "SIMPLE"}]}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test]
async fn a_type_without_a_task_definition_can_be_polled() {
    let env = start().await;
    start_inline(&env, "undefined_type").await;
    let t = env.poll_one("undefined_type").await;
    assert_eq!(t["responseTimeoutSeconds"], 3600);
    assert_eq!(env.update(&t, "COMPLETED", json!({})).await.status(), 200);
}

#[tokio::test]
async fn queue_size_and_domains() {
    let env = start().await;
    env.enqueue(json!({"taskType": "qs", "count": 3})).await;
    env.enqueue(json!({"taskType": "qs", "count": 2, "domain": "blue"}))
        .await;
    assert_eq!(env.queue_size("qs").await, 3);
    let blue = env
        .get_json(&format!(
            "{}/tasks/queue/size?taskType=qs&domain=blue",
            env.api
        ))
        .await;
    assert_eq!(blue, 2);
    let got = env
        .get_json(&format!(
            "{}/tasks/poll/batch/qs?domain=blue&count=10&timeout=0",
            env.api
        ))
        .await;
    assert_eq!(got.as_array().unwrap().len(), 2);
    assert_eq!(got[0]["domain"], "blue");
    assert_eq!(env.batch_poll("qs", 10, 0).await.len(), 3);
    assert_eq!(env.queue_size("qs").await, 0);
    let r = env
        .client
        .get(format!("{}/tasks/queue/size", env.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn stats_count_requests_tasks_and_updates() {
    let env = start().await;
    env.enqueue(json!({"taskType": "st", "count": 3})).await;
    let tasks = env.batch_poll("st", 2, 0).await;
    env.update(&tasks[0], "COMPLETED", json!({})).await;
    env.update(
        &tasks[1],
        "IN_PROGRESS",
        json!({"callbackAfterSeconds": 60}),
    )
    .await;
    env.update(&tasks[0], "COMPLETED", json!({})).await;
    let s: conductor_devserver::Stats = env
        .get_json(&format!("{}/admin/stats", env.root))
        .await
        .as_object()
        .map(|o| serde_json::from_value(Value::Object(o.clone())).unwrap())
        .unwrap();
    assert_eq!(s, env.server.stats());
    assert_eq!(s.requests["batch_poll"], 1);
    assert_eq!(s.requests["update"], 3);
    assert_eq!(s.tasks.scheduled, 3);
    assert_eq!(s.tasks.completed, 1);
    assert_eq!(s.tasks.in_progress, 0);
    assert_eq!(s.tasks.queued, 1);
    assert_eq!(s.updates.accepted, 2);
    assert_eq!(s.updates.in_progress, 1);
    assert_eq!(s.updates.terminal_task, 1);
    let r = env
        .client
        .post(format!("{}/admin/stats/reset", env.root))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let s = env.server.stats();
    assert_eq!(s.requests["update"], 0);
    assert_eq!(s.tasks.completed, 0);
    assert_eq!(s.tasks.queued, 1);
}

#[tokio::test]
async fn health_answers_on_both_paths() {
    let env = start().await;
    assert_eq!(
        env.get_json(&format!("{}/health", env.root)).await["healthy"],
        true
    );
    assert_eq!(
        env.get_json(&format!("{}/health", env.api)).await["healthy"],
        true
    );
    assert_eq!(env.server.stats().requests["health"], 2);
}

fn waiting_for_count() -> conductor_devserver::Config {
    let mut c = conductor_devserver::Config::default();
    c.faults.batch_poll_waits_for_count = true;
    c
}

#[tokio::test]
async fn a_batch_poll_that_waits_for_count_answers_at_the_timeout_with_what_it_has() {
    let env = common::start_with(waiting_for_count()).await;
    env.enqueue(json!({"taskType": "wc", "count": 2})).await;
    let t0 = Instant::now();
    let tasks = env.batch_poll("wc", 5, 1500).await;
    let took = t0.elapsed();
    assert_eq!(tasks.len(), 2);
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    assert!(took < Duration::from_millis(3000), "{took:?}");
    // count=1 returns as soon as one task is ready; timeout=0 at once with what is ready.
    env.enqueue(json!({"taskType": "wc", "count": 3})).await;
    let t0 = Instant::now();
    assert_eq!(env.batch_poll("wc", 1, 1500).await.len(), 1);
    assert_eq!(env.batch_poll("wc", 5, 0).await.len(), 2);
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    // A full batch returns at once.
    env.enqueue(json!({"taskType": "wc", "count": 4})).await;
    let t0 = Instant::now();
    assert_eq!(env.batch_poll("wc", 4, 1500).await.len(), 4);
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn a_task_arriving_during_a_wait_for_count_poll_comes_at_the_timeout() {
    let env = common::start_with(waiting_for_count()).await;
    let (api, client) = (env.api.clone(), env.client.clone());
    let t0 = Instant::now();
    let poll = tokio::spawn(async move {
        let r = client
            .get(format!("{api}/tasks/poll/batch/wa?count=5&timeout=1500"))
            .send()
            .await
            .unwrap();
        (r.json::<Vec<Value>>().await.unwrap(), t0.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.enqueue(json!({"taskType": "wa"})).await;
    let (tasks, took) = poll.await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    // Switched off at run time, a batch poll answers with the tasks that are ready.
    env.set_faults(json!({"batch_poll_waits_for_count": false}))
        .await;
    env.enqueue(json!({"taskType": "wa", "count": 2})).await;
    let t0 = Instant::now();
    assert_eq!(env.batch_poll("wa", 5, 1500).await.len(), 2);
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
}
