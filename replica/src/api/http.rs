//! The replica's HTTP endpoints, on their own port:
//! - `/metrics`: Prometheus text format;
//! - `/healthz`: the event loop is turning (liveness);
//! - `/readyz`: the readiness verdict (`?verbose` lists every check);
//! - `/status`: the node's status as JSON.

use crate::metrics::Metrics;
use crate::node::health::{Heartbeat, Readiness};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Metrics,
    pub heartbeat: Heartbeat,
    /// The loop is considered stalled if it has not turned for this long.
    pub stall_after: Duration,
    pub readiness: watch::Receiver<Readiness>,
    pub status: watch::Receiver<serde_json::Value>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .with_state(state)
}

async fn metrics(State(s): State<HttpState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(s): State<HttpState>) -> Response {
    match s.heartbeat.age() {
        Some(age) if age <= s.stall_after => (StatusCode::OK, "ok\n").into_response(),
        Some(age) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("event loop stalled: last turn {} ms ago\n", age.as_millis()),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "event loop not started\n").into_response(),
    }
}

async fn readyz(State(s): State<HttpState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let readiness = s.readiness.borrow().clone();
    let code = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = String::new();
    if q.contains_key("verbose") {
        for c in &readiness.checks {
            let verdict = if c.ok { "ok" } else { "failed" };
            body.push_str(&format!("[{verdict}] {}", c.name));
            if !c.ok {
                body.push_str(&format!(": {}", c.detail));
            }
            body.push('\n');
        }
    } else if !readiness.ready {
        for failure in readiness.failures() {
            body.push_str(&failure);
            body.push('\n');
        }
    }
    body.push_str(if readiness.ready {
        "ready\n"
    } else {
        "not ready\n"
    });
    (code, body).into_response()
}

async fn status(State(s): State<HttpState>) -> Response {
    let value = s.status.borrow().clone();
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string_pretty(&value).unwrap_or_default(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::health::Check;

    async fn get_text(router: Router, uri: &str) -> (StatusCode, String) {
        use tower::ServiceExt;
        let req = axum::http::Request::get(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = router.oneshot(req).await.unwrap();
        let code = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (code, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn endpoints_report_what_the_node_published() {
        let heartbeat = Heartbeat::default();
        let (ready_tx, readiness) = watch::channel(Readiness::default());
        let (_status_tx, status) = watch::channel(serde_json::json!({"node": 1}));
        let metrics = Metrics::new();
        metrics.term.with_label_values(&["0"]).set(3);
        let router = router(HttpState {
            metrics,
            heartbeat: heartbeat.clone(),
            stall_after: Duration::from_secs(5),
            readiness,
            status,
        });
        assert_eq!(
            get_text(router.clone(), "/healthz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        heartbeat.beat();
        assert_eq!(get_text(router.clone(), "/healthz").await.0, StatusCode::OK);

        ready_tx
            .send(Readiness::from_checks(vec![
                Check {
                    name: "member",
                    ok: true,
                    detail: String::new(),
                },
                Check {
                    name: "leader",
                    ok: false,
                    detail: "group 3 has no leader".into(),
                },
            ]))
            .unwrap();
        let (code, body) = get_text(router.clone(), "/readyz?verbose").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("[ok] member"), "{body}");
        assert!(
            body.contains("[failed] leader: group 3 has no leader"),
            "{body}"
        );

        let (code, body) = get_text(router.clone(), "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("raft_term{group=\"0\"} 3"));
        let (_, body) = get_text(router, "/status").await;
        assert!(body.contains("\"node\": 1"));
    }
}
