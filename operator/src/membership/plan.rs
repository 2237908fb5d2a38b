//! The planner: observed state in, the StatefulSet size and the next step
//! out.
//!
//! Invariants it keeps:
//! - one membership change at a time, none while a group is leaderless,
//!   in a joint configuration, or (for a voter's removal) when the smaller
//!   configuration would lack a healthy quorum;
//! - the StatefulSet never shrinks below the highest ordinal still in the
//!   Raft configuration, and only grows past the spec while members above
//!   it are being removed;
//! - a member is removed only when the spec no longer wants it or when it
//!   reports an empty volume while it is a voter (then it is added back as
//!   a learner); a missing pod alone never removes anything;
//! - a leader hands its leadership over before it is removed or restarted;
//! - a rolling update restarts one pod at a time, only while every other
//!   member is healthy, followers first and leaders last.

use super::observed::Observed;
use super::view::{ClusterView, GroupView};
use std::fmt;

/// One action on the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do now.
    None,
    /// Add the replica at `ordinal` as a learner (in `group`, or every
    /// group).
    AddLearner { ordinal: u32, group: Option<u64> },
    /// Promote the caught-up learner at `ordinal` to voter.
    Promote { ordinal: u32, group: Option<u64> },
    /// Remove the member at `ordinal`; `replacing`: it lost its volume and
    /// will be added back as a learner.
    Remove {
        ordinal: u32,
        group: Option<u64>,
        replacing: bool,
    },
    /// Ask `from`, the leader of `group`, to hand leadership to `to`.
    TransferLeader { from: u32, group: u64, to: u32 },
    /// Delete the pod at `ordinal` so the StatefulSet recreates it from
    /// the current template (one step of a rolling update).
    DeletePod { ordinal: u32 },
}

/// Why the cluster is not at rest (the `Progressing` condition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// `Bootstrapping`, `ScalingOut`, `LearnerCatchingUp`, `ScalingIn`,
    /// `ReplacingMember`, `RollingUpdate`, `WaitingForReplicas`.
    pub reason: &'static str,
    pub message: String,
}

/// Why the planner refuses to go on (the `Degraded` condition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// `QuorumLost`, `ScaleInBlocked`, `ReplaceBlocked`,
    /// `RollingUpdateBlocked`, `MembershipChanging`.
    pub reason: &'static str,
    pub message: String,
}

/// The planner's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The StatefulSet's replica count (and the peers the configuration
    /// lists).
    pub statefulset_replicas: u32,
    pub step: Step,
    pub progress: Option<Progress>,
    pub blocked: Option<Blocked>,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = |g: &Option<u64>| g.map_or(String::new(), |g| format!(" in group {g}"));
        match self {
            Step::None => write!(f, "nothing"),
            Step::AddLearner { ordinal, group } => {
                write!(f, "add replica {ordinal} as a learner{}", scope(group))
            }
            Step::Promote { ordinal, group } => {
                write!(f, "promote replica {ordinal} to voter{}", scope(group))
            }
            Step::Remove { ordinal, group, .. } => {
                write!(f, "remove replica {ordinal}{}", scope(group))
            }
            Step::TransferLeader { from, group, to } => write!(
                f,
                "move leadership of group {group} from replica {from} to replica {to}"
            ),
            Step::DeletePod { ordinal } => write!(f, "restart replica {ordinal}"),
        }
    }
}

fn progress(reason: &'static str, message: String) -> Option<Progress> {
    Some(Progress { reason, message })
}

fn blocked(reason: &'static str, message: String) -> Option<Blocked> {
    Some(Blocked { reason, message })
}

/// The group to name in a request: `None` when the change applies to
/// every group, else the first group that needs it (one at a time).
fn scope(view: &ClusterView, needs: impl Fn(&GroupView) -> bool) -> Option<Option<u64>> {
    let needing: Vec<u64> = view
        .groups
        .values()
        .filter(|g| needs(g))
        .map(|g| g.group)
        .collect();
    match needing.len() {
        0 => None,
        n if n as u64 == view.group_count => Some(None),
        _ => Some(Some(needing[0])),
    }
}

/// The best voter to take over a group's leadership from `from`: healthy,
/// wanted by the spec, on the current template if possible, most caught up.
fn successor(observed: &Observed, view: &ClusterView, group: &GroupView, from: u32) -> Option<u32> {
    group
        .voters
        .iter()
        .copied()
        .filter(|v| *v != from && *v < observed.desired && view.healthy.contains(v))
        .max_by_key(|v| {
            let updated = observed
                .replicas
                .get(v)
                .and_then(|r| r.pod.as_ref())
                .is_some_and(|p| p.updated);
            let matched = group.progress.get(v).map_or(0, |p| p.0);
            (updated, matched, std::cmp::Reverse(*v))
        })
}

