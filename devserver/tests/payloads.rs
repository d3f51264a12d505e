//! External payload storage over HTTP: thresholds, the location endpoint, `/api/external/{key}`
//! in its three modes, server-side externalization, the hard limit, auth and faults.

mod common;

use common::{Env, start_with};
use conductor_devserver::{Config, ExternalStorage, PayloadLimits};
use serde_json::{Value, json};

const MB: usize = 1024 * 1024;

fn config(storage: ExternalStorage) -> Config {
    Config {
        payloads: PayloadLimits {
            storage,
            ..PayloadLimits::default()
        },
        ..Config::default()
    }
}

/// Registers `big_wf`: `a` gets the workflow's `x`, `b` gets `a`'s output `data`; the
/// workflow's output is `b`'s `data`.
async fn register(env: &Env) {
    let def = json!([{
        "name": "big_wf", "version": 1, "ownerEmail": "a@b.c",
        "tasks": [
            {"name": "big_a", "taskReferenceName": "a", "type": "SIMPLE",
             "inputParameters": {"x": "${workflow.input.x}"}},
            {"name": "big_b", "taskReferenceName": "b", "type": "SIMPLE",
             "inputParameters": {"fromA": "${a.output.data}"}}
        ],
        "outputParameters": {"out": "${b.output.data}", "fromA": "${a.output.data}"}
    }]);
    env.workflow_defs(def).await;
}

