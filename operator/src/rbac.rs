//! Every API permission the operator uses, rule by rule: what the
//! ClusterRole in `charts/kuberaft-operator/templates/rbac.yaml` and
//! `deploy/operator.yaml` must grant, nothing more (a test compares them).
//!
//! | resource | verbs | why |
//! |---|---|---|
//! | raftclusters | get list watch | the controller's watch |
//! | raftclusters/status | get patch update | the status (server-side apply) |
//! | statefulsets | get list watch create patch | owned, applied; watched |
//! | services, configmaps | get list watch create patch | owned, applied; watched |
//! | poddisruptionbudgets | get list watch create patch delete | owned; deleted when disabled |
//! | pods | get list watch patch delete | observed, leader label, rolling restarts |
//! | secrets | get create patch | `<cluster>-ca`, `<cluster>-tls` applied; user and cert-manager Secrets read by name (never listed or watched) |
//! | networkpolicies | get create patch delete | `spec.networkPolicy`, deleted when disabled |
//! | certificates (cert-manager.io) | get create patch delete | CertManager mode; a scaled-away replica's deleted |
//! | servicemonitors | get create patch delete | `spec.monitoring.serviceMonitor` |
//! | events | create patch | an event for every action |
//!
//! The leader-election Lease is granted by a Role in the operator's own
//! namespace: [`LEASE_RULE`].

/// One rule: API group, resources, verbs.
pub type Rule = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

/// The ClusterRole's rules, in the order the manifests list them.
pub const CLUSTER_RULES: &[Rule] = &[
    ("kuberaft.io", &["raftclusters"], &["get", "list", "watch"]),
    (
        "kuberaft.io",
        &["raftclusters/status"],
        &["get", "patch", "update"],
    ),
    (
        "apps",
        &["statefulsets"],
        &["get", "list", "watch", "create", "patch"],
    ),
    (
        "",
        &["services", "configmaps"],
        &["get", "list", "watch", "create", "patch"],
    ),
    (
        "policy",
        &["poddisruptionbudgets"],
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    ("", &["pods"], &["get", "list", "watch", "patch", "delete"]),
    ("", &["secrets"], &["get", "create", "patch"]),
    (
        "networking.k8s.io",
        &["networkpolicies"],
        &["get", "create", "patch", "delete"],
    ),
    (
        "cert-manager.io",
        &["certificates"],
        &["get", "create", "patch", "delete"],
    ),
    (
        "monitoring.coreos.com",
        &["servicemonitors"],
        &["get", "create", "patch", "delete"],
    ),
    ("events.k8s.io", &["events"], &["create", "patch"]),
];

/// The leader-election Role's one rule.
pub const LEASE_RULE: Rule = (
    "coordination.k8s.io",
    &["leases"],
    &["get", "create", "update"],
);
