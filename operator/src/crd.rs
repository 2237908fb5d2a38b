//! The `RaftCluster` custom resource (`kuberaft.io/v1alpha1`): what a user
//! asks for (spec) and what the operator observed (status).
//!
//! The schema carries every check the API server can make on its own:
//! types, ranges, enums, defaults, and CEL rules (`x-kubernetes-validations`)
//! for what a schema alone cannot say (immutability, relations between
//! fields). Every rule that guards a behaviour is also enforced by the
//! reconciler, which reports a violation as a `Degraded` condition, so a
//! cluster whose API server skipped the rules is still safe.

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The API group of every kuberaft resource.
pub const GROUP: &str = "kuberaft.io";

/// A Raft-replicated key-value store of `replicas` replicas, each hosting
/// `groups` Raft groups.
// clippy reads the repeated `printcolumn(type_ = ...)` keys as duplicated
// attributes; they are one column each.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "kuberaft.io",
    version = "v1alpha1",
    kind = "RaftCluster",
    namespaced,
    shortname = "raft",
    category = "kuberaft",
    status = "RaftClusterStatus",
    derive = "PartialEq",
    doc = "A Raft-replicated, strongly consistent key-value store run by the kuberaft operator.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "replicas asked for"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "replicas ready to serve"
    ),
    printcolumn(
        name = "Leader",
        type_ = "string",
        json_path = ".status.leader",
        description = "the pod leading group 0"
    ),
    printcolumn(
        name = "Term",
        type_ = "integer",
        json_path = ".status.term",
        description = "the Raft term of group 0"
    ),
    printcolumn(
        name = "Available",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Available\")].status",
        description = "a quorum of voters is healthy"
    ),
    printcolumn(
        name = "Progressing",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Progressing\")].reason",
        description = "what the operator is doing"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".spec.version",
        priority = 1
    ),
    printcolumn(
        name = "Groups",
        type_ = "integer",
        json_path = ".spec.groups",
        priority = 1
    ),
    printcolumn(
        name = "Commit",
        type_ = "integer",
        json_path = ".status.commitIndex",
        priority = 1,
        description = "the commit index of group 0"
    ),
    printcolumn(
        name = "Degraded",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Degraded\")].status",
        priority = 1
    ),
    printcolumn(
        name = "Paused",
        type_ = "boolean",
        json_path = ".spec.paused",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.podDisruptionBudget) || !has(self.podDisruptionBudget.maxUnavailable) || self.podDisruptionBudget.maxUnavailable <= (self.replicas - 1) / 2"
).message("podDisruptionBudget.maxUnavailable must not exceed the failures a quorum tolerates, (replicas - 1) / 2"))]
pub struct RaftClusterSpec {
    /// Replicas (Raft voters), 1 to 9. Odd numbers tolerate the most
    /// failures for their size: 3 tolerates 1, 5 tolerates 2. Changed one
    /// member at a time by the operator, whatever the jump asked for.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 9))]
    pub replicas: i32,

    /// Raft groups (shards) hosted by every replica. Fixed at creation: the
    /// data on every volume is partitioned into this many groups.
    #[serde(default = "default_groups")]
    #[schemars(range(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "groups cannot change after creation: the data is partitioned into this many groups; create a new RaftCluster to change it"
    ))]
    pub groups: i32,

    /// The replica image without its tag, e.g. `ghcr.io/kuberaft/raft`.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1))]
    pub image: String,

    /// The image tag to run. Changing it starts a leader-aware rolling
    /// update: followers first, one at a time, the leader last.
    #[serde(default = "default_version")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    )]
    pub version: String,

    /// When the kubelet pulls the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    /// The persistent volume of every replica. Immutable: a StatefulSet
    /// cannot change its volume claim templates.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "storage is immutable after creation: a StatefulSet cannot change its volume claims; create a new RaftCluster to change it"
    ))]
    pub storage: StorageSpec,

    /// CPU and memory of every replica container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Pod affinity. Default: prefer spreading replicas over nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Default: spread replicas over zones where possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,

    /// Raft timing and batching.
    #[serde(default)]
    pub raft: RaftTuning,

    /// How much the replicas log.
    #[serde(default)]
    pub log_level: LogLevel,

    #[serde(default)]
    pub pod_disruption_budget: PodDisruptionBudgetSpec,

    /// What happens to the replicas' volumes when the cluster shrinks or is
    /// deleted.
    #[serde(default)]
    pub persistent_volume_claim_retention_policy: RetentionPolicy,

    #[serde(default)]
    pub monitoring: MonitoringSpec,

    /// While true the operator changes nothing (objects, membership,
    /// labels) and only reports status.
    #[serde(default)]
    pub paused: bool,

    /// TLS between replicas, for clients and for the operator's admin
    /// calls. On by default; fixed at creation.
    #[serde(default)]
    pub tls: TlsSpec,

    /// A NetworkPolicy that admits only peers, the operator, the allowed
    /// clients and Prometheus.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// The volume of each replica.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size, e.g. `10Gi`.
    #[serde(default = "default_storage_size")]
    pub size: Quantity,
    /// The StorageClass; absent: the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

