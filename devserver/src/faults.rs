//! Fault injection: what the server does wrong on purpose, and the per-request decision.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

/// The endpoint groups faults are configured for. `All` applies to every `/api` request whose own
/// group has no rate set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Poll,
    Update,
    Log,
    Task,
    Metadata,
    Workflow,
    Token,
    /// External payload storage: the location endpoint and `/api/external/{key}`.
    External,
    /// Requests outside the named groups (health, unknown routes): only `all` applies.
    Other,
}

/// Group names accepted in `GROUP=RATE` and in the JSON maps.
pub const GROUP_NAMES: [&str; 9] = [
    "poll", "update", "log", "task", "metadata", "workflow", "token", "external", "all",
];

impl Group {
    fn slot(self) -> usize {
        match self {
            Group::Poll => 0,
            Group::Update => 1,
            Group::Log => 2,
            Group::Task => 3,
            Group::Metadata => 4,
            Group::Workflow => 5,
            Group::Token => 6,
            Group::External => 7,
            Group::Other => 9,
        }
    }
}

const ALL_SLOT: usize = 8;
/// One slot per group name, plus `Other`.
const SLOTS: usize = 10;

fn slot_of(name: &str) -> Option<usize> {
    GROUP_NAMES.iter().position(|g| *g == name)
}

/// The fault configuration, in the JSON shape of `GET /admin/faults`.
///
/// ```
/// use conductor_devserver::Faults;
/// let mut f = Faults::default();
/// f.fail_rate.insert("update".into(), 0.5);
/// f.latency_ms = 20;
/// assert!(f.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Added before every non-admin request is handled.
    pub latency_ms: u64,
    /// GROUP -> probability of a 500 `ErrorResponse` with `retryable: true`.
    pub fail_rate: BTreeMap<String, f64>,
    /// GROUP -> probability that the connection is closed without any answer.
    pub drop_rate: BTreeMap<String, f64>,
    /// GROUP -> probability of a 200 whose body is truncated JSON.
    pub malformed_rate: BTreeMap<String, f64>,
    /// GROUP -> probability that the request is handled (an update applied, a poll's tasks
    /// handed out) and then the connection is closed without an answer: the client cannot
    /// tell this from `drop_rate`, where nothing was applied.
    pub reset_after_rate: BTreeMap<String, f64>,
    /// Connections are accepted but no request is answered until this is false again.
    pub paused: bool,
    /// When false, `POST /api/tasks/update-v2` answers like a server older than 3.21.12.
    pub update_v2: bool,
    /// The status of that missing route: 404 or 405.
    pub update_v2_missing_status: u16,
    /// A batch poll with `timeout > 0` waits until it has `count` tasks or the timeout passed,
    /// as the real server's SQLite and Postgres queues do; when false it answers as soon as one
    /// task is ready.
    pub batch_poll_waits_for_count: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            fail_rate: BTreeMap::new(),
            drop_rate: BTreeMap::new(),
            malformed_rate: BTreeMap::new(),
            reset_after_rate: BTreeMap::new(),
            paused: false,
            update_v2: true,
            update_v2_missing_status: 404,
            batch_poll_waits_for_count: false,
        }
    }
}

/// Why a fault configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FaultError {
    #[error("unknown fault group {0:?} (expected one of {groups})", groups = GROUP_NAMES.join(", "))]
    UnknownGroup(String),
    #[error("rate {rate} for group {group:?} is outside 0.0..=1.0")]
    BadRate { group: String, rate: f64 },
    #[error("update_v2_missing_status must be 404 or 405, not {0}")]
    BadMissingStatus(u16),
    #[error("invalid fault JSON: {0}")]
    BadJson(String),
}

impl Faults {
    /// Checks group names, rates and the missing-route status.
    pub fn validate(&self) -> Result<(), FaultError> {
        for map in [
            &self.fail_rate,
            &self.drop_rate,
            &self.malformed_rate,
            &self.reset_after_rate,
        ] {
            for (g, r) in map {
                if slot_of(g).is_none() {
                    return Err(FaultError::UnknownGroup(g.clone()));
                }
                if !(0.0..=1.0).contains(r) {
                    return Err(FaultError::BadRate {
                        group: g.clone(),
                        rate: *r,
                    });
                }
            }
        }
        if !matches!(self.update_v2_missing_status, 404 | 405) {
            return Err(FaultError::BadMissingStatus(self.update_v2_missing_status));
        }
        Ok(())
    }

