//! What the node publishes about its health, for `/healthz` and `/readyz`.
//!
//! Readiness is *based on* leadership, not equal to it: a replica is ready
//! when it is a member of every group's current configuration, every group
//! knows a live leader, and it has applied everything it knows to be
//! committed. (If only leaders were ready, rolling updates and node drains
//! would stall on the PodDisruptionBudget.)

use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One readiness check and its verdict.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// Why it fails (empty when it passes).
    pub detail: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq, Default)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Vec<Check>,
}

impl Readiness {
    pub fn from_checks(checks: Vec<Check>) -> Readiness {
        Readiness {
            ready: !checks.is_empty() && checks.iter().all(|c| c.ok),
            checks,
        }
    }

    /// The failing checks, one line each.
    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect()
    }
}

/// The time of the event loop's latest turn, shared with `/healthz`.
#[derive(Clone, Debug, Default)]
pub struct Heartbeat(Arc<AtomicU64>);

impl Heartbeat {
    pub fn beat(&self) {
        self.0.store(now_millis(), Ordering::Relaxed);
    }

    /// How long ago the loop last turned (`None`: it never did).
    pub fn age(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_millis(now_millis().saturating_sub(at))),
        }
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