/// Moves leadership of the first group `ordinal` leads, or `None` when it
/// leads none. `Err` when no voter can take over.
fn hand_over(
    observed: &Observed,
    view: &ClusterView,
    ordinal: u32,
) -> Option<Result<Step, String>> {
    let group = view.groups.values().find(|g| g.leader == ordinal)?;
    Some(match successor(observed, view, group, ordinal) {
        Some(to) => Ok(Step::TransferLeader {
            from: ordinal,
            group: group.group,
            to,
        }),
        None => Err(format!(
            "replica {ordinal} leads group {} and no other healthy voter can take over",
            group.group
        )),
    })
}

/// Plans the next step. Pure: the same observation gives the same plan.
pub fn plan(observed: &Observed) -> Plan {
    let view = ClusterView::build(observed);
    let desired = observed.desired.max(1);

    if !observed.bootstrapped {
        let n = observed.bootstrap_replicas.max(1);
        let message = if view.available() {
            format!("the initial {n} replicas have a leader and a healthy quorum")
        } else {
            format!("waiting for the initial {n} replicas to start and elect a leader")
        };
        return Plan {
            statefulset_replicas: n,
            step: Step::None,
            progress: progress("Bootstrapping", message),
            blocked: None,
        };
    }

    let members = view.members();
    let keep = members.iter().next_back().map_or(0, |m| m + 1);

    if !view.all_groups_led() || !view.available() {
        // Change nothing that needs consensus; never shrink.
        let message = match view.weakest_group() {
            Some((group, healthy, voters, quorum)) if view.all_groups_led() => format!(
                "group {group}: {healthy}/{voters} voters healthy, quorum {quorum}; membership changes wait"
            ),
            _ => format!(
                "{} of {} groups have a known leader; membership changes wait",
                view.groups.len(),
                view.group_count
            ),
        };
        return Plan {
            statefulset_replicas: observed.statefulset_replicas.max(keep).max(desired),
            step: Step::None,
            progress: None,
            blocked: blocked("QuorumLost", message),
        };
    }

    let statefulset_replicas = desired.max(keep);
    let mut plan = Plan {
        statefulset_replicas,
        step: Step::None,
        progress: None,
        blocked: None,
    };

    if let Some(g) = view.groups.values().find(|g| g.joint) {
        plan.blocked = blocked(
            "MembershipChanging",
            format!("group {} is leaving a joint configuration", g.group),
        );
        return plan;
    }

    // A voter that reports an empty volume lost its data: remove it, then
    // add it back as a learner below.
    for (&ord, replica) in &observed.replicas {
        let lost = replica
            .status
            .as_ref()
            .is_some_and(|s| s.awaiting_membership);
        if !lost || !view.voter_anywhere(ord) {
            continue;
        }
        if !view.can_remove_voter(ord) {
            plan.blocked = blocked(
                "ReplaceBlocked",
                format!(
                    "replica {ord} lost its volume, but removing it would leave too few healthy voters; \
                     restore the other replicas first"
                ),
            );
            return plan;
        }
        if let Some(step) = hand_over(observed, &view, ord) {
            match step {
                Ok(step) => plan.step = step,
                Err(message) => plan.blocked = blocked("ReplaceBlocked", message),
            }
            return plan;
        }
        let group = scope(&view, |g| g.is_member(ord)).unwrap_or(None);
        plan.step = Step::Remove {
            ordinal: ord,
            group,
            replacing: true,
        };
        plan.progress = progress(
            "ReplacingMember",
            format!("replica {ord} lost its volume: removing it to add it back as a learner"),
        );
        return plan;
    }

    // Scale in: the highest ordinal the spec no longer wants goes first.
    if let Some(&victim) = members.iter().rev().find(|m| **m >= desired) {
        let count = members.len();
        plan.progress = progress(
            "ScalingIn",
            format!("removing replica {victim} ({count} members, {desired} wanted)"),
        );
        if view.voter_anywhere(victim) && !view.can_remove_voter(victim) {
            plan.blocked = blocked(
                "ScaleInBlocked",
                format!(
                    "removing replica {victim} would leave too few healthy voters; waiting for the others to recover"
                ),
            );
            return plan;
        }
        if let Some(step) = hand_over(observed, &view, victim) {
            match step {
                Ok(step) => plan.step = step,
                Err(message) => plan.blocked = blocked("ScaleInBlocked", message),
            }
            return plan;
        }
        let group = scope(&view, |g| g.is_member(victim)).unwrap_or(None);
        plan.step = Step::Remove {
            ordinal: victim,
            group,
            replacing: false,
        };
        return plan;
    }

    // Replicas the spec wants that are not voters everywhere yet, lowest
    // ordinal first: add each as a learner where it is missing (once its
    // pod answers), then promote it once caught up in every group.
    if let Some(next) = (0..desired).find(|o| view.groups.values().any(|g| !g.voters.contains(o))) {
        if let Some(group) = scope(&view, |g| !g.is_member(next)) {
            let answered = observed.replicas.get(&next).is_some_and(|r| {
                r.status.is_some() && r.pod.as_ref().is_some_and(|p| !p.terminating)
            });
            if answered {
                plan.step = Step::AddLearner {
                    ordinal: next,
                    group,
                };
                plan.progress = progress(
                    "ScalingOut",
                    format!(
                        "adding replica {next} as a learner ({} members, {desired} wanted)",
                        members.len()
                    ),
                );
            } else {
                plan.progress = progress(
                    "ScalingOut",
                    format!("waiting for replica {next} to start so it can be added"),
                );
            }
            return plan;
        }
        let behind: Vec<String> = view
            .groups
            .values()
            .filter(|g| g.learners.contains(&next) && !g.caught_up(next))
            .map(|g| {
                let matched = g.progress.get(&next).map_or(0, |p| p.0);
                format!("group {} at {matched} of {}", g.group, g.commit)
            })
            .collect();
        if behind.is_empty() {
            let group = scope(&view, |g| g.learners.contains(&next)).unwrap_or(None);
            plan.step = Step::Promote {
                ordinal: next,
                group,
            };
            plan.progress = progress(
                "ScalingOut",
                format!("promoting replica {next}, caught up, to voter"),
            );
        } else {
            plan.progress = progress(
                "LearnerCatchingUp",
                format!("replica {next} is catching up: {}", behind.join(", ")),
            );
        }
        return plan;
    }

    if observed.statefulset_replicas != statefulset_replicas {
        let reason = if observed.statefulset_replicas > statefulset_replicas {
            "ScalingIn"
        } else {
            "ScalingOut"
        };
        plan.progress = progress(
            reason,
            format!(
                "resizing the StatefulSet from {} to {statefulset_replicas}",
                observed.statefulset_replicas
            ),
        );
        return plan;
    }

    rolling_update(observed, &view, plan)
}