/// Raft timing. Durations are Go-style (`100ms`, `1s`, `1m30s`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "duration(self.electionTimeout) >= duration(self.heartbeatInterval) + duration(self.heartbeatInterval)"
).message("raft.electionTimeout must be at least twice raft.heartbeatInterval"))]
pub struct RaftTuning {
    /// The leader's heartbeat interval: the tick from which election
    /// timeouts derive (`tick` in the replica's configuration).
    #[serde(default = "default_heartbeat")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub heartbeat_interval: String,
    /// How long a follower waits without hearing from a leader before it
    /// campaigns (randomized up to twice this). Rounded to whole heartbeats.
    #[serde(default = "default_election_timeout")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub election_timeout: String,
    /// Timeout of one peer RPC (`timeout` in the replica's configuration).
    #[serde(default = "default_rpc_timeout")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub rpc_timeout: String,
    /// Batch concurrent client writes into one proposal.
    #[serde(default = "default_true")]
    pub aggregate: bool,
    /// Entries applied between snapshots (log compaction).
    #[serde(default = "default_snapshot_threshold")]
    #[schemars(range(min = 100, max = 100000000))]
    pub snapshot_threshold: i64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat_interval: default_heartbeat(),
            election_timeout: default_election_timeout(),
            rpc_timeout: default_rpc_timeout(),
            aggregate: true,
            snapshot_threshold: default_snapshot_threshold(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodDisruptionBudgetSpec {
    /// Create a PodDisruptionBudget.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Voluntary disruptions allowed at once; default and upper bound: the
    /// failures a quorum tolerates, `(replicas - 1) / 2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 4))]
    pub max_unavailable: Option<i32>,
}

impl Default for PodDisruptionBudgetSpec {
    fn default() -> Self {
        PodDisruptionBudgetSpec {
            enabled: true,
            max_unavailable: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RetentionChoice {
    Retain,
    Delete,
}

impl RetentionChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionChoice::Retain => "Retain",
            RetentionChoice::Delete => "Delete",
        }
    }
}

/// The StatefulSet's PVC retention policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionPolicy {
    /// Volumes of replicas removed by a scale-down. Default `Delete`: a
    /// removed member's stale log is never picked up by a later scale-up.
    #[serde(default = "default_when_scaled")]
    pub when_scaled: RetentionChoice,
    /// Volumes when the RaftCluster is deleted. Default `Retain`: deleting
    /// the resource by mistake does not delete the data.
    #[serde(default = "default_when_deleted")]
    pub when_deleted: RetentionChoice,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            when_scaled: default_when_scaled(),
            when_deleted: default_when_deleted(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Create a Prometheus Operator ServiceMonitor (when its CRD exists).
    #[serde(default)]
    pub service_monitor: bool,
    /// Labels on the ServiceMonitor, e.g. what a Prometheus selects.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Scrape interval, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub interval: Option<String>,
}

/// TLS of a cluster: where the certificates come from, and what else
/// speaks TLS. Whatever the mode, the pods mount one Secret
/// `<cluster>-tls` (or, in `Secret` mode, the user's) at `/etc/raft/tls`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'Secret' || has(self.secret)").message(
    "spec.tls.mode Secret needs spec.tls.secret.name (the Secret with the replicas' certificates) and spec.tls.secret.operatorClientSecretName"
))]
#[x_kube(validation = Rule::new("self.mode != 'CertManager' || has(self.certManager)").message(
    "spec.tls.mode CertManager needs spec.tls.certManager.issuerRef (the cert-manager Issuer or ClusterIssuer that signs the certificates)"
))]
pub struct TlsSpec {
    /// Serve TLS on the gRPC port (peers always with mutual TLS). Fixed at
    /// creation: switching it on a running cluster would split the quorum
    /// between replicas that speak TLS and replicas that do not.
    #[serde(default = "default_true")]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "spec.tls.enabled cannot change after creation: during the rolling restart half the replicas would speak TLS and half not, and the quorum would split; create a new RaftCluster (and move the data) to change it"
    ))]
    pub enabled: bool,
    /// Where the certificates come from: `Automatic` (a per-cluster CA
    /// kept by the operator), `Secret` (a Secret you manage) or
    /// `CertManager` (cert-manager `Certificate` resources). Fixed at
    /// creation: a new CA replacing the old one at once would leave the
    /// replicas distrusting each other while the new files spread.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "spec.tls.mode cannot change after creation: the certificates and the CA bundle would be replaced at once, and replicas that already see the new CA would reject those that do not yet; create a new RaftCluster to change it"
    ))]
    pub mode: TlsMode,
    /// Lifetimes of the certificates of `Automatic` mode.
    #[serde(default)]
    pub automatic: AutomaticTls,
    /// The Secrets of `Secret` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretTls>,
    /// The issuer of `CertManager` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_manager: Option<CertManagerTls>,
    /// Every client connection must present a certificate signed by the
    /// cluster's CA (etcd's `--client-cert-auth`).
    #[serde(default)]
    pub client_cert_auth: bool,
    /// The HTTP port (`/metrics`, `/healthz`, `/readyz`) serves TLS too.
    #[serde(default)]
    pub metrics: bool,
}

