//! Several servers at once: one client and one circuit breaker per server, and the split of a
//! worker's free capacity across the servers whose breaker is not open.
//!
//! The breaker of a server is shared by every worker polling it (a server that is down is down
//! for every task type):
//!
//! - **closed**: polls go out; `failure_threshold` failed polls in a row open it;
//! - **open**: no polls until `reset_after` has passed, then half-open;
//! - **half-open**: one probe poll (of any worker) decides: success closes the breaker, failure
//!   opens it again.
//!
//! Any successful poll, empty or not, counts as a success. A runtime with a single server has
//! no breaker (there is no other server to poll meanwhile).

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::{ServerClient, ServerId};
use crate::config::RuntimeOptions;
use crate::error::Result;
pub use crate::state::CircuitState;
use crate::telemetry::{Event, EventBus};

/// May a poll go out now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Yes.
    Poll,
    /// Yes, as the half-open probe: report its outcome.
    Probe,
    /// No: try again after this long.
    Wait(Duration),
}

#[derive(Debug)]
enum BreakerState {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// One server's circuit breaker.
#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    reset_after: Duration,
    state: Mutex<BreakerState>,
    /// The public state, readable without the lock (for the capacity split and metrics).
    public: AtomicU8,
    transitions: AtomicU64,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` failures in a row and probes after
    /// `reset_after`.
    pub fn new(threshold: u32, reset_after: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            reset_after,
            state: Mutex::new(BreakerState::Closed { failures: 0 }),
            public: AtomicU8::new(0),
            transitions: AtomicU64::new(0),
        }
    }

    /// The current state.
    pub fn state(&self) -> CircuitState {
        match self.public.load(Ordering::Acquire) {
            0 => CircuitState::Closed,
            1 => CircuitState::Open,
            _ => CircuitState::HalfOpen,
        }
    }

    /// How many times the state changed.
    pub fn transitions(&self) -> u64 {
        self.transitions.load(Ordering::Relaxed)
    }

    fn set(&self, state: &mut BreakerState, new: BreakerState) -> Option<CircuitState> {
        *state = new;
        let public = match state {
            BreakerState::Closed { .. } => CircuitState::Closed,
            BreakerState::Open { .. } => CircuitState::Open,
            BreakerState::HalfOpen { .. } => CircuitState::HalfOpen,
        };
        let code = match public {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
        };
        if self.public.swap(code, Ordering::AcqRel) != code {
            self.transitions.fetch_add(1, Ordering::Relaxed);
            Some(public)
        } else {
            None
        }
    }

    /// Whether a poll may go out now; the second value is a state change to report.
    pub(crate) fn admit(&self, now: Instant) -> (Admission, Option<CircuitState>) {
        let Ok(mut state) = self.state.lock() else {
            return (Admission::Poll, None);
        };
        match *state {
            BreakerState::Closed { .. } => (Admission::Poll, None),
            BreakerState::Open { until } if now < until => (Admission::Wait(until - now), None),
            BreakerState::Open { .. } => {
                let changed = self.set(&mut state, BreakerState::HalfOpen { probing: true });
                (Admission::Probe, changed)
            }
            BreakerState::HalfOpen { probing: true } => {
                (Admission::Wait(Duration::from_millis(100)), None)
            }
            BreakerState::HalfOpen { probing: false } => {
                *state = BreakerState::HalfOpen { probing: true };
                (Admission::Probe, None)
            }
        }
    }

    /// A poll succeeded (empty or not).
    pub(crate) fn on_success(&self) -> Option<CircuitState> {
        let Ok(mut state) = self.state.lock() else {
            return None;
        };
        match *state {
            BreakerState::Closed { failures: 0 } => None,
            _ => self.set(&mut state, BreakerState::Closed { failures: 0 }),
        }
    }

    /// A poll failed.
    pub(crate) fn on_failure(&self, now: Instant) -> Option<CircuitState> {
        let Ok(mut state) = self.state.lock() else {
            return None;
        };
        match *state {
            BreakerState::Closed { failures } if failures + 1 < self.threshold => {
                *state = BreakerState::Closed {
                    failures: failures + 1,
                };
                None
            }
            BreakerState::Open { .. } => None,
            _ => self.set(
                &mut state,
                BreakerState::Open {
                    until: now + self.reset_after,
                },
            ),
        }
    }

    /// A probe ended without an answer either way (its poll was abandoned): let another try.
    pub(crate) fn on_probe_abandoned(&self) {
        if let Ok(mut state) = self.state.lock()
            && let BreakerState::HalfOpen { probing: true } = *state
        {
            *state = BreakerState::HalfOpen { probing: false };
        }
    }
}

/// One server of the cluster.
#[derive(Debug)]
pub struct Member {
    /// Its client.
    pub client: Arc<ServerClient>,
    /// Its breaker.
    pub breaker: Breaker,
}

/// The servers of a runtime, in configuration order ([`ServerId`] indexes them).
#[derive(Debug)]
pub struct Cluster {
    members: Vec<Member>,
}

impl Cluster {
    pub(crate) fn new(options: &RuntimeOptions) -> Result<Self> {
        // With one server there is nothing to route around: its breaker never opens, and the
        // poll error backoff alone paces retries (an open breaker would only delay recovery).
        let threshold = if options.servers.len() > 1 {
            options.breaker_failures
        } else {
            u32::MAX
        };
        let members = options
            .servers
            .iter()
            .enumerate()
            .map(|(i, config)| {
                Ok(Member {
                    client: Arc::new(ServerClient::new(ServerId(i), config, options)?),
                    breaker: Breaker::new(threshold, options.breaker_reset),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { members })
    }

    /// The server `id`.
    pub fn member(&self, id: ServerId) -> Option<&Member> {
        self.members.get(id.0)
    }

    /// The client of server `id`.
    pub fn client(&self, id: ServerId) -> Option<&Arc<ServerClient>> {
        self.members.get(id.0).map(|m| &m.client)
    }

    /// All servers.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no servers (never, for a runtime).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub(crate) fn report(&self, events: &EventBus, id: ServerId, change: Option<CircuitState>) {
        let Some(state) = change else { return };
        let url = self
            .client(id)
            .map(|c| c.url().to_owned())
            .unwrap_or_default();
        match state {
            CircuitState::Open => {
                tracing::warn!(server = %url, "circuit breaker open: not polling this server for now")
            }
            CircuitState::HalfOpen => {
                tracing::info!(server = %url, "circuit breaker half-open: probing")
            }
            CircuitState::Closed => {
                tracing::info!(server = %url, "circuit breaker closed: polling again")
            }
        }
        events.emit(Event::CircuitStateChanged {
            server: id,
            url,
            state,
        });
    }
}

/// Splits `free` across `active` server indexes for server `me`; the remainder rotates.
pub(crate) fn split(free: usize, active: &[usize], me: usize, turn: u64) -> usize {
    let n = active.len().max(1);
    let Some(position) = active.iter().position(|&i| i == me) else {
        return 0;
    };
    let base = free / n;
    let remainder = free % n;
    let first = (turn % n as u64) as usize;
    let offset = (position + n - first) % n;
    base + usize::from(offset < remainder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_probes_after_reset_and_closes_on_success() {
        let b = Breaker::new(3, Duration::from_secs(30));
        let t0 = Instant::now();
        assert_eq!(b.on_failure(t0), None);
        assert_eq!(b.on_failure(t0), None);
        assert_eq!(b.on_success(), None, "a success resets the count");
        assert_eq!(b.on_failure(t0), None);
        assert_eq!(b.on_failure(t0), None);
        assert_eq!(b.on_failure(t0), Some(CircuitState::Open));
        assert!(matches!(
            b.admit(t0 + Duration::from_secs(29)).0,
            Admission::Wait(_)
        ));
        let (admission, change) = b.admit(t0 + Duration::from_secs(30));
        assert_eq!(
            (admission, change),
            (Admission::Probe, Some(CircuitState::HalfOpen))
        );
        // Only one probe at a time.
        assert!(matches!(
            b.admit(t0 + Duration::from_secs(30)).0,
            Admission::Wait(_)
        ));
        assert_eq!(
            b.on_failure(t0 + Duration::from_secs(31)),
            Some(CircuitState::Open)
        );
        let (admission, _) = b.admit(t0 + Duration::from_secs(61));
        assert_eq!(admission, Admission::Probe);
        assert_eq!(b.on_success(), Some(CircuitState::Closed));
        assert_eq!(b.admit(t0).0, Admission::Poll);
        assert_eq!(b.transitions(), 5);
    }

    #[test]
    fn an_abandoned_probe_lets_another_probe() {
        let b = Breaker::new(1, Duration::ZERO);
        let t0 = Instant::now();
        b.on_failure(t0);
        assert_eq!(b.admit(t0).0, Admission::Probe);
        b.on_probe_abandoned();
        assert_eq!(b.admit(t0).0, Admission::Probe);
    }

    #[test]
    fn split_is_even_and_the_remainder_rotates() {
        let active = [0, 1, 2];
        for free in 0..50 {
            for turn in 0..6 {
                let shares: Vec<usize> = active
                    .iter()
                    .map(|&me| split(free, &active, me, turn))
                    .collect();
                assert_eq!(
                    shares.iter().sum::<usize>(),
                    free,
                    "free {free} turn {turn}: {shares:?}"
                );
                let (min, max) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                assert!(max - min <= 1);
            }
        }
        // One slot, three servers: each server gets it in turn.
        let winners: Vec<usize> = (0..6)
            .map(|turn| {
                active
                    .iter()
                    .position(|&me| split(1, &active, me, turn) == 1)
                    .unwrap()
            })
            .collect();
        assert_eq!(winners, vec![0, 1, 2, 0, 1, 2]);
        // A server not in the active set gets nothing.
        assert_eq!(split(10, &[0, 2], 1, 0), 0);
    }
}
