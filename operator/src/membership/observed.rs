//! What the reconciler observed, in the planner's terms: the spec's wishes,
//! the StatefulSet and its pods, and each replica's own admin status.
//! Kubernetes types stay out, so the real-replica tests can fill it in from
//! processes they run.

use kuberaft_proto::admin as pb;
use std::collections::BTreeMap;

/// A replica's pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodView {
    /// The pod's Ready condition.
    pub ready: bool,
    /// Runs the StatefulSet's current template (its update revision).
    pub updated: bool,
    /// Being deleted.
    pub terminating: bool,
}

/// One ordinal: its pod, if any, and its status, if it answered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplicaView {
    pub pod: Option<PodView>,
    pub status: Option<pb::NodeStatus>,
}

/// Everything a plan is derived from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// `spec.replicas`.
    pub desired: u32,
    /// `spec.groups`.
    pub groups: u32,
    /// The StatefulSet's replica count now (0 when it does not exist).
    pub statefulset_replicas: u32,
    /// The cluster has been Available once (status.bootstrapped).
    pub bootstrapped: bool,
    /// The replica count the cluster bootstraps with.
    pub bootstrap_replicas: u32,
    /// By ordinal: every pod, and every replica that answered.
    pub replicas: BTreeMap<u32, ReplicaView>,
}