/// The message of the rule that mode `Secret` names its Secrets.
pub const SECRET_MODE_NEEDS_SECRET: &str = "spec.tls.mode Secret needs spec.tls.secret.name (the Secret with the replicas' certificates) and spec.tls.secret.operatorClientSecretName";
/// The message of the rule that mode `CertManager` names its issuer.
pub const CERT_MANAGER_MODE_NEEDS_ISSUER: &str = "spec.tls.mode CertManager needs spec.tls.certManager.issuerRef (the cert-manager Issuer or ClusterIssuer that signs the certificates)";

impl TlsSpec {
    /// What the schema's mode rules say, checked again by the operator.
    pub fn problem(&self) -> Option<&'static str> {
        match self.mode {
            TlsMode::Secret if self.secret.is_none() => Some(SECRET_MODE_NEEDS_SECRET),
            TlsMode::CertManager if self.cert_manager.is_none() => {
                Some(CERT_MANAGER_MODE_NEEDS_ISSUER)
            }
            _ => None,
        }
    }
}

impl Default for TlsSpec {
    fn default() -> Self {
        TlsSpec {
            enabled: true,
            mode: TlsMode::default(),
            automatic: AutomaticTls::default(),
            secret: None,
            cert_manager: None,
            client_cert_auth: false,
            metrics: false,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum TlsMode {
    #[default]
    Automatic,
    Secret,
    CertManager,
}

/// Lifetimes of the operator-issued certificates. A certificate is
/// re-issued once two thirds of its lifetime have passed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutomaticTls {
    /// Lifetime of the replicas' and the operator's certificates.
    #[serde(default = "default_certificate_lifetime")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub certificate_lifetime: String,
    /// Lifetime of the cluster's CA.
    #[serde(default = "default_ca_lifetime")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub ca_lifetime: String,
}

impl Default for AutomaticTls {
    fn default() -> Self {
        AutomaticTls {
            certificate_lifetime: default_certificate_lifetime(),
            ca_lifetime: default_ca_lifetime(),
        }
    }
}

/// Certificates you manage. `name` holds either one certificate per
/// replica (`ca.crt`, `<pod>.crt`, `<pod>.key` for every pod) or one
/// certificate shared by all replicas (`tls.crt`, `tls.key`, `ca.crt`,
/// e.g. a `kubernetes.io/tls` Secret) whose DNS names list every replica.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTls {
    /// The replicas' Secret, in the cluster's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The operator's client certificate (`tls.crt`, `tls.key`), signed by
    /// the same CA, with `raft-operator` as its common name or a DNS name.
    #[schemars(length(min = 1, max = 253))]
    pub operator_client_secret_name: String,
}

/// cert-manager issues the certificates; the operator asks for them with
/// `cert-manager.io/v1` `Certificate` resources and assembles their
/// Secrets into `<cluster>-tls`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertManagerTls {
    pub issuer_ref: IssuerRef,
    /// Lifetime of each certificate (cert-manager's `duration`), e.g. `2160h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub duration: Option<String>,
}

