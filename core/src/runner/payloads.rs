//! Large payloads on the worker's side: a task's externalized input is downloaded before any
//! executor sees the task, and an output above the threshold is uploaded before its result is
//! sent (where the server's storage takes uploads; otherwise it goes inline and the server
//! stores it itself).
//!
//! Both run on the runtime's threads: an executor waiting for a task whose input is on its way
//! holds no GIL or GVL and runs nothing.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::{JsonObject, Task, TaskResult};
use crate::backoff::Backoff;
use crate::client::ServerClient;
use crate::client::external::{Operation, PayloadType, Upload};
use crate::error::Error;

/// Downloads of one input are retried within this long, then the task fails.
const DOWNLOAD_BUDGET: Duration = Duration::from_secs(60);

/// Why a task's externalized input could not be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InputUnavailable {
    /// The location answer had no `uri`: the server's storage keeps payloads where workers
    /// cannot reach them (its default, "dummy" storage).
    #[error(
        "the server gave no download uri for it: its external payload storage (the default \
         'dummy' type) keeps large inputs where no worker can read them. Configure \
         conductor.external-payload-storage.type on the server (postgres, s3, azureblob or gcs), \
         or keep task inputs below conductor.app.taskInputPayloadSizeThreshold (3072 KB by default)"
    )]
    NoUri,
    /// The storage or the server refused, or every retry failed.
    #[error(
        "{0}. Check the server's external payload storage configuration and that this worker can reach it"
    )]
    Request(Error),
    /// Not a JSON object.
    #[error("the stored payload is not a JSON object: {0}")]
    NotAnObject(String),
}

impl InputUnavailable {
    /// The task's `reasonForIncompletion`: what happened to which path, and what to configure.
    pub(crate) fn reason(&self, path: &str) -> String {
        format!(
            "conductor-worker could not read this task's external payload input {path:?}: {self}"
        )
    }
}

/// A downloaded input: how big it was and how long it took, for the metrics.
pub(crate) struct Transfer {
    pub(crate) bytes: usize,
    pub(crate) duration: Duration,
}

