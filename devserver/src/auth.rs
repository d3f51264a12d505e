//! Orkes-style token auth: `POST /api/token` with a key id and secret, then `X-Authorization`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One application key accepted by `POST /api/token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub key_id: String,
    pub key_secret: String,
}

impl std::str::FromStr for ApiKey {
    type Err = String;

    /// Parses `KEY:SECRET`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok(ApiKey {
                key_id: k.to_string(),
                key_secret: v.to_string(),
            }),
            _ => Err(format!("expected KEY:SECRET, got {s:?}")),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No token, or one this server never issued: `INVALID_TOKEN`.
    Invalid,
    /// A token past its lifetime: `EXPIRED_TOKEN`.
    Expired,
}

/// Issued tokens and their expiry.
pub struct Auth {
    keys: Vec<ApiKey>,
    ttl_secs: AtomicU64,
    tokens: Mutex<HashMap<String, Instant>>,
}

impl Auth {
    pub fn new(keys: Vec<ApiKey>, ttl_secs: u64) -> Auth {
        Auth {
            keys,
            ttl_secs: AtomicU64::new(ttl_secs),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Whether auth is on at all (it is when at least one key is configured).
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Issues a token for valid credentials.
    pub fn issue(&self, key_id: &str, secret: &str) -> Option<String> {
        if !self
            .keys
            .iter()
            .any(|k| k.key_id == key_id && k.key_secret == secret)
        {
            return None;
        }
        let token = format!(
            "devtoken.{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        );
        let ttl = Duration::from_secs(self.ttl_secs.load(Ordering::Relaxed));
        self.lock().insert(token.clone(), Instant::now() + ttl);
        Some(token)
    }

    /// Checks the `X-Authorization` header value.
    pub fn check(&self, token: Option<&str>) -> Result<(), AuthError> {
        let token = token.ok_or(AuthError::Invalid)?;
        match self.lock().get(token) {
            None => Err(AuthError::Invalid),
            Some(exp) if *exp <= Instant::now() => Err(AuthError::Expired),
            Some(_) => Ok(()),
        }
    }

    /// Expires every token issued so far.
    pub fn expire_all(&self) {
        let now = Instant::now();
        for exp in self.lock().values_mut() {
            *exp = now;
        }
    }

    /// Changes the lifetime of tokens issued from now on.
    pub fn set_ttl(&self, secs: u64) {
        self.ttl_secs.store(secs, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_issue_check_and_expire() {
        let a = Auth::new(vec!["k:s".parse().unwrap()], 3600);
        assert!(a.enabled());
        assert_eq!(a.issue("k", "wrong"), None);
        let t = a.issue("k", "s").unwrap();
        assert_eq!(a.check(Some(&t)), Ok(()));
        assert_eq!(a.check(None), Err(AuthError::Invalid));
        assert_eq!(a.check(Some("nope")), Err(AuthError::Invalid));
        a.expire_all();
        assert_eq!(a.check(Some(&t)), Err(AuthError::Expired));
        a.set_ttl(0);
        let t2 = a.issue("k", "s").unwrap();
        assert_eq!(a.check(Some(&t2)), Err(AuthError::Expired));
    }

    #[test]
    fn key_parsing() {
        assert!("nocolon".parse::<ApiKey>().is_err());
        assert!(":s".parse::<ApiKey>().is_err());
        let k: ApiKey = "id:se:cret".parse().unwrap();
        assert_eq!(k.key_secret, "se:cret");
    }
}
