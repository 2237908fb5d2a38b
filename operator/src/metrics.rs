//! The operator's Prometheus metrics: reconciles, failures, durations, and
//! per-cluster health, on one registry served at `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounterVec,
    pub failures: IntCounterVec,
    pub duration: HistogramVec,
    pub actions: IntCounterVec,
    pub available: IntGaugeVec,
    pub ready_replicas: IntGaugeVec,
    pub members: IntGaugeVec,
    pub healthy_members: IntGaugeVec,
    pub is_leader: prometheus::IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("kuberaft_operator".into()), None)
            .expect("a constant prefix is valid");
        let cluster = &["namespace", "cluster"];
        let reconciles = IntCounterVec::new(
            Opts::new("reconciles_total", "Reconciliations started"),
            cluster,
        )
        .expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "reconcile_failures_total",
                "Reconciliations that failed, by error",
            ),
            &["namespace", "cluster", "error"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new("reconcile_duration_seconds", "Time one reconciliation took")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            cluster,
        )
        .expect("valid metric");
        let actions = IntCounterVec::new(
            Opts::new(
                "actions_total",
                "Actions taken on clusters, by event reason",
            ),
            &["namespace", "cluster", "reason"],
        )
        .expect("valid metric");
        let gauge = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), cluster).expect("valid metric")
        };
        let available = gauge(
            "cluster_available",
            "1 while every group has a healthy quorum",
        );
        let ready_replicas = gauge("cluster_ready_replicas", "Replicas whose pods are ready");
        let members = gauge(
            "cluster_members",
            "Members of the Raft configuration (group 0)",
        );
        let healthy_members = gauge("cluster_healthy_members", "Members healthy and caught up");
        let is_leader = prometheus::IntGauge::new(
            "leader",
            "1 while this operator instance holds the lease and reconciles",
        )
        .expect("valid metric");
        for c in [&reconciles, &failures, &actions] {
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
        }
        registry
            .register(Box::new(duration.clone()))
            .expect("registered once");
        for g in [&available, &ready_replicas, &members, &healthy_members] {
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
        }
        registry
            .register(Box::new(is_leader.clone()))
            .expect("registered once");
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            actions,
            available,
            ready_replicas,
            members,
            healthy_members,
            is_leader,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = encoder.encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// Forgets a deleted cluster's gauges.
    pub fn forget(&self, namespace: &str, cluster: &str) {
        for g in [
            &self.available,
            &self.ready_replicas,
            &self.members,
            &self.healthy_members,
        ] {
            let _ = g.remove_label_values(&[namespace, cluster]);
        }
    }
}