    /// Merges a partial JSON object into these faults: scalar fields are replaced, rate maps are
    /// merged group by group (set a rate to 0 to clear it).
    pub fn merge_json(&self, patch: &Value) -> Result<Faults, FaultError> {
        let obj = patch
            .as_object()
            .ok_or_else(|| FaultError::BadJson("expected a JSON object".into()))?;
        let mut out = self.clone();
        for (k, v) in obj {
            let bad = |e: &dyn std::fmt::Display| FaultError::BadJson(format!("{k}: {e}"));
            match k.as_str() {
                "latency_ms" => {
                    out.latency_ms = serde_json::from_value(v.clone()).map_err(|e| bad(&e))?
                }
                "paused" => out.paused = serde_json::from_value(v.clone()).map_err(|e| bad(&e))?,
                "update_v2" => {
                    out.update_v2 = serde_json::from_value(v.clone()).map_err(|e| bad(&e))?
                }
                "batch_poll_waits_for_count" => {
                    out.batch_poll_waits_for_count =
                        serde_json::from_value(v.clone()).map_err(|e| bad(&e))?
                }
                "update_v2_missing_status" => {
                    out.update_v2_missing_status =
                        serde_json::from_value(v.clone()).map_err(|e| bad(&e))?
                }
                "fail_rate" | "drop_rate" | "malformed_rate" | "reset_after_rate" => {
                    let m: BTreeMap<String, f64> =
                        serde_json::from_value(v.clone()).map_err(|e| bad(&e))?;
                    let target = match k.as_str() {
                        "fail_rate" => &mut out.fail_rate,
                        "drop_rate" => &mut out.drop_rate,
                        "reset_after_rate" => &mut out.reset_after_rate,
                        _ => &mut out.malformed_rate,
                    };
                    target.extend(m);
                }
                other => return Err(FaultError::BadJson(format!("unknown field {other:?}"))),
            }
        }
        out.validate()?;
        Ok(out)
    }

    fn compile(&self) -> Compiled {
        fn rates(m: &BTreeMap<String, f64>) -> [f64; SLOTS] {
            let mut r = [f64::NAN; SLOTS];
            for (g, v) in m {
                if let Some(s) = slot_of(g) {
                    r[s] = v.clamp(0.0, 1.0);
                }
            }
            r
        }
        Compiled {
            latency_ms: self.latency_ms,
            fail: rates(&self.fail_rate),
            drop: rates(&self.drop_rate),
            malformed: rates(&self.malformed_rate),
            reset_after: rates(&self.reset_after_rate),
            update_v2: self.update_v2,
            missing_status: self.update_v2_missing_status,
        }
    }
}

/// `NAN` marks "not set for this group", so that `all` applies.
#[derive(Debug, Clone)]
struct Compiled {
    latency_ms: u64,
    fail: [f64; SLOTS],
    drop: [f64; SLOTS],
    malformed: [f64; SLOTS],
    reset_after: [f64; SLOTS],
    update_v2: bool,
    missing_status: u16,
}

fn rate(r: &[f64; SLOTS], g: Group) -> f64 {
    let own = r[g.slot()];
    if own.is_nan() {
        let all = r[ALL_SLOT];
        if all.is_nan() { 0.0 } else { all }
    } else {
        own
    }
}

fn roll(p: f64) -> bool {
    p > 0.0 && fastrand::f64() < p
}

/// The faults one request gets, decided before it is handled.
#[derive(Debug, Default, Clone, Copy)]
pub struct Decision {
    pub latency_ms: u64,
    pub drop: bool,
    pub fail: bool,
    pub malformed: bool,
    /// Handle the request, then close the connection without answering.
    pub reset_after: bool,
}

/// The live fault state shared by all connections.
pub struct FaultState {
    /// Lets the hot path skip the lock when nothing is configured.
    active: AtomicBool,
    /// Read by every batch poll, so kept out of the lock.
    waits_for_count: AtomicBool,
    config: RwLock<(Faults, Compiled)>,
    paused: watch::Sender<bool>,
}

impl FaultState {
    pub fn new(f: Faults) -> FaultState {
        let c = f.compile();
        let st = FaultState {
            active: AtomicBool::new(false),
            waits_for_count: AtomicBool::new(false),
            config: RwLock::new((f.clone(), c)),
            paused: watch::Sender::new(f.paused),
        };
        st.set(f);
        st
    }

    /// The current configuration.
    pub fn get(&self) -> Faults {
        let g = self.config.read().unwrap_or_else(|e| e.into_inner());
        let mut f = g.0.clone();
        f.paused = *self.paused.borrow();
        f
    }

    /// Replaces the configuration (rates are clamped to 0..=1, unknown groups ignored).
    pub fn set(&self, f: Faults) {
        let c = f.compile();
        let active = c.latency_ms > 0
            || !c.update_v2
            || [&c.fail, &c.drop, &c.malformed, &c.reset_after]
                .iter()
                .any(|r| r.iter().any(|x| !x.is_nan() && *x > 0.0));
        self.paused.send_replace(f.paused);
        self.waits_for_count
            .store(f.batch_poll_waits_for_count, Ordering::Release);
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = (f, c);
        self.active.store(active, Ordering::Release);
    }