/// One step of a leader-aware rolling update, when pods run an old
/// template and the membership is settled.
fn rolling_update(observed: &Observed, view: &ClusterView, mut plan: Plan) -> Plan {
    let pods = || {
        observed
            .replicas
            .iter()
            .filter(|(o, _)| **o < plan.statefulset_replicas)
            .filter_map(|(o, r)| r.pod.as_ref().map(|p| (*o, p)))
    };
    let outdated: Vec<u32> = pods().filter(|(_, p)| !p.updated).map(|(o, _)| o).collect();
    let total = plan.statefulset_replicas;
    if outdated.is_empty() {
        // Pods the StatefulSet has not recreated yet count as not ready.
        let missing =
            (0..total).filter(|o| observed.replicas.get(o).is_none_or(|r| r.pod.is_none()));
        if let Some(o) = missing.into_iter().next() {
            plan.progress = progress(
                "WaitingForReplicas",
                format!("waiting for the pod of replica {o}"),
            );
        }
        return plan;
    }
    let members = view.members();
    // Non-members first (nothing depends on them), then members that are
    // unhealthy anyway, then followers from the highest ordinal, leaders last.
    let candidate = *outdated
        .iter()
        .min_by_key(|o| {
            let member = members.contains(o);
            let healthy = view.healthy.contains(o);
            let leads = !view.led_by(**o).is_empty();
            (member, healthy, leads, std::cmp::Reverse(**o))
        })
        .unwrap_or(&outdated[0]);
    let updated = total as usize - outdated.len();
    plan.progress = progress(
        "RollingUpdate",
        format!("{updated} of {total} replicas updated; next: replica {candidate}"),
    );
    let unhealthy: Vec<u32> = members
        .iter()
        .copied()
        .filter(|m| *m != candidate && !view.healthy.contains(m))
        .collect();
    let unready: Vec<u32> = pods()
        .filter(|(o, p)| *o != candidate && (!p.ready || p.terminating))
        .map(|(o, _)| o)
        .collect();
    if !unhealthy.is_empty() || !unready.is_empty() || !view.can_stop(candidate) {
        let mut waiting: Vec<u32> = unhealthy.into_iter().chain(unready).collect();
        waiting.sort_unstable();
        waiting.dedup();
        plan.blocked = blocked(
            "RollingUpdateBlocked",
            format!(
                "rolling update paused before replica {candidate}: replicas {waiting:?} are not healthy and caught up"
            ),
        );
        return plan;
    }
    if members.contains(&candidate)
        && let Some(step) = hand_over(observed, view, candidate)
    {
        match step {
            Ok(step) => plan.step = step,
            Err(message) => plan.blocked = blocked("RollingUpdateBlocked", message),
        }
        return plan;
    }
    plan.step = Step::DeletePod { ordinal: candidate };
    plan
}
