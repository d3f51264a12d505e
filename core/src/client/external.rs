//! External payload storage as a worker meets it: the server stores a payload above its size
//! threshold elsewhere and hands out a location (`GET /api/tasks/externalstoragelocation`), a
//! `uri` to download or upload the JSON and the `path` that names it in tasks and results.
//!
//! Credentials follow the origin: the server's token goes to a `uri` on the server's own origin
//! (its postgres storage serves payloads itself) and never to any other (a presigned S3, Azure
//! or GCS URL must not see it). The credentialed client follows redirects only within the
//! origin it was sent to; a redirect elsewhere is followed without credentials.

use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use serde::Deserialize;

use super::{Endpoint, ServerClient, error_text};
use crate::error::{Error, Result};

/// Read or write, as the location endpoint spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Download a stored payload.
    Read,
    /// Upload a new payload.
    Write,
}

impl Operation {
    /// `READ` or `WRITE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "READ",
            Self::Write => "WRITE",
        }
    }
}

/// Which payload a location is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadType {
    /// A task's input.
    TaskInput,
    /// A task's output.
    TaskOutput,
}

impl PayloadType {
    /// `TASK_INPUT` or `TASK_OUTPUT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskInput => "TASK_INPUT",
            Self::TaskOutput => "TASK_OUTPUT",
        }
    }
}

/// Where a payload is (READ) or goes (WRITE). The server's default storage answers without a
/// `uri`: it keeps payloads where no worker can reach them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StorageLocation {
    /// Where to `GET` or `PUT` the JSON.
    #[serde(default)]
    pub uri: Option<String>,
    /// The name of the payload in tasks and results.
    #[serde(default)]
    pub path: String,
}

/// What a storage said to an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// Stored.
    Stored,
    /// The storage does not take uploads (405 or 501: the server's postgres storage serves
    /// reads only); the output goes inline and the server stores it itself.
    Unsupported(u16),
}

/// Nothing a storage returns is allowed to be larger (the server's own hard limit is 10 MB by
/// default); a body beyond it is an error, not an allocation that takes the process down.
pub const MAX_PAYLOAD_BYTES: usize = 512 * 1024 * 1024;

const UPLOADS_UNKNOWN: u8 = 0;
const UPLOADS_UNSUPPORTED: u8 = 2;

impl ServerClient {
    /// Asks the server where a payload is (`Read`, with its `path`) or where to put a new one
    /// (`Write`, with an empty path).
    pub async fn storage_location(
        &self,
        operation: Operation,
        payload_type: PayloadType,
        path: &str,
    ) -> Result<StorageLocation> {
        const ENDPOINT: &str = "external storage location";
        let query = [
            ("path", path),
            ("operation", operation.as_str()),
            ("payloadType", payload_type.as_str()),
        ];
        let response = self
            .send(
                ENDPOINT,
                Method::GET,
                Endpoint::Path("/tasks/externalstoragelocation"),
                &query,
                None,
                self.request_timeout,
            )
            .await?;
        if !response.status().is_success() {
            return Err(self.status_error(ENDPOINT, response).await);
        }
        let body = self.read_body(response).await?;
        serde_json::from_slice(&body).map_err(|e| self.decode_error(ENDPOINT, e))
    }

    /// Downloads the payload at `uri` (the whole body; at most [`MAX_PAYLOAD_BYTES`]).
    pub async fn download_payload(&self, uri: &str) -> Result<Vec<u8>> {
        const ENDPOINT: &str = "external payload download";
        let response = self
            .storage_request(ENDPOINT, Method::GET, uri, None)
            .await?;
        if !response.status().is_success() {
            return Err(self.status_error(ENDPOINT, response).await);
        }
        self.read_capped(response).await
    }

    /// Uploads `json` to `uri` with `PUT`, as presigned upload URLs expect.
    pub async fn upload_payload(&self, uri: &str, json: Vec<u8>) -> Result<Upload> {
        const ENDPOINT: &str = "external payload upload";
        let response = self
            .storage_request(ENDPOINT, Method::PUT, uri, Some(json))
            .await?;
        match response.status() {
            s if s.is_success() => Ok(Upload::Stored),
            s @ (StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED) => {
                Ok(Upload::Unsupported(s.as_u16()))
            }
            _ => Err(self.status_error(ENDPOINT, response).await),
        }
    }

    /// Whether this server's storage was found to refuse uploads (then outputs go inline).
    pub fn uploads_unsupported(&self) -> bool {
        self.uploads.load(Ordering::Relaxed) == UPLOADS_UNSUPPORTED
    }

