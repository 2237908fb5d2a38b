//! Carrying out a consensus step through the admin API. Pod deletion (the
//! one step that is Kubernetes' business) is left to the caller.

use super::plan::Step;
use super::view::ClusterView;
use crate::admin::{AdminEndpoint, AdminError, ReplicaAdmin};
use crate::names::node_id;
use kuberaft_proto::admin as pb;

/// Where each replica is reached: the operator uses pod IPs and DNS names,
/// the real-replica tests loopback addresses.
pub trait Directory: Send + Sync {
    /// The replica's admin (gRPC) listener, and how to speak to it.
    fn admin_endpoint(&self, ordinal: u32) -> AdminEndpoint;
    /// The replica as a member of the Raft configuration: id, name, and the
    /// stable addresses every other replica should dial.
    fn member(&self, ordinal: u32) -> pb::Member;
}

impl Step {
    /// The event reason of this step.
    pub fn event_reason(&self) -> &'static str {
        match self {
            Step::None => "",
            Step::AddLearner { .. } => "MemberAdded",
            Step::Promote { .. } => "LearnerPromoted",
            Step::Remove {
                replacing: true, ..
            } => "ReplacingMember",
            Step::Remove { .. } => "MemberRemoved",
            Step::TransferLeader { .. } => "LeadershipTransferred",
            Step::DeletePod { .. } => "RollingUpdate",
        }
    }
}

/// The replica to send a membership change of `group` to: that group's
/// leader (or group 0's when the change is for every group; it forwards).
fn via(view: &ClusterView, group: Option<u64>) -> Option<u32> {
    view.groups.get(&group.unwrap_or(0)).map(|g| g.leader)
}

/// Carries out an admin step; `Ok(false)` for steps that are not the
/// admin API's (nothing, or a pod deletion).
pub async fn execute(
    step: &Step,
    view: &ClusterView,
    admin: &dyn ReplicaAdmin,
    directory: &dyn Directory,
) -> Result<bool, AdminError> {
    let no_leader = |group: Option<u64>| AdminError {
        endpoint: String::new(),
        call: "route",
        message: format!("group {} has no known leader", group.unwrap_or(0)),
    };
    match *step {
        Step::None | Step::DeletePod { .. } => Ok(false),
        Step::AddLearner { ordinal, group } => {
            let to = via(view, group).ok_or_else(|| no_leader(group))?;
            admin
                .add_learner(
                    &directory.admin_endpoint(to),
                    directory.member(ordinal),
                    group,
                )
                .await?;
            Ok(true)
        }
        Step::Promote { ordinal, group } => {
            let to = via(view, group).ok_or_else(|| no_leader(group))?;
            admin
                .promote(&directory.admin_endpoint(to), node_id(ordinal), group)
                .await?;
            Ok(true)
        }
        Step::Remove { ordinal, group, .. } => {
            let to = via(view, group).ok_or_else(|| no_leader(group))?;
            admin
                .remove_member(&directory.admin_endpoint(to), node_id(ordinal), group)
                .await?;
            Ok(true)
        }
        Step::TransferLeader { from, group, to } => {
            admin
                .transfer_leader(&directory.admin_endpoint(from), Some(group), node_id(to))
                .await?;
            Ok(true)
        }
    }
}
