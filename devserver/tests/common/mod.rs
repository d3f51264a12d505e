//! Helpers shared by the integration tests: an in-process server and a few HTTP shortcuts.
#![allow(dead_code)]

use std::time::Duration;

use conductor_devserver::{Config, DevServer};
use serde_json::{Value, json};

pub struct Env {
    pub server: DevServer,
    pub client: reqwest::Client,
    /// `http://127.0.0.1:PORT/api`
    pub api: String,
    /// `http://127.0.0.1:PORT`
    pub root: String,
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A server with a fast sweeper, so timeout tests do not wait long.
pub async fn start() -> Env {
    start_with(Config {
        sweep_interval_ms: 20,
        ..Config::default()
    })
    .await
}

pub async fn start_with(config: Config) -> Env {
    let server = DevServer::start(config).await.unwrap();
    Env {
        api: server.base_url(),
        root: server.url(),
        server,
        client: client(),
    }
}

impl Env {
    pub async fn enqueue(&self, body: Value) {
        let r = self
            .client
            .post(format!("{}/admin/tasks", self.root))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    pub async fn batch_poll(&self, ty: &str, count: u32, timeout_ms: u64) -> Vec<Value> {
        let r = self
            .client
            .get(format!("{}/tasks/poll/batch/{ty}", self.api))
            .query(&[
                ("workerid", "w1"),
                ("count", &count.to_string()),
                ("timeout", &timeout_ms.to_string()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    pub async fn poll_one(&self, ty: &str) -> Value {
        let mut v = self.batch_poll(ty, 1, 1000).await;
        assert_eq!(v.len(), 1, "expected one task of type {ty}");
        v.remove(0)
    }

    pub async fn update(&self, task: &Value, status: &str, extra: Value) -> reqwest::Response {
        let mut body = json!({
            "taskId": task["taskId"],
            "workflowInstanceId": task["workflowInstanceId"],
            "status": status,
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        self.client
            .post(format!("{}/tasks", self.api))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.client.get(url).send().await.unwrap()
    }

    /// `PUT /admin/faults` with a partial faults object.
    pub async fn set_faults(&self, patch: Value) {
        let r = self
            .client
            .put(format!("{}/admin/faults", self.root))
            .json(&patch)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// `PUT /api/metadata/workflow`.
    pub async fn workflow_defs(&self, defs: Value) {
        let r = self
            .client
            .put(format!("{}/metadata/workflow", self.api))
            .json(&defs)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    /// A token from `POST /api/token`.
    pub async fn token(&self, key: &str, secret: &str) -> String {
        let r = self
            .client
            .post(format!("{}/token", self.api))
            .json(&json!({"keyId": key, "keySecret": secret}))
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        body["token"].as_str().unwrap().to_string()
    }

    pub async fn get_json(&self, url: &str) -> Value {
        let r = self.client.get(url).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {url}");
        r.json().await.unwrap()
    }

    pub async fn task(&self, id: &Value) -> Value {
        self.get_json(&format!("{}/tasks/{}", self.api, id.as_str().unwrap()))
            .await
    }

    pub async fn workflow(&self, id: &str) -> Value {
        self.get_json(&format!("{}/workflow/{id}?includeTasks=true", self.api))
            .await
    }

    pub async fn taskdefs(&self, defs: Value) {
        let r = self
            .client
            .post(format!("{}/metadata/taskdefs", self.api))
            .json(&defs)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    pub async fn queue_size(&self, ty: &str) -> u64 {
        self.get_json(&format!("{}/tasks/queue/size?taskType={ty}", self.api))
            .await
            .as_u64()
            .unwrap()
    }
}
