//! Orkes-style token authentication for one server: `POST /api/token` with a key and secret,
//! the token sent as `X-Authorization`, refreshed before it expires and whenever the server
//! calls it expired or invalid. A 404 on `/api/token` means the server has no auth (OSS).

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use super::error_text;
use crate::backoff::Backoff;
use crate::config::Credentials;
use crate::error::{Error, Result};

/// Token state of one server. The mutex is held while a token is minted, so concurrent
/// requests wait for one mint instead of each minting their own.
pub(crate) struct TokenManager {
    credentials: Credentials,
    backoff: Backoff,
    refresh_interval: Duration,
    state: Mutex<TokenState>,
}

#[derive(Default)]
struct TokenState {
    token: Option<(String, Instant)>,
    server_has_no_auth: bool,
    failures: u32,
    retry_at: Option<Instant>,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: String,
}

impl TokenManager {
    pub(crate) fn new(
        credentials: Credentials,
        backoff: Backoff,
        refresh_interval: Duration,
    ) -> Self {
        Self {
            credentials,
            backoff,
            refresh_interval,
            state: Mutex::new(TokenState::default()),
        }
    }

    /// A valid token, minting one if needed; `None` when the server has no auth.
    pub(crate) async fn token(
        &self,
        http: &reqwest::Client,
        server: &str,
        timeout: Duration,
    ) -> Result<Option<String>> {
        let mut state = self.state.lock().await;
        if state.server_has_no_auth {
            return Ok(None);
        }
        let now = Instant::now();
        if let Some((token, refresh_at)) = &state.token
            && now < *refresh_at
        {
            return Ok(Some(token.clone()));
        }
        if let Some(retry_at) = state.retry_at.filter(|at| now < *at) {
            return Err(Error::Auth {
                server: server.to_owned(),
                message: "waiting before the next token request after a failure".into(),
                retry_in: retry_at - now,
            });
        }
        match self.mint(http, server, timeout).await {
            Ok(Some(token)) => {
                let lifetime = jwt_lifetime(&token).unwrap_or(self.refresh_interval);
                // Refresh at 80 % of the lifetime, so a token never expires in flight.
                let refresh_at = now + lifetime.mul_f64(0.8).min(self.refresh_interval);
                state.token = Some((token.clone(), refresh_at));
                state.failures = 0;
                state.retry_at = None;
                Ok(Some(token))
            }
            Ok(None) => {
                tracing::info!(
                    server,
                    "the server has no /api/token endpoint: running without auth"
                );
                state.server_has_no_auth = true;
                Ok(None)
            }
            Err(message) => {
                let retry_in = self.backoff.delay(state.failures);
                state.failures = state.failures.saturating_add(1);
                state.retry_at = Some(now + retry_in);
                state.token = None;
                Err(Error::Auth {
                    server: server.to_owned(),
                    message,
                    retry_in,
                })
            }
        }
    }

    /// Forgets `token` after the server rejected it, unless another request already replaced it.
    pub(crate) async fn invalidate(&self, token: &str) {
        let mut state = self.state.lock().await;
        if state.token.as_ref().is_some_and(|(t, _)| t == token) {
            state.token = None;
        }
    }

    async fn mint(
        &self,
        http: &reqwest::Client,
        server: &str,
        timeout: Duration,
    ) -> Result<Option<String>, String> {
        let body = serde_json::json!({
            "keyId": self.credentials.key_id,
            "keySecret": self.credentials.key_secret.expose(),
        });
        let response = http
            .post(format!("{server}/token"))
            .json(&body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("token request failed: {}", error_text(&e)))?;
        let status = response.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            // The body is not shown: an auth server may echo the request.
            return Err(format!(
                "token request answered {status} (check the key id and secret)"
            ));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("token response: {}", error_text(&e)))?;
        let parsed: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|_| "token response is not {\"token\": \"...\"}".to_owned())?;
        if parsed.token.is_empty() {
            return Err("the server returned an empty token".into());
        }
        Ok(Some(parsed.token))
    }
}

/// The remaining lifetime of a JWT, read from its `exp` claim (without verifying it: the
/// server does that). `None` for opaque tokens.
fn jwt_lifetime(token: &str) -> Option<Duration> {
    #[derive(Deserialize)]
    struct Claims {
        exp: u64,
    }
    let payload = token.split('.').nth(1)?;
    let claims: Claims = serde_json::from_slice(&base64url_decode(payload)?).ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(claims.exp.saturating_sub(now)))
}

fn base64url_decode(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in input.bytes().take_while(|&c| c != b'=') {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_lifetime_of_a_jwt() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = format!(r#"{{"sub":"x","exp":{}}}"#, now + 300);
        let encoded = base64url_encode(claims.as_bytes());
        let lifetime = jwt_lifetime(&format!("e30.{encoded}.sig")).unwrap();
        assert!(lifetime <= Duration::from_secs(300) && lifetime >= Duration::from_secs(298));
        assert_eq!(jwt_lifetime("opaque-token"), None);
        assert_eq!(jwt_lifetime("a.!!!.c"), None);
    }

    fn base64url_encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}
