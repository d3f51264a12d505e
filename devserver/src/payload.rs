//! External payload storage: the size limits of task payloads, and the in-memory store behind
//! `/api/tasks/externalstoragelocation` and `/api/external/{key}`.
//!
//! The real server measures a payload as its serialized JSON; above the soft limit it stores the
//! payload under a new key and the task carries only the key, above the hard limit the task is
//! failed. Stored payloads are kept as the bytes of their JSON, once: every task and request that
//! refers to a key shares them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use serde_json::{Map, Value};

use crate::model::new_id;

/// What `/api/tasks/externalstoragelocation` and `/api/external/{key}` offer workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExternalStorage {
    /// Locations come with a `uri` on the dev server; workers may `GET` stored payloads and `PUT`
    /// their own (like S3 with presigned URLs, but same-origin, so the token is needed).
    #[default]
    Upload,
    /// Locations come with a `uri`; `GET` works, `PUT` answers 405 (the real server's postgres
    /// storage): a worker must send big outputs inline and let the server store them.
    ReadOnly,
    /// Locations have no `uri` (the real server's default storage, which writes to its temp
    /// directory): a worker cannot read an externalized input at all.
    None,
}

/// Task payload size limits and the storage mode (`Config::payloads`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadLimits {
    /// Task input above this many KB is stored externally (`--task-input-threshold-kb`).
    pub task_input_threshold_kb: u64,
    /// Task output above this many KB is stored externally (`--task-output-threshold-kb`).
    pub task_output_threshold_kb: u64,
    /// A task input or output above this many KB fails the task (`--max-task-payload-kb`).
    pub max_task_payload_kb: u64,
    /// What workers may do with stored payloads (`--external-storage`).
    pub storage: ExternalStorage,
    /// Prefix of the `uri` handed out, `<base>/<key>`; `None`: the dev server's own
    /// `/api/external/<key>` (`--external-storage-url`).
    pub storage_base_url: Option<String>,
}

impl Default for PayloadLimits {
    fn default() -> Self {
        PayloadLimits {
            task_input_threshold_kb: 3072,
            task_output_threshold_kb: 3072,
            max_task_payload_kb: 10240,
            storage: ExternalStorage::Upload,
            storage_base_url: None,
        }
    }
}

/// Why payload limits were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadLimitError {
    #[error("{0} must be more than 0")]
    Zero(&'static str),
    #[error("{name} ({value} KB) must not be more than max_task_payload_kb ({max} KB)")]
    AboveMax {
        name: &'static str,
        value: u64,
        max: u64,
    },
    #[error("storage_base_url must start with http:// or https://, not {0:?}")]
    BadUrl(String),
}

impl PayloadLimits {
    /// Checks that both thresholds are above 0 and not above the hard limit.
    pub fn validate(&self) -> Result<(), PayloadLimitError> {
        if self.max_task_payload_kb == 0 {
            return Err(PayloadLimitError::Zero("max_task_payload_kb"));
        }
        for (name, value) in [
            ("task_input_threshold_kb", self.task_input_threshold_kb),
            ("task_output_threshold_kb", self.task_output_threshold_kb),
        ] {
            if value == 0 {
                return Err(PayloadLimitError::Zero(name));
            }
            if value > self.max_task_payload_kb {
                return Err(PayloadLimitError::AboveMax {
                    name,
                    value,
                    max: self.max_task_payload_kb,
                });
            }
        }
        if let Some(u) = &self.storage_base_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(PayloadLimitError::BadUrl(u.clone()));
        }
        Ok(())
    }

    /// The request body limit: the hard limit twice over, so that a payload just above it still
    /// arrives whole and is failed with the real server's reason instead of a 413.
    pub fn body_limit(&self) -> usize {
        (self.max_task_payload_kb.saturating_mul(2048) as usize).max(2 << 20)
    }
}

/// Which payload of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    Input,
    Output,
}

/// Where a payload goes, decided by its size.
pub enum Placement {
    /// Small enough to stay in the task.
    Inline,
    /// Stored under this key.
    External(String),
    /// Above the hard limit: the serialized size in bytes.
    TooLarge(u64),
}

/// Counts the bytes of a serialization without keeping them.
struct Counter(u64);

impl std::io::Write for Counter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The serialized size of a JSON map, in bytes.
pub fn json_size(m: &Map<String, Value>) -> u64 {
    let mut c = Counter(0);
    // Writing into a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, m);
    c.0
}

/// The stored payloads and the limits they are stored by.
pub struct Payloads {
    pub limits: PayloadLimits,
    map: RwLock<HashMap<Arc<str>, Bytes>>,
}

/// A fresh storage key, `<uuid>.json` as the real server forms them.
pub fn new_key() -> String {
    format!("{}.json", new_id())
}