/// A cert-manager issuer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `Issuer` (the cluster's namespace) or `ClusterIssuer`.
    #[serde(default = "default_issuer_kind")]
    pub kind: IssuerKind,
    #[serde(default = "default_issuer_group")]
    pub group: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum IssuerKind {
    Issuer,
    ClusterIssuer,
}

/// The cluster's NetworkPolicy: ingress to the gRPC port from the
/// cluster's own replicas, the operator and the allowed clients; to the
/// metrics port from Prometheus; egress to the peers' gRPC port and DNS.
/// (Kubelet probes are not subject to NetworkPolicy.)
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create the NetworkPolicy. Off by default: with it on, only the
    /// clients listed in `clients` reach the cluster.
    #[serde(default)]
    pub enabled: bool,
    /// Who may connect to the gRPC port as a client (NetworkPolicy peers:
    /// `podSelector` and/or `namespaceSelector`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<NetworkPolicyPeerSpec>,
    /// The namespaces whose pods may scrape the metrics port (Prometheus);
    /// absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_namespace_selector: Option<LabelSelector>,
    /// The operator's pods (default: `app.kubernetes.io/name:
    /// kuberaft-operator` in any namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<NetworkPolicyPeerSpec>,
}

/// One allowed source of traffic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicyPeerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// What the operator last observed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RaftClusterStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Replicas the StatefulSet runs (for the scale subresource).
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    /// The label selector of the replicas' pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// The pod leading group 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Term of group 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<i64>,
    /// Commit index of group 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_index: Option<i64>,
    /// Every member of the Raft configuration, and every pod not (yet) one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// True once the cluster has been Available: from then on the replicas'
    /// configuration says `initial_cluster_state: existing`, so a replica
    /// on an empty volume can never bootstrap a second cluster.
    #[serde(default)]
    pub bootstrapped: bool,
    /// The replica count the cluster was bootstrapped with (the initial
    /// voters); scaling waits until the bootstrap completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One replica as the operator sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// The replica's name in the Raft configuration (its pod name).
    pub name: String,
    /// The pod running it.
    pub pod: String,
    /// Raft node id (ordinal + 1).
    pub id: i64,
    pub role: MemberRole,
    /// Reachable, ready and in contact with the leader.
    pub healthy: bool,
    /// Applied index of group 0.
    #[serde(default)]
    pub applied_index: i64,
    /// When the operator last heard from the replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact: Option<Time>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    Leader,
    Follower,
    Learner,
    Candidate,
    /// Not in the Raft configuration (a pod waiting to be added).
    None,
    /// Not reachable: its role is unknown.
    Unknown,
}

fn default_replicas() -> i32 {
    3
}
fn default_groups() -> i32 {
    1
}
fn default_image() -> String {
    "ghcr.io/kuberaft/raft".to_string()
}
fn default_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
fn default_storage_size() -> Quantity {
    Quantity("1Gi".to_string())
}
fn default_heartbeat() -> String {
    "100ms".to_string()
}
fn default_election_timeout() -> String {
    "1s".to_string()
}
fn default_rpc_timeout() -> String {
    "1s".to_string()
}
fn default_true() -> bool {
    true
}
fn default_snapshot_threshold() -> i64 {
    10_000
}
fn default_certificate_lifetime() -> String {
    "2160h".to_string()
}
fn default_ca_lifetime() -> String {
    "87600h".to_string()
}
fn default_issuer_kind() -> IssuerKind {
    IssuerKind::Issuer
}
fn default_issuer_group() -> String {
    "cert-manager.io".to_string()
}
fn default_when_scaled() -> RetentionChoice {
    RetentionChoice::Delete
}
fn default_when_deleted() -> RetentionChoice {
    RetentionChoice::Retain
}

impl Default for RaftClusterSpec {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({}))
            .expect("every field of the spec has a default")
    }
}

/// The CRD as YAML, exactly what `raft-operator crd` prints and what the
/// copies under `deploy/` and `charts/` must equal.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = RaftCluster::crd();
    let body = serde_saphyr::to_string(&crd).expect("a CRD always serializes");
    format!(
        "# Generated by `raft-operator crd` from operator/src/crd.rs; do not edit.\n\
         # Regenerate: cargo run -p kuberaft-operator -- crd > deploy/crd.yaml\n\
         ---\n{body}"
    )
}
