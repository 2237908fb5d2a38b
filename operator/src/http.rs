//! The operator's HTTP endpoints: `/metrics` (Prometheus text), `/healthz`
//! (the process and its lease loop are alive), `/readyz` (same; a standby
//! is ready too: it is waiting for the lease, as it should).

use crate::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Shared with the lease loop, which beats the heart on every round.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Metrics,
    /// Unix seconds of the lease loop's last round.
    pub heartbeat: Arc<AtomicU64>,
    /// `/healthz` fails when the heartbeat is older than this.
    pub stall_after: Duration,
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn metrics(State(state): State<HttpState>) -> String {
    state.metrics.render()
}

async fn healthz(State(state): State<HttpState>) -> (StatusCode, String) {
    let age = now_secs().saturating_sub(state.heartbeat.load(Ordering::Relaxed));
    if age > state.stall_after.as_secs() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the lease loop has not run for {age}s\n"),
        )
    } else {
        (StatusCode::OK, "ok\n".to_string())
    }
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(healthz))
        .with_state(state)
}
