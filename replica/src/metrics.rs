//! The replica's Prometheus metrics: one registry, every family defined
//! here so the names (and the dashboards and alerts built on them) have one
//! source of truth.
//!
//! Naming follows Prometheus conventions: a `raft_` prefix, base units in
//! the name (`_seconds`, `_bytes`), `_total` for counters. Per-group series
//! carry a `group` label; histograms do not (64 groups times a histogram's
//! buckets would be too many series), except where noted.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets from 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    // --- per group ---
    pub term: IntGaugeVec,
    pub is_leader: IntGaugeVec,
    pub has_leader: IntGaugeVec,
    pub commit_index: IntGaugeVec,
    pub applied_index: IntGaugeVec,
    pub last_index: IntGaugeVec,
    pub snapshot_index: IntGaugeVec,
    pub leader_changes: IntCounterVec,
    pub proposals: IntCounterVec,
    /// Leader only: how far each follower's log is behind, in entries.
    pub follower_lag: IntGaugeVec,
    // --- node ---
    pub proposal_duration: Histogram,
    pub read_duration: HistogramVec,
    pub wal_fsync_duration: Histogram,
    pub wal_writes_per_sync: Histogram,
    pub wal_bytes: IntCounter,
    pub snapshots: IntCounterVec,
    pub snapshot_duration: HistogramVec,
    pub snapshot_bytes: IntCounterVec,
    pub ready: IntGauge,
    pub event_loop_turns: IntCounter,
    // --- peers ---
    pub peer_batches_sent: IntCounterVec,
    pub peer_messages_received: IntCounterVec,
    pub peer_unreachable: IntCounterVec,
    pub peer_rejected: IntCounterVec,
    // --- listeners and security ---
    pub connections_open: IntGaugeVec,
    pub connections_refused: IntCounterVec,
    pub accept_errors: IntCounterVec,
    pub tls_handshake_failures: IntCounterVec,
    pub tls_reloads: IntCounterVec,
    pub admin_denied: IntCounterVec,
    // --- clients ---
    pub client_requests: IntCounterVec,
    pub client_request_duration: HistogramVec,
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let m = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let m = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

fn histogram(r: &Registry, name: &str, help: &str) -> Histogram {
    let m = Histogram::with_opts(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()))
        .expect("valid metric");
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

