use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::error::ApiError;
use crate::model::TaskResult;

fn result(id: &str, wf: &str, status: &str) -> TaskResult {
    serde_json::from_value(json!({"taskId": id, "workflowInstanceId": wf, "status": status}))
        .unwrap()
}

async fn poll_one(s: &Store, ty: &str) -> Option<Value> {
    let mut buf = Vec::new();
    let want = Want {
        timeout_ms: 0,
        ..Want::ONE
    };
    let n = s.poll(ty, None, Some("w1"), want, &mut buf).await;
    (n == 1).then(|| serde_json::from_slice(&buf).unwrap())
}

#[tokio::test]
async fn poll_marks_in_progress_and_completion_ends_the_workflow() {
    let s = Arc::new(Store::default());
    s.bulk_create(serde_json::from_value(json!({"taskType": "t", "count": 2})).unwrap())
        .unwrap();
    assert_eq!(s.queue_size("t", None), 2);
    let t = poll_one(&s, "t").await.unwrap();
    assert_eq!(t["status"], "IN_PROGRESS");
    assert_eq!(t["pollCount"], 1);
    assert_eq!(t["workerId"], "w1");
    assert_eq!(s.stats.snapshot(0).tasks.in_progress, 1);
    let id = t["taskId"].as_str().unwrap();
    let wf = t["workflowInstanceId"].as_str().unwrap();
    let u = s.update(result(id, wf, "COMPLETED")).unwrap();
    assert!(u.terminal);
    let w: Value = serde_json::from_slice(&s.workflow_json(wf, true).unwrap()).unwrap();
    assert_eq!(w["status"], "COMPLETED");
    assert_eq!(s.stats.snapshot(0).tasks.in_progress, 0);
    // A second update of the same task is ignored.
    s.update(result(id, wf, "FAILED")).unwrap();
    assert_eq!(s.stats.snapshot(0).updates.terminal_task, 1);
}

#[tokio::test]
async fn in_progress_with_zero_callback_is_repollable_at_once() {
    let s = Arc::new(Store::default());
    s.bulk_create(serde_json::from_value(json!({"taskType": "t"})).unwrap())
        .unwrap();
    let t = poll_one(&s, "t").await.unwrap();
    let (id, wf) = (
        t["taskId"].as_str().unwrap(),
        t["workflowInstanceId"].as_str().unwrap(),
    );
    s.update(result(id, wf, "IN_PROGRESS")).unwrap();
    let again = poll_one(&s, "t").await.unwrap();
    assert_eq!(again["taskId"], t["taskId"]);
    assert_eq!(again["pollCount"], 2);
}

#[tokio::test]
async fn unknown_ids_and_missing_fields_are_errors() {
    let s = Arc::new(Store::default());
    assert!(matches!(
        s.update(result("nope", "wf", "COMPLETED")),
        Err(ApiError::NotFound(_))
    ));
    assert!(matches!(
        s.update(result("", "wf", "COMPLETED")),
        Err(ApiError::Validation(ref errors)) if errors.len() == 1
    ));
}