    /// Pauses or resumes answering.
    pub fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
        self.config
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .paused = paused;
    }

    /// Waits until the server is not paused.
    pub async fn wait_unpaused(&self) {
        let mut rx = self.paused.subscribe();
        // An error means the sender is gone, i.e. the server is shutting down: answer then.
        let _ = rx.wait_for(|p| !*p).await;
    }

    /// Whether batch polls wait for `count` tasks (`batch_poll_waits_for_count`).
    pub fn batch_poll_waits_for_count(&self) -> bool {
        self.waits_for_count.load(Ordering::Acquire)
    }

    /// Whether update-v2 exists, and the status to answer when it does not.
    pub fn update_v2(&self) -> (bool, u16) {
        if !self.active.load(Ordering::Acquire) {
            return (true, 404);
        }
        let g = self.config.read().unwrap_or_else(|e| e.into_inner());
        (g.1.update_v2, g.1.missing_status)
    }

    /// Rolls the dice for one request of `group`.
    pub fn decide(&self, group: Group) -> Decision {
        if !self.active.load(Ordering::Acquire) {
            return Decision::default();
        }
        let g = self.config.read().unwrap_or_else(|e| e.into_inner());
        let c = &g.1;
        Decision {
            latency_ms: c.latency_ms,
            drop: roll(rate(&c.drop, group)),
            fail: roll(rate(&c.fail, group)),
            malformed: roll(rate(&c.malformed, group)),
            reset_after: roll(rate(&c.reset_after, group)),
        }
    }
}

/// Parses a CLI `GROUP=RATE` pair.
pub fn parse_group_rate(s: &str) -> Result<(String, f64), String> {
    let (g, r) = s
        .split_once('=')
        .ok_or_else(|| format!("expected GROUP=RATE, got {s:?}"))?;
    let g = g.trim();
    if slot_of(g).is_none() {
        return Err(format!(
            "unknown group {g:?} (expected one of {})",
            GROUP_NAMES.join(", ")
        ));
    }
    let rate: f64 = r
        .trim()
        .parse()
        .map_err(|_| format!("rate {r:?} is not a number"))?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!("rate {rate} is outside 0.0..=1.0"));
    }
    Ok((g.to_string(), rate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn own_group_rate_wins_over_all() {
        let mut f = Faults::default();
        f.fail_rate.insert("all".into(), 1.0);
        f.fail_rate.insert("poll".into(), 0.0);
        let st = FaultState::new(f);
        assert!(!st.decide(Group::Poll).fail);
        assert!(st.decide(Group::Update).fail);
        assert!(st.decide(Group::Other).fail);
        assert!(st.decide(Group::External).fail);
        let mut f = Faults::default();
        f.fail_rate.insert("external".into(), 1.0);
        let st = FaultState::new(f);
        assert!(st.decide(Group::External).fail);
        assert!(!st.decide(Group::Poll).fail);
    }

    #[test]
    fn nothing_configured_means_no_faults() {
        let st = FaultState::new(Faults::default());
        let d = st.decide(Group::Update);
        assert!(!d.fail && !d.drop && !d.malformed && !d.reset_after && d.latency_ms == 0);
        assert_eq!(st.update_v2(), (true, 404));
    }

    #[test]
    fn merge_keeps_other_groups_and_validates() {
        let mut f = Faults::default();
        f.fail_rate.insert("poll".into(), 0.2);
        let m = f
            .merge_json(&json!({"fail_rate": {"update": 0.5}, "latency_ms": 3}))
            .unwrap();
        assert_eq!(m.fail_rate.get("poll"), Some(&0.2));
        assert_eq!(m.fail_rate.get("update"), Some(&0.5));
        assert_eq!(m.latency_ms, 3);
        let r = f
            .merge_json(&json!({"reset_after_rate": {"update": 1.0}}))
            .unwrap();
        assert_eq!(r.reset_after_rate.get("update"), Some(&1.0));
        assert!(FaultState::new(r).decide(Group::Update).reset_after);
        assert!(matches!(
            f.merge_json(&json!({"reset_after_rate": {"update": -0.1}})),
            Err(FaultError::BadRate { .. })
        ));
        assert!(matches!(
            f.merge_json(&json!({"drop_rate": {"nope": 0.5}})),
            Err(FaultError::UnknownGroup(_))
        ));
        assert!(matches!(
            f.merge_json(&json!({"drop_rate": {"poll": 1.5}})),
            Err(FaultError::BadRate { .. })
        ));
        assert!(
            f.merge_json(&json!({"update_v2_missing_status": 500}))
                .is_err()
        );
        assert!(f.merge_json(&json!({"bogus": 1})).is_err());
        let w = f
            .merge_json(&json!({"batch_poll_waits_for_count": true}))
            .unwrap();
        assert!(w.batch_poll_waits_for_count);
        assert!(FaultState::new(w).batch_poll_waits_for_count());
        assert!(!FaultState::new(f.clone()).batch_poll_waits_for_count());
        assert!(
            f.merge_json(&json!({"batch_poll_waits_for_count": "yes"}))
                .is_err()
        );
    }

    #[test]
    fn group_rate_parsing_names_the_problem() {
        assert_eq!(parse_group_rate("update=0.5"), Ok(("update".into(), 0.5)));
        assert!(
            parse_group_rate("update")
                .unwrap_err()
                .contains("GROUP=RATE")
        );
        assert!(
            parse_group_rate("x=0.5")
                .unwrap_err()
                .contains("unknown group")
        );
        assert!(parse_group_rate("poll=2").unwrap_err().contains("outside"));
        assert!(
            parse_group_rate("poll=abc")
                .unwrap_err()
                .contains("not a number")
        );
    }
}