fn histogram_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let m = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid metric");
    r.register(Box::new(m.clone())).expect("unique metric");
    m
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let g = &["group"];
        let writes_per_sync = Histogram::with_opts(
            HistogramOpts::new(
                "raft_wal_writes_per_sync",
                "Group writes covered by one fsync of the write-ahead log (group commit).",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ]),
        )
        .expect("valid metric");
        r.register(Box::new(writes_per_sync.clone()))
            .expect("unique metric");
        let wal_bytes = IntCounter::new(
            "raft_wal_written_bytes_total",
            "Bytes appended to the write-ahead log.",
        )
        .expect("valid metric");
        r.register(Box::new(wal_bytes.clone()))
            .expect("unique metric");
        let ready = IntGauge::new(
            "raft_ready",
            "1 when the replica passes its readiness check (/readyz).",
        )
        .expect("valid metric");
        r.register(Box::new(ready.clone())).expect("unique metric");
        let turns = IntCounter::new(
            "raft_event_loop_turns_total",
            "Turns of the node's event loop.",
        )
        .expect("valid metric");
        r.register(Box::new(turns.clone())).expect("unique metric");
        Metrics {
            term: gauge_vec(&r, "raft_term", "The current Raft term.", g),
            is_leader: gauge_vec(
                &r,
                "raft_is_leader",
                "1 if this replica leads the group.",
                g,
            ),
            has_leader: gauge_vec(
                &r,
                "raft_has_leader",
                "1 if this replica knows a leader of the group.",
                g,
            ),
            commit_index: gauge_vec(
                &r,
                "raft_commit_index",
                "The highest log index known committed.",
                g,
            ),
            applied_index: gauge_vec(
                &r,
                "raft_applied_index",
                "The highest log index applied to the state machine.",
                g,
            ),
            last_index: gauge_vec(&r, "raft_last_index", "The last index of the local log.", g),
            snapshot_index: gauge_vec(
                &r,
                "raft_snapshot_index",
                "The index of the latest snapshot.",
                g,
            ),
            leader_changes: counter_vec(
                &r,
                "raft_leader_changes_total",
                "Changes of the known leader.",
                g,
            ),
            proposals: counter_vec(
                &r,
                "raft_proposals_total",
                "Proposals by outcome: committed, failed (not applied; the client was told to retry), forwarded.",
                &["group", "outcome"],
            ),
            follower_lag: gauge_vec(
                &r,
                "raft_peer_replication_lag_entries",
                "Leader only: entries a follower's log is behind the leader's.",
                &["group", "peer"],
            ),
            proposal_duration: histogram(
                &r,
                "raft_proposal_duration_seconds",
                "From a write's arrival to its application (commit latency seen by clients).",
            ),
            read_duration: histogram_vec(
                &r,
                "raft_read_duration_seconds",
                "From a read's arrival to its answer.",
                &["consistency"],
                LATENCY_BUCKETS,
            ),
            wal_fsync_duration: histogram(
                &r,
                "raft_wal_fsync_duration_seconds",
                "Duration of one fsync of the write-ahead log.",
            ),
            wal_writes_per_sync: writes_per_sync,
            wal_bytes,
            snapshots: counter_vec(
                &r,
                "raft_snapshot_total",
                "Snapshots by kind: taken, sent, received, installed, failed.",
                &["kind"],
            ),
            snapshot_duration: histogram_vec(
                &r,
                "raft_snapshot_duration_seconds",
                "Duration of taking, sending or installing a snapshot.",
                &["kind"],
                &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0],
            ),
            snapshot_bytes: counter_vec(
                &r,
                "raft_snapshot_bytes_total",
                "Snapshot bytes by kind: taken, sent, received.",
                &["kind"],
            ),
            ready,
            event_loop_turns: turns,
            peer_batches_sent: counter_vec(
                &r,
                "raft_peer_batches_sent_total",
                "Batches sent to a peer.",
                &["peer"],
            ),
            peer_messages_received: counter_vec(
                &r,
                "raft_peer_messages_received_total",
                "Raft messages received from a peer.",
                &["peer"],
            ),
            peer_unreachable: counter_vec(
                &r,
                "raft_peer_unreachable_total",
                "Times messages to a peer were dropped (down, slow or unreachable).",
                &["peer"],
            ),
            peer_rejected: counter_vec(
                &r,
                "raft_peer_rejected_total",
                "Peer traffic refused, by reason (other_cluster, wrong_node, malformed, \
                 no_certificate, not_a_member).",
                &["reason"],
            ),
            connections_open: gauge_vec(
                &r,
                "raft_connections_open",
                "TCP connections held open by a listener (grpc, http).",
                &["listener"],
            ),
            connections_refused: counter_vec(
                &r,
                "raft_connections_refused_total",
                "Connections closed at once because the listener held its maximum.",
                &["listener"],
            ),
            accept_errors: counter_vec(
                &r,
                "raft_accept_errors_total",
                "Failed accepts (e.g. out of file descriptors), retried after a pause.",
                &["listener"],
            ),
            tls_handshake_failures: counter_vec(
                &r,
                "raft_tls_handshake_failures_total",
                "TLS handshakes that failed (error: bad or missing certificate, not TLS; timeout).",
                &["listener", "reason"],
            ),
            tls_reloads: counter_vec(
                &r,
                "raft_tls_reloads_total",
                "Reloads of changed TLS files or admin token, by result (ok, failed: the old ones stay).",
                &["result"],
            ),
            admin_denied: counter_vec(
                &r,
                "raft_admin_denied_total",
                "Admin requests refused for lack of the admin role, by action.",
                &["action"],
            ),
            client_requests: counter_vec(
                &r,
                "raft_client_requests_total",
                "Client requests by method and gRPC status code.",
                &["method", "code"],
            ),
            client_request_duration: histogram_vec(
                &r,
                "raft_client_request_duration_seconds",
                "Client request latency by method.",
                &["method"],
                LATENCY_BUCKETS,
            ),
            registry: r,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding of gathered metrics cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_in_text_format_with_their_labels() {
        let m = Metrics::new();
        m.term.with_label_values(&["0"]).set(4);
        m.is_leader.with_label_values(&["0"]).set(1);
        m.proposal_duration.observe(0.002);
        m.wal_fsync_duration.observe(0.0004);
        let text = m.render();
        assert!(text.contains("raft_term{group=\"0\"} 4"), "{text}");
        assert!(text.contains("raft_is_leader{group=\"0\"} 1"));
        assert!(text.contains("# TYPE raft_proposal_duration_seconds histogram"));
        assert!(text.contains("raft_wal_fsync_duration_seconds_bucket{le=\"0.0005\"} 1"));
    }
}