/// Replaces the task's empty `input_data` with its externalized input. Transport errors, 5xx
/// and 429 are retried with `backoff` for up to a minute; anything else fails at once.
pub(crate) async fn download_input(
    server: &ServerClient,
    task: &mut Task,
    backoff: &Backoff,
) -> Result<Transfer, InputUnavailable> {
    let Some(path) = task.external_input_payload_storage_path.clone() else {
        return Ok(Transfer {
            bytes: 0,
            duration: Duration::ZERO,
        });
    };
    let started = Instant::now();
    let mut attempt = 0;
    let bytes = loop {
        match fetch_input(server, &path).await {
            Ok(bytes) => break bytes,
            Err(InputUnavailable::Request(e))
                if worth_retrying(&e) && started.elapsed() < DOWNLOAD_BUDGET =>
            {
                tracing::warn!(task_id = %task.task_id, path, attempt, error = %e, "external input download failed; retrying");
                tokio::time::sleep(backoff.delay(attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    task.input_data = serde_json::from_slice::<JsonObject>(&bytes)
        .map_err(|e| InputUnavailable::NotAnObject(e.to_string()))?;
    Ok(Transfer {
        bytes: bytes.len(),
        duration: started.elapsed(),
    })
}

/// Transport errors, 5xx, 408 and 429 may pass later; any other answer of a storage (an expired
/// presigned URL's 403, a 404) will not.
fn worth_retrying(e: &Error) -> bool {
    match e {
        Error::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
        _ => e.is_retryable(),
    }
}

async fn fetch_input(server: &ServerClient, path: &str) -> Result<Vec<u8>, InputUnavailable> {
    let location = server
        .storage_location(Operation::Read, PayloadType::TaskInput, path)
        .await
        .map_err(InputUnavailable::Request)?;
    let uri = location.uri.ok_or(InputUnavailable::NoUri)?;
    server
        .download_payload(&uri)
        .await
        .map_err(InputUnavailable::Request)
}

/// The size of `output`'s JSON, or `None` when it is more than `limit` bytes. Stops counting at
/// the limit, so a small output costs one short serialization and a large one no more than
/// `limit` bytes of it.
pub(crate) fn serialized_size(output: &JsonObject, limit: usize) -> Option<usize> {
    struct Counter {
        written: usize,
        limit: usize,
    }
    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written += buf.len();
            if self.written > self.limit {
                return Err(io::Error::other("over the limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { written: 0, limit };
    // Serializing a `Value` fails only through the writer.
    serde_json::to_writer(&mut counter, output)
        .is_ok()
        .then_some(counter.written)
}

/// Whether `output` serializes to more than `limit` bytes (an empty one never does).
pub(crate) fn exceeds(output: &JsonObject, limit: usize) -> bool {
    !output.is_empty() && serialized_size(output, limit).is_none()
}

/// The JSON of a large output in a buffer of exactly its size: growing one by doubling would
/// copy it several times and leave up to twice its size allocated.
fn to_json(output: &JsonObject) -> serde_json::Result<Vec<u8>> {
    struct Counter(usize);
    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut size = Counter(0);
    serde_json::to_writer(&mut size, output)?;
    let mut json = Vec::with_capacity(size.0);
    serde_json::to_writer(&mut json, output)?;
    Ok(json)
}

/// The result to send for `result`: as it is, or, when its output is above `threshold` bytes
/// and the server's storage takes uploads, with the output uploaded and its path set. A storage
/// that gives no upload `uri` or answers 405/501 is remembered, and the output goes inline.
/// Errors are the upload's (retried by the caller like a failed update).
pub(crate) async fn externalize_output(
    server: &ServerClient,
    result: &Arc<TaskResult>,
    threshold: usize,
) -> crate::Result<(Arc<TaskResult>, Option<Transfer>)> {
    if server.uploads_unsupported() || !exceeds(&result.output_data, threshold) {
        return Ok((Arc::clone(result), None));
    }
    let started = Instant::now();
    let location = server
        .storage_location(Operation::Write, PayloadType::TaskOutput, "")
        .await?;
    let Some(uri) = location.uri else {
        server.mark_uploads_unsupported("the WRITE location has no uri");
        return Ok((Arc::clone(result), None));
    };
    let json = to_json(&result.output_data).map_err(|e| Error::Decode {
        server: server.url().to_owned(),
        endpoint: "external payload upload",
        message: e.to_string(),
    })?;
    let bytes = json.len();
    match server.upload_payload(&uri, json).await? {
        Upload::Stored => {
            let sent = result.with_external_output(location.path);
            let transfer = Transfer {
                bytes,
                duration: started.elapsed(),
            };
            Ok((Arc::new(sent), Some(transfer)))
        }
        Upload::Unsupported(status) => {
            server.mark_uploads_unsupported(&format!("the upload uri answered {status}"));
            Ok((Arc::clone(result), None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: serde_json::Value) -> JsonObject {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn exceeds_counts_serialized_bytes() {
        let output = object(json!({"s": "x".repeat(100)}));
        let size = serde_json::to_vec(&output).unwrap().len();
        assert!(!exceeds(&output, size));
        assert!(exceeds(&output, size - 1));
        assert!(!exceeds(&JsonObject::new(), 0));
        assert_eq!(serialized_size(&output, size), Some(size));
        assert_eq!(serialized_size(&output, size - 1), None);
    }

    #[test]
    fn reasons_name_the_path_and_what_to_configure() {
        let reason = InputUnavailable::NoUri.reason("abc.json");
        assert!(
            reason.contains("external payload") && reason.contains("abc.json"),
            "{reason}"
        );
        assert!(
            reason.contains("conductor.external-payload-storage.type"),
            "{reason}"
        );
    }
}
