//! Workflows over HTTP: definitions, expressions, completion, failure, unsupported features.

mod common;

use common::start;
use serde_json::{Value, json};

#[tokio::test]
async fn a_linear_workflow_resolves_expressions_and_completes() {
    let env = start().await;
    let def = json!([{
        "name": "expr_wf", "version": 1, "schemaVersion": 2, "ownerEmail": "a@b.c", "timeoutSeconds": 0,
        "tasks": [
            {"name": "first_t", "taskReferenceName": "first", "type": "SIMPLE", "inputParameters": {
                "x": "${workflow.input.x}",
                "greeting": "hi ${workflow.input.name}, x=${workflow.input.x}",
                "nested": {"list": ["${workflow.input.x}", "lit"], "deep": "${workflow.input.obj.k}"}
            }},
            {"name": "second_t", "taskReferenceName": "second", "inputParameters": {
                "fromFirst": "${first.output.a.b}",
                "whole": "${first.output.a}",
                "firstInput": "${first.input.x}"
            }}
        ],
        "outputParameters": {"result": "${second.output.r}", "msg": "b was ${first.output.a.b}"}
    }]);
    let r = env
        .client
        .put(format!("{}/metadata/workflow", env.api))
        .json(&def)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = env
        .client
        .post(format!("{}/workflow/expr_wf?correlationId=c-1", env.api))
        .json(&json!({"x": 5, "name": "ann", "obj": {"k": [1, 2]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let wf_id = r.text().await.unwrap();
    let wf = env.workflow(&wf_id).await;
    assert_eq!(wf["status"], "RUNNING");
    assert_eq!(wf["workflowName"], "expr_wf");
    assert_eq!(wf["workflowVersion"], 1);
    assert_eq!(wf["correlationId"], "c-1");

    let t1 = env.poll_one("first_t").await;
    assert_eq!(t1["workflowInstanceId"], wf_id.as_str());
    assert_eq!(t1["correlationId"], "c-1");
    assert_eq!(t1["workflowType"], "expr_wf");
    assert_eq!(
        t1["inputData"],
        json!({"x": 5, "greeting": "hi ann, x=5",
               "nested": {"list": [5, "lit"], "deep": [1, 2]}})
    );
    assert_eq!(t1["workflowTask"]["taskReferenceName"], "first");
    env.update(&t1, "COMPLETED", json!({"outputData": {"a": {"b": true}}}))
        .await;
    let t2 = env.poll_one("second_t").await;
    assert_eq!(
        t2["inputData"],
        json!({"fromFirst": true, "whole": {"b": true}, "firstInput": 5})
    );
    assert_eq!(t2["seq"], 2);
    assert_eq!(env.workflow(&wf_id).await["status"], "RUNNING");
    env.update(&t2, "COMPLETED", json!({"outputData": {"r": [1, "two"]}}))
        .await;
    let wf = env.workflow(&wf_id).await;
    assert_eq!(wf["status"], "COMPLETED");
    assert_eq!(
        wf["output"],
        json!({"result": [1, "two"], "msg": "b was true"})
    );
    assert!(wf["endTime"].as_i64().unwrap() >= wf["createTime"].as_i64().unwrap());
    let tasks = wf["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert!(tasks.iter().all(|t| t["status"] == "COMPLETED"));
    let without = env
        .get_json(&format!("{}/workflow/{wf_id}?includeTasks=false", env.api))
        .await;
    assert!(without.get("tasks").is_none());
}

#[tokio::test]
async fn start_request_with_task_to_domain_and_version() {
    let env = start().await;
    for v in [1, 2] {
        let def = json!([{"name": "dom_wf", "version": v,
            "tasks": [{"name": format!("dom_t{v}"), "taskReferenceName": "t"}]}]);
        let r = env
            .client
            .put(format!("{}/metadata/workflow", env.api))
            .json(&def)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Latest version by default, taskToDomain applied.
    let r = env
        .client
        .post(format!("{}/workflow", env.api))
        .json(&json!({"name": "dom_wf", "input": {}, "taskToDomain": {"dom_t2": "green"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(env.batch_poll("dom_t2", 1, 0).await.is_empty());
    let t = env
        .get_json(&format!(
            "{}/tasks/poll/batch/dom_t2?domain=green&timeout=100",
            env.api
        ))
        .await;
    assert_eq!(t[0]["domain"], "green");
    // An explicit version.
    let r = env
        .client
        .post(format!("{}/workflow", env.api))
        .json(&json!({"name": "dom_wf", "version": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(env.batch_poll("dom_t1", 1, 100).await.len(), 1);
}

#[tokio::test]
async fn unsupported_and_unknown_things_are_clear_errors() {
    let env = start().await;
    let r = env
        .client
        .put(format!("{}/metadata/workflow", env.api))
        .json(&json!([{"name": "h", "tasks": [{"name": "x", "taskReferenceName": "x", "type": "HTTP"}]}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["message"].as_str().unwrap().contains("only SIMPLE"),
        "{e}"
    );
    let r = env
        .client
        .put(format!("{}/metadata/workflow", env.api))
        .json(&json!([{"name": "empty", "tasks": []}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = env
        .client
        .post(format!("{}/workflow/nope", env.api))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let e: Value = r.json().await.unwrap();
    assert!(e["message"].as_str().unwrap().contains("nope"), "{e}");
    let r = env
        .client
        .get(format!("{}/workflow/unknown-id", env.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // POST of an existing definition is a conflict; PUT overwrites.
    let one = json!({"name": "dup", "tasks": [{"name": "d", "taskReferenceName": "d"}]});
    let post = || {
        env.client
            .post(format!("{}/metadata/workflow", env.api))
            .json(&one)
            .send()
    };
    assert_eq!(post().await.unwrap().status(), 200);
    assert_eq!(post().await.unwrap().status(), 409);
    let got = env
        .get_json(&format!("{}/metadata/workflow/dup", env.api))
        .await;
    assert_eq!(got["tasks"][0]["taskReferenceName"], "d");
}

#[tokio::test]
async fn an_optional_task_failure_does_not_fail_the_workflow() {
    let env = start().await;
    env.taskdefs(json!([{"name": "opt_t", "retryCount": 0}]))
        .await;
    let r = env
        .client
        .post(format!("{}/workflow", env.api))
        .json(
            &json!({"name": "opt", "workflowDef": {"name": "opt", "tasks": [
            {"name": "opt_t", "taskReferenceName": "a", "optional": true},
            {"name": "after_t", "taskReferenceName": "b"}]}}),
        )
        .send()
        .await
        .unwrap();
    let wf_id = r.text().await.unwrap();
    let t = env.poll_one("opt_t").await;
    env.update(&t, "FAILED", json!({})).await;
    let b = env.poll_one("after_t").await;
    env.update(&b, "COMPLETED", json!({})).await;
    assert_eq!(env.workflow(&wf_id).await["status"], "COMPLETED");
}