    /// Remembers that this server's storage refuses uploads, so no later result tries again.
    pub fn mark_uploads_unsupported(&self, why: &str) {
        if self.uploads.swap(UPLOADS_UNSUPPORTED, Ordering::Relaxed) == UPLOADS_UNKNOWN {
            tracing::info!(server = %self.url, why, "this server's external payload storage takes no uploads: large outputs go inline and the server stores them");
        }
    }

    /// A request to a storage `uri`: with the server's credentials on its own origin, without
    /// any elsewhere. A same-origin answer that redirects elsewhere is followed without them.
    async fn storage_request(
        &self,
        endpoint: &'static str,
        method: Method,
        uri: &str,
        json: Option<Vec<u8>>,
    ) -> Result<reqwest::Response> {
        let url = reqwest::Url::parse(uri).map_err(|e| {
            self.decode_error(
                endpoint,
                format!("the storage uri {uri:?} is not a URL: {e}"),
            )
        })?;
        let body = json.map(|bytes| ("application/json", bytes::Bytes::from(bytes)));
        let timeout = self.request_timeout;
        let response = if url.origin() == self.base.origin() {
            let response = self
                .send(
                    endpoint,
                    method.clone(),
                    Endpoint::Parsed(&url),
                    &[],
                    body.clone(),
                    timeout,
                )
                .await?;
            match redirect_target(&response) {
                Some(elsewhere) => {
                    self.anonymous(method, elsewhere, body, timeout, endpoint)
                        .await?
                }
                None => response,
            }
        } else {
            self.anonymous(method, url, body, timeout, endpoint).await?
        };
        Ok(response)
    }

    /// A request without any credentials, through the client that never carries them.
    async fn anonymous(
        &self,
        method: Method,
        url: reqwest::Url,
        body: Option<(&'static str, bytes::Bytes)>,
        timeout: Duration,
        endpoint: &'static str,
    ) -> Result<reqwest::Response> {
        let mut request = self.storage_http.request(method, url).timeout(timeout);
        if let Some((content_type, bytes)) = body {
            request = request
                .header(header::CONTENT_TYPE, content_type)
                .body(bytes);
        }
        request.send().await.map_err(|e| Error::Transport {
            server: format!("{} ({endpoint})", self.url),
            timed_out: e.is_timeout(),
            message: error_text(&e),
        })
    }

    async fn read_capped(&self, mut response: reqwest::Response) -> Result<Vec<u8>> {
        let too_large = || {
            self.decode_error(
                "external payload download",
                format!("the payload is larger than {MAX_PAYLOAD_BYTES} bytes"),
            )
        };
        let expected = response.content_length().unwrap_or(0) as usize;
        if expected > MAX_PAYLOAD_BYTES {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(expected);
        loop {
            let chunk = response.chunk().await.map_err(|e| Error::Transport {
                server: self.url.clone(),
                timed_out: e.is_timeout(),
                message: error_text(&e),
            })?;
            let Some(chunk) = chunk else {
                return Ok(body);
            };
            if body.len() + chunk.len() > MAX_PAYLOAD_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
    }
}

/// Where a redirect that the credentialed client refused to follow (another origin) points.
fn redirect_target(response: &reqwest::Response) -> Option<reqwest::Url> {
    if !response.status().is_redirection() {
        return None;
    }
    let location = response.headers().get(header::LOCATION)?.to_str().ok()?;
    response.url().join(location).ok()
}

/// The credentialed client's redirect policy: within the origin of the first request only, at
/// most 10 hops. A custom header such as `X-Authorization` is not one of the headers reqwest
/// strips on a cross-origin redirect, so such a redirect must not be followed with it.
pub(crate) fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(reqwest::Url::origin);
        if attempt.previous().len() > 10 {
            attempt.error("too many redirects")
        } else if first.is_some_and(|origin| origin != attempt.url().origin()) {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_answers_decode_with_and_without_uri() {
        let with: StorageLocation = serde_json::from_str(
            r#"{"uri":"http://h/api/external/postgres/a.json","path":"a.json"}"#,
        )
        .unwrap();
        assert_eq!(
            with.uri.as_deref(),
            Some("http://h/api/external/postgres/a.json")
        );
        let without: StorageLocation = serde_json::from_str(r#"{"path":"a.json"}"#).unwrap();
        assert_eq!((without.uri, without.path.as_str()), (None, "a.json"));
    }

    #[test]
    fn names_are_the_servers() {
        assert_eq!(Operation::Write.as_str(), "WRITE");
        assert_eq!(PayloadType::TaskInput.as_str(), "TASK_INPUT");
    }
}