impl Payloads {
    pub fn new(limits: PayloadLimits) -> Payloads {
        Payloads {
            limits,
            map: RwLock::default(),
        }
    }

    /// Stores JSON bytes under a key (replacing what was there).
    pub fn put(&self, key: &str, bytes: Bytes) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.into(), bytes);
    }

    /// The stored bytes of a key (a cheap reference-counted handle).
    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// Whether a key is stored.
    pub fn contains(&self, key: &str) -> bool {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(key)
    }

    /// A stored payload parsed back into a map (empty if unknown or not an object).
    pub fn load(&self, key: &str) -> Map<String, Value> {
        self.get(key)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Decides where a task payload goes and stores it when it goes external.
    pub fn place(&self, kind: PayloadKind, m: &Map<String, Value>) -> Placement {
        let threshold = match kind {
            PayloadKind::Input => self.limits.task_input_threshold_kb,
            PayloadKind::Output => self.limits.task_output_threshold_kb,
        };
        // Sized without allocating first: almost every payload is small and stays inline.
        let size = json_size(m);
        if size > self.limits.max_task_payload_kb.saturating_mul(1024) {
            return Placement::TooLarge(size);
        }
        if size <= threshold.saturating_mul(1024) {
            return Placement::Inline;
        }
        let key = new_key();
        let bytes = serde_json::to_vec(m).unwrap_or_default();
        self.put(&key, Bytes::from(bytes));
        Placement::External(key)
    }

    /// The real server's reason for a payload above the hard limit.
    pub fn too_large_reason(&self, size: u64, task_id: &str, workflow_id: &str) -> String {
        // The double space is the real server's.
        format!(
            "The payload size: {size} of task: {task_id} in workflow: {workflow_id}  is greater \
             than the permissible limit: {} bytes",
            self.limits.max_task_payload_kb.saturating_mul(1024)
        )
    }

    /// The `uri` handed out for a key, if this storage mode hands any out; `origin` is
    /// `http://host:port` of the dev server as the client reached it.
    pub fn uri(&self, key: &str, origin: &str) -> Option<String> {
        if self.limits.storage == ExternalStorage::None {
            return None;
        }
        Some(match &self.limits.storage_base_url {
            Some(base) => format!("{}/{key}", base.trim_end_matches('/')),
            None => format!("{origin}/api/external/{key}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn limits_are_validated() {
        assert!(PayloadLimits::default().validate().is_ok());
        let bad = PayloadLimits {
            task_input_threshold_kb: 5,
            task_output_threshold_kb: 20,
            max_task_payload_kb: 10,
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("task_output_threshold_kb")
        );
        let zero = PayloadLimits {
            task_input_threshold_kb: 0,
            ..Default::default()
        };
        assert_eq!(
            zero.validate(),
            Err(PayloadLimitError::Zero("task_input_threshold_kb"))
        );
        let url = PayloadLimits {
            storage_base_url: Some("ftp://x".into()),
            ..Default::default()
        };
        assert!(url.validate().is_err());
    }

    #[test]
    fn payloads_are_placed_by_size() {
        let p = Payloads::new(PayloadLimits {
            task_input_threshold_kb: 1,
            task_output_threshold_kb: 2,
            max_task_payload_kb: 3,
            ..Default::default()
        });
        let m = |n: usize| obj(json!({ "s": "x".repeat(n) }));
        assert_eq!(json_size(&m(10)), 18);
        assert!(matches!(
            p.place(PayloadKind::Input, &m(1000)),
            Placement::Inline
        ));
        let Placement::External(key) = p.place(PayloadKind::Input, &m(1100)) else {
            panic!("1.1 KB input above a 1 KB threshold stays inline");
        };
        assert!(key.ends_with(".json"));
        assert_eq!(p.load(&key), m(1100));
        assert!(matches!(
            p.place(PayloadKind::Output, &m(1100)),
            Placement::Inline
        ));
        assert!(matches!(
            p.place(PayloadKind::Output, &m(4000)),
            Placement::TooLarge(4008)
        ));
    }

    #[test]
    fn uris_follow_the_storage_mode() {
        let mut limits = PayloadLimits::default();
        let p = Payloads::new(limits.clone());
        assert_eq!(
            p.uri("k.json", "http://h:1").as_deref(),
            Some("http://h:1/api/external/k.json")
        );
        limits.storage_base_url = Some("https://s3.example/bucket/".into());
        let p = Payloads::new(limits.clone());
        assert_eq!(
            p.uri("k.json", "http://h:1").as_deref(),
            Some("https://s3.example/bucket/k.json")
        );
        limits.storage = ExternalStorage::None;
        assert_eq!(Payloads::new(limits).uri("k.json", "http://h:1"), None);
    }
}