async fn start_wf(env: &Env, input: Value) -> String {
    let r = env
        .client
        .post(format!("{}/workflow/big_wf", env.api))
        .json(&input)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

async fn location(env: &Env, path: &str, op: &str, ty: &str) -> reqwest::Response {
    env.client
        .get(format!("{}/tasks/externalstoragelocation", env.api))
        .query(&[("path", path), ("operation", op), ("payloadType", ty)])
        .send()
        .await
        .unwrap()
}

async fn location_json(env: &Env, path: &str, op: &str, ty: &str) -> Value {
    let r = location(env, path, op, ty).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn stats(env: &Env) -> Value {
    env.get_json(&format!("{}/admin/stats", env.root)).await
}

fn path_of(t: &Value, field: &str) -> String {
    let p = t[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in task"));
    assert!(p.ends_with(".json") && p.len() == 41, "{p}");
    p.to_string()
}

#[tokio::test]
async fn a_big_input_is_stored_and_an_uploaded_output_resolves() {
    let env = start_with(Config::default()).await;
    register(&env).await;
    let big = "i".repeat(4 * MB);
    let wf_id = start_wf(&env, json!({ "x": big })).await;
    let t = env.poll_one("big_a").await;
    assert_eq!(t["inputData"], json!({}));
    let key = path_of(&t, "externalInputPayloadStoragePath");
    // Every representation of the task shows the key and no input.
    let got = env.task(&t["taskId"]).await;
    assert_eq!(got["externalInputPayloadStoragePath"], key.as_str());
    assert_eq!(got["inputData"], json!({}));
    let wf = env.workflow(&wf_id).await;
    assert_eq!(
        wf["tasks"][0]["externalInputPayloadStoragePath"],
        key.as_str()
    );
    assert_eq!(wf["tasks"][0]["inputData"], json!({}));

    let loc = location_json(&env, &key, "READ", "TASK_INPUT").await;
    assert_eq!(loc["path"], key.as_str());
    let uri = loc["uri"].as_str().unwrap();
    assert_eq!(uri, format!("{}/external/{key}", env.api));
    let r = env.get(uri).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.json::<Value>().await.unwrap(), json!({ "x": big }));

    // The worker uploads its big output and sends only the key.
    let write = location_json(&env, "", "WRITE", "TASK_OUTPUT").await;
    let out_key = path_of(&write, "path");
    assert_ne!(out_key, key);
    let out = "o".repeat(4 * MB);
    let r = env
        .client
        .put(write["uri"].as_str().unwrap())
        .json(&json!({ "data": out }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = env
        .update(
            &t,
            "COMPLETED",
            json!({ "externalOutputPayloadStoragePath": out_key }),
        )
        .await;
    assert_eq!(r.status(), 200);
    // The next task's input resolves the stored output (and is itself stored: 4 MB).
    let tb = env.poll_one("big_b").await;
    assert_eq!(tb["inputData"], json!({}));
    let b_key = path_of(&tb, "externalInputPayloadStoragePath");
    let loc = location_json(&env, &b_key, "READ", "TASK_INPUT").await;
    let b_input: Value = env.get_json(loc["uri"].as_str().unwrap()).await;
    assert_eq!(b_input, json!({ "fromA": out }));
    env.update(&tb, "COMPLETED", json!({"outputData": {"data": "small"}}))
        .await;

    let wf = env.workflow(&wf_id).await;
    assert_eq!(wf["status"], "COMPLETED");
    assert_eq!(wf["output"], json!({"out": "small", "fromA": out}));
    assert_eq!(
        wf["tasks"][0]["externalOutputPayloadStoragePath"],
        out_key.as_str()
    );
    assert_eq!(wf["tasks"][0]["outputData"], json!({}));
    let s = stats(&env).await;
    assert_eq!(s["externalized_inputs"], 2);
    assert_eq!(s["external_writes"], 1);
    assert_eq!(s["external_reads"], 2);
    assert_eq!(s["externalized_outputs"], 0);
    assert_eq!(s["requests"]["external_location"], 3);
}

#[tokio::test]
async fn a_big_inline_output_is_stored_by_the_server() {
    let env = start_with(Config::default()).await;
    register(&env).await;
    let wf_id = start_wf(&env, json!({"x": 1})).await;
    let t = env.poll_one("big_a").await;
    assert_eq!(t["inputData"], json!({"x": 1}));
    assert!(t.get("externalInputPayloadStoragePath").is_none());
    let out = "q".repeat(4 * MB);
    let r = env
        .update(&t, "COMPLETED", json!({"outputData": {"data": out}}))
        .await;
    assert_eq!(r.status(), 200);
    let got = env.task(&t["taskId"]).await;
    assert_eq!(got["outputData"], json!({}));
    let key = path_of(&got, "externalOutputPayloadStoragePath");
    let loc = location_json(&env, &key, "READ", "TASK_OUTPUT").await;
    let stored: Value = env.get_json(loc["uri"].as_str().unwrap()).await;
    assert_eq!(stored, json!({ "data": out }));
    let tb = env.poll_one("big_b").await;
    path_of(&tb, "externalInputPayloadStoragePath");
    env.update(&tb, "COMPLETED", json!({"outputData": {"data": 2}}))
        .await;
    let wf = env.workflow(&wf_id).await;
    assert_eq!(wf["status"], "COMPLETED");
    assert_eq!(wf["output"], json!({"out": 2, "fromA": out}));
    let s = stats(&env).await;
    assert_eq!(s["externalized_outputs"], 1);
    assert_eq!(s["externalized_inputs"], 1);
    assert_eq!(s["external_writes"], 0);
}

#[tokio::test]
async fn an_output_above_the_hard_limit_fails_the_task_and_the_workflow() {
    let env = start_with(Config::default()).await;
    register(&env).await;
    let wf_id = start_wf(&env, json!({"x": 1})).await;
    let t = env.poll_one("big_a").await;
    let r = env
        .update(
            &t,
            "COMPLETED",
            json!({"outputData": {"data": "z".repeat(12 * MB)}}),
        )
        .await;
    // As on the real server: the update is answered, the task failed.
    assert_eq!(r.status(), 200);
    let got = env.task(&t["taskId"]).await;
    assert_eq!(got["status"], "FAILED_WITH_TERMINAL_ERROR");
    assert_eq!(got["outputData"], json!({}));
    assert!(got.get("externalOutputPayloadStoragePath").is_none());
    let reason = got["reasonForIncompletion"].as_str().unwrap();
    let size = 12 * MB + r#"{"data":""}"#.len();
    assert_eq!(
        reason,
        format!(
            "The payload size: {size} of task: {} in workflow: {wf_id}  is greater than the \
             permissible limit: 10485760 bytes",
            t["taskId"].as_str().unwrap()
        )
    );
    let wf = env.workflow(&wf_id).await;
    assert_eq!(wf["status"], "FAILED");
    assert!(
        wf["reasonForIncompletion"]
            .as_str()
            .unwrap()
            .contains(reason),
        "{}",
        wf["reasonForIncompletion"]
    );
    // Never retried, and nothing else scheduled.
    assert_eq!(wf["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(stats(&env).await["tasks"]["failed_terminal"], 1);
}

#[tokio::test]
async fn inputs_are_placed_by_the_configured_limits() {
    let env = start_with(Config {
        payloads: PayloadLimits {
            task_input_threshold_kb: 16,
            task_output_threshold_kb: 16,
            max_task_payload_kb: 64,
            ..PayloadLimits::default()
        },
        ..Config::default()
    })
    .await;
    // Bulk tasks with a 20 KB input: every one is stored (under one key, the input is shared).
    env.enqueue(json!({"taskType": "mid", "count": 3, "input": {"s": "m".repeat(20 * 1024)}}))
        .await;
    let ts = env.batch_poll("mid", 3, 1000).await;
    assert_eq!(ts.len(), 3);
    for t in &ts {
        assert_eq!(t["inputData"], json!({}));
        path_of(t, "externalInputPayloadStoragePath");
    }
    // A 10 KB input stays inline.
    env.enqueue(json!({"taskType": "small", "input": {"s": "s".repeat(10 * 1024)}}))
        .await;
    let t = env.poll_one("small").await;
    assert_eq!(t["inputData"]["s"].as_str().unwrap().len(), 10 * 1024);
    // A 100 KB input fails its task when it is created: never queued, the workflow failed.
    env.enqueue(json!({"taskType": "huge", "input": {"s": "h".repeat(100 * 1024)}}))
        .await;
    assert_eq!(env.queue_size("huge").await, 0);
    assert!(env.batch_poll("huge", 1, 0).await.is_empty());
    let s = stats(&env).await;
    assert_eq!(s["tasks"]["failed_terminal"], 1);
    assert_eq!(s["externalized_inputs"], 3);
    // A 20 KB output is stored by the server, a 100 KB one fails the task.
    env.update(
        &ts[0],
        "COMPLETED",
        json!({"outputData": {"s": "o".repeat(20 * 1024)}}),
    )
    .await;
    let got = env.task(&ts[0]["taskId"]).await;
    assert_eq!(got["status"], "COMPLETED");
    path_of(&got, "externalOutputPayloadStoragePath");
    env.update(
        &ts[1],
        "IN_PROGRESS",
        json!({"outputData": {"s": "o".repeat(100 * 1024)}}),
    )
    .await;
    let got = env.task(&ts[1]["taskId"]).await;
    assert_eq!(got["status"], "FAILED_WITH_TERMINAL_ERROR");
    assert!(
        got["reasonForIncompletion"]
            .as_str()
            .unwrap()
            .ends_with("is greater than the permissible limit: 65536 bytes")
    );
}

#[tokio::test]
async fn a_retry_keeps_the_stored_input() {
    let env = start_with(Config {
        payloads: PayloadLimits {
            task_input_threshold_kb: 1,
            ..PayloadLimits::default()
        },
        ..Config::default()
    })
    .await;
    env.enqueue(json!({"taskType": "rt", "retryCount": 1, "input": {"s": "r".repeat(2048)}}))
        .await;
    let t = env.poll_one("rt").await;
    let key = path_of(&t, "externalInputPayloadStoragePath");
    env.update(&t, "FAILED", json!({"outputData": {"s": "o".repeat(2048)}}))
        .await;
    let retry = env.poll_one("rt").await;
    assert_eq!(retry["retryCount"], 1);
    assert_eq!(retry["externalInputPayloadStoragePath"], key.as_str());
    assert_eq!(retry["inputData"], json!({}));
    assert!(retry.get("externalOutputPayloadStoragePath").is_none());
}

#[tokio::test]
async fn read_only_storage_serves_reads_and_refuses_uploads() {
    let env = start_with(config(ExternalStorage::ReadOnly)).await;
    register(&env).await;
    let big = "r".repeat(4 * MB);
    start_wf(&env, json!({ "x": big })).await;
    let t = env.poll_one("big_a").await;
    let key = path_of(&t, "externalInputPayloadStoragePath");
    let loc = location_json(&env, &key, "READ", "TASK_INPUT").await;
    let input: Value = env.get_json(loc["uri"].as_str().unwrap()).await;
    assert_eq!(input, json!({ "x": big }));
    let write = location_json(&env, "", "WRITE", "TASK_OUTPUT").await;
    let r = env
        .client
        .put(write["uri"].as_str().unwrap())
        .json(&json!({"data": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["status"], 405);
    // So the worker sends it inline and the server stores it.
    env.update(&t, "COMPLETED", json!({"outputData": {"data": big}}))
        .await;
    let got = env.task(&t["taskId"]).await;
    path_of(&got, "externalOutputPayloadStoragePath");
    let s = stats(&env).await;
    assert_eq!(
        (
            s["external_writes"].as_u64(),
            s["externalized_outputs"].as_u64()
        ),
        (Some(0), Some(1))
    );
}

#[tokio::test]
async fn none_storage_hands_out_no_uri() {
    let env = start_with(config(ExternalStorage::None)).await;
    register(&env).await;
    start_wf(&env, json!({ "x": "n".repeat(4 * MB) })).await;
    let t = env.poll_one("big_a").await;
    assert_eq!(t["inputData"], json!({}));
    let key = path_of(&t, "externalInputPayloadStoragePath");
    let read = location_json(&env, &key, "READ", "TASK_INPUT").await;
    assert_eq!(read, json!({ "path": key }));
    let write = location_json(&env, "", "WRITE", "TASK_OUTPUT").await;
    assert!(write.get("uri").is_none(), "{write}");
    path_of(&write, "path");
    // Nothing is served: the real default storage has no such route.
    let r = env.get(&format!("{}/external/{key}", env.api)).await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_storage_base_url_prefixes_the_uris() {
    let mut c = config(ExternalStorage::Upload);
    c.payloads.storage_base_url = Some("https://bucket.example/payloads/".into());
    let env = start_with(c).await;
    let loc = location_json(&env, "k.json", "READ", "TASK_INPUT").await;
    assert_eq!(
        loc,
        json!({"uri": "https://bucket.example/payloads/k.json", "path": "k.json"})
    );
}

#[tokio::test]
async fn bad_locations_uploads_and_keys_are_errors() {
    let env = start_with(Config::default()).await;
    let r = location(&env, "", "DELETE", "TASK_INPUT").await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(
        e["message"],
        "Invalid input - Operation: DELETE, PayloadType: TASK_INPUT"
    );
    let r = location(&env, "", "READ", "BLOB").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("PayloadType: BLOB"));
    // Lower case is accepted, as on the real server; so is the alias route.
    let alias = "tasks/external-storage-location?path=&operation=write&payloadType=task_output";
    let r = env.get(&format!("{}/{alias}", env.api)).await;
    assert_eq!(r.status(), 200);
    // A missing parameter is the real server's 500.
    let r = env
        .get(&format!("{}/tasks/externalstoragelocation?path=x", env.api))
        .await;
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().contains("'operation'"));
    // An unknown key still gets a uri; the GET of it is a 404.
    let loc = location_json(&env, "nope.json", "READ", "TASK_INPUT").await;
    let r = env.get(loc["uri"].as_str().unwrap()).await;
    assert_eq!(r.status(), 404);
    let e: Value = r.json().await.unwrap();
    assert!(e["message"].as_str().unwrap().contains("nope.json"), "{e}");
    // Uploads must be JSON objects.
    let url = format!("{}/external/k.json", env.api);
    for body in ["[1, 2]", "{\"a\": ", "\"text\""] {
        let r = env.client.put(&url).body(body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
    }
    // A result naming a key nobody uploaded is refused.
    env.enqueue(json!({"taskType": "k"})).await;
    let t = env.poll_one("k").await;
    let r = env
        .update(
            &t,
            "COMPLETED",
            json!({"externalOutputPayloadStoragePath": "missing.json"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("missing.json"));
    assert_eq!(env.task(&t["taskId"]).await["status"], "IN_PROGRESS");
    assert_eq!(stats(&env).await["external_reads"], 0);
}

#[tokio::test]
async fn storage_routes_need_the_token_when_auth_is_on() {
    let mut c = Config::default();
    c.auth.push("key:secret".parse().unwrap());
    let env = start_with(c).await;
    let token = env.token("key", "secret").await;
    let loc_url = format!(
        "{}/tasks/externalstoragelocation?path=&operation=WRITE&payloadType=TASK_OUTPUT",
        env.api
    );
    let get = |url: &str, token: Option<&str>| {
        let mut req = env.client.get(url);
        if let Some(t) = token {
            req = req.header("X-Authorization", t);
        }
        req.send()
    };
    assert_eq!(get(&loc_url, None).await.unwrap().status(), 401);
    let loc: Value = get(&loc_url, Some(&token))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let uri = loc["uri"].as_str().unwrap();
    let body = json!({"a": 1});
    let put = |token: Option<&str>| {
        let mut req = env.client.put(uri).json(&body);
        if let Some(t) = token {
            req = req.header("X-Authorization", t);
        }
        req.send()
    };
    assert_eq!(put(None).await.unwrap().status(), 401);
    assert_eq!(put(Some(&token)).await.unwrap().status(), 200);
    assert_eq!(get(uri, None).await.unwrap().status(), 401);
    let r = get(uri, Some(&token)).await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), body);
}

#[tokio::test]
async fn the_external_fault_group_covers_locations_and_storage() {
    let env = start_with(Config::default()).await;
    env.set_faults(json!({"fail_rate": {"external": 1.0}}))
        .await;
    assert_eq!(
        location(&env, "", "WRITE", "TASK_OUTPUT").await.status(),
        500
    );
    let url = format!("{}/external/k.json", env.api);
    assert_eq!(env.get(&url).await.status(), 500);
    let r = env.client.put(&url).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 500);
    // Other groups are untouched.
    env.enqueue(json!({"taskType": "f"})).await;
    assert_eq!(env.poll_one("f").await["status"], "IN_PROGRESS");
    let s = stats(&env).await;
    assert_eq!(s["faults_injected"]["fail"], 3);
    assert_eq!(s["requests"]["external_get"], 1);
    assert_eq!(s["requests"]["external_put"], 1);
}
