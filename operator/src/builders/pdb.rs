//! The PodDisruptionBudget: voluntary disruptions (drains, evictions) never
//! take more voters than the quorum tolerates.

use super::{child_meta, tolerated_failures};
use crate::crd::RaftCluster;
use crate::error::Result;
use crate::names::Names;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The budget for a cluster of `voters` voters: `maxUnavailable` is the
/// spec's value, capped at `(voters - 1) / 2`. A one-replica cluster gets
/// 0: draining its node needs the user's decision. Unhealthy pods may
/// always be evicted (they count for no quorum), so a crash-looping
/// replica never blocks a drain.
pub fn pdb(cluster: &RaftCluster, names: &Names, voters: u32) -> Result<PodDisruptionBudget> {
    let tolerated = tolerated_failures(voters);
    let max_unavailable = cluster
        .spec
        .pod_disruption_budget
        .max_unavailable
        .map_or(tolerated, |m| u32::try_from(m).unwrap_or(0).min(tolerated));
    Ok(PodDisruptionBudget {
        metadata: child_meta(cluster, names.pdb())?,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable as i32)),
            selector: Some(LabelSelector {
                match_labels: Some(names.selector_labels()),
                ..LabelSelector::default()
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_string()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}
