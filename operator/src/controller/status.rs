//! The RaftCluster's status: members, leader, term, commit index and the
//! conditions, computed from one observation and one plan.

use crate::crd::{MemberRole, MemberStatus, RaftCluster, RaftClusterStatus};
use crate::membership::{ClusterView, Observed, Plan};
use crate::names::{Names, node_id};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kuberaft_proto::admin as pb;
use std::collections::BTreeSet;

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const PAUSED: &str = "ReconciliationPaused";
pub const TLS_READY: &str = "TLSReady";

/// Everything the status is made of.
pub struct StatusInput<'a> {
    pub cluster: &'a RaftCluster,
    pub names: &'a Names,
    pub observed: &'a Observed,
    pub view: &'a ClusterView,
    pub plan: &'a Plan,
    /// A problem outside the plan (e.g. an invalid spec).
    pub problem: Option<(&'static str, String)>,
    /// The TLS step's verdict; `None` when it did not run (paused, or the
    /// spec was refused): the previous condition stays.
    pub tls: Option<super::tls::TlsCondition>,
    pub now: Time,
}

fn role(view: &ClusterView, ordinal: u32, status: Option<&pb::NodeStatus>) -> MemberRole {
    match view.groups.get(&0) {
        Some(g) if g.leader == ordinal => MemberRole::Leader,
        Some(g) if g.voters.contains(&ordinal) => MemberRole::Follower,
        Some(g) if g.learners.contains(&ordinal) => MemberRole::Learner,
        Some(_) => MemberRole::None,
        None => match status.and_then(|s| s.groups.first()).map(|g| g.role) {
            Some(r) if r == pb::Role::Candidate as i32 || r == pb::Role::PreCandidate as i32 => {
                MemberRole::Candidate
            }
            Some(r) if r == pb::Role::Learner as i32 => MemberRole::Learner,
            Some(_) => MemberRole::Follower,
            None => MemberRole::Unknown,
        },
    }
}

/// A condition, keeping the previous transition time when the status did
/// not change.
fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// The new status.
pub fn build(input: &StatusInput<'_>) -> RaftClusterStatus {
    let StatusInput {
        cluster,
        names,
        observed,
        view,
        plan,
        problem,
        tls,
        now,
    } = input;
    let previous = cluster.status.clone().unwrap_or_default();
    let generation = cluster.metadata.generation;

    let mut ordinals: BTreeSet<u32> = observed.replicas.keys().copied().collect();
    ordinals.extend(view.members());
    let members: Vec<MemberStatus> = ordinals
        .iter()
        .map(|&o| {
            let replica = observed.replicas.get(&o);
            let status = replica.and_then(|r| r.status.as_ref());
            let last_contact = if status.is_some() {
                Some(now.clone())
            } else {
                previous
                    .members
                    .iter()
                    .find(|m| m.id == node_id(o) as i64)
                    .and_then(|m| m.last_contact.clone())
            };
            MemberStatus {
                name: names.pod(o),
                pod: names.pod(o),
                id: node_id(o) as i64,
                role: role(view, o, status),
                healthy: view.healthy.contains(&o),
                applied_index: status
                    .and_then(|s| s.groups.iter().find(|g| g.group == 0))
                    .map_or(0, |g| g.applied_index as i64),
                last_contact,
            }
        })
        .collect();

    let ready_replicas = observed
        .replicas
        .values()
        .filter(|r| r.pod.as_ref().is_some_and(|p| p.ready))
        .count() as i32;
    let available = view.available();
    let group0 = view.groups.get(&0);
    let available_message = match view.weakest_group() {
        Some((group, healthy, voters, quorum)) if view.all_groups_led() => {
            let scope = if view.group_count > 1 {
                format!(" (weakest: group {group})")
            } else {
                String::new()
            };
            format!("{healthy}/{voters} healthy, quorum {quorum}{scope}")
        }
        _ => format!(
            "{} of {} groups have a known leader",
            view.groups.len(),
            view.group_count
        ),
    };
    let available_reason = if available {
        "QuorumHealthy"
    } else if view.groups.is_empty() {
        "NoLeader"
    } else {
        "QuorumUnhealthy"
    };

    let prev = &previous.conditions;
    let mut conditions = vec![condition(
        prev,
        AVAILABLE,
        available,
        available_reason,
        available_message,
        generation,
        now,
    )];
    conditions.push(match &plan.progress {
        Some(p) => condition(
            prev,
            PROGRESSING,
            true,
            p.reason,
            p.message.clone(),
            generation,
            now,
        ),
        None => condition(
            prev,
            PROGRESSING,
            false,
            "Settled",
            "membership, size and version match the spec".to_string(),
            generation,
            now,
        ),
    });
    let degraded = problem
        .clone()
        .or_else(|| plan.blocked.as_ref().map(|b| (b.reason, b.message.clone())));
    conditions.push(match degraded {
        Some((reason, message)) => {
            condition(prev, DEGRADED, true, reason, message, generation, now)
        }
        None => {
            let unhealthy: Vec<String> = members
                .iter()
                .filter(|m| m.role != MemberRole::None && !m.healthy)
                .map(|m| m.pod.clone())
                .collect();
            if unhealthy.is_empty() {
                condition(
                    prev,
                    DEGRADED,
                    false,
                    "AllHealthy",
                    "every member is healthy".into(),
                    generation,
                    now,
                )
            } else {
                condition(
                    prev,
                    DEGRADED,
                    true,
                    "MembersUnhealthy",
                    format!("not healthy: {}", unhealthy.join(", ")),
                    generation,
                    now,
                )
            }
        }
    });
    conditions.push(if cluster.spec.paused {
        condition(
            prev,
            PAUSED,
            true,
            "Paused",
            "spec.paused is true: the operator changes nothing and only reports".into(),
            generation,
            now,
        )
    } else {
        condition(
            prev,
            PAUSED,
            false,
            "Reconciling",
            "the operator reconciles".into(),
            generation,
            now,
        )
    });

    match tls {
        Some(t) => conditions.push(condition(
            prev,
            TLS_READY,
            t.ready,
            t.reason,
            t.message.clone(),
            generation,
            now,
        )),
        None => conditions.extend(prev.iter().find(|c| c.type_ == TLS_READY).cloned()),
    }

    RaftClusterStatus {
        observed_generation: generation,
        replicas: observed.statefulset_replicas as i32,
        ready_replicas,
        selector: names.selector_string(),
        leader: group0.map(|g| names.pod(g.leader)),
        term: group0.map(|g| g.term as i64),
        commit_index: group0.map(|g| g.commit as i64),
        members,
        // Once Available, always bootstrapped: the configuration says
        // `existing` from then on.
        bootstrapped: previous.bootstrapped || available,
        bootstrap_replicas: Some(observed.bootstrap_replicas as i32),
        conditions,
    }
}
