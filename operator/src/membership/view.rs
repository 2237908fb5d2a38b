//! What the replicas say about the cluster, combined: per group the Raft
//! configuration as its leader sees it, and per member whether it is
//! healthy. Built from observations only; decides nothing.

use super::observed::Observed;
use crate::names::{node_id, ordinal};
use kuberaft_proto::admin as pb;
use std::collections::{BTreeMap, BTreeSet};

/// A follower (or learner) this far behind its leader's commit index still
/// counts as caught up: under a write load the leader commits while the
/// operator looks.
pub const CATCH_UP_SLACK: u64 = 256;

/// One group's configuration, as the group's leader reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupView {
    pub group: u64,
    /// Ordinal of the leader.
    pub leader: u32,
    pub term: u64,
    pub commit: u64,
    pub voters: BTreeSet<u32>,
    pub learners: BTreeSet<u32>,
    /// A joint configuration is being left: no new change may start.
    pub joint: bool,
    /// Per follower ordinal: match index and recent activity.
    pub progress: BTreeMap<u32, (u64, bool)>,
}

impl GroupView {
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    pub fn is_member(&self, ordinal: u32) -> bool {
        self.voters.contains(&ordinal) || self.learners.contains(&ordinal)
    }

    /// Whether `ordinal` follows the leader closely enough to count.
    pub fn caught_up(&self, ordinal: u32) -> bool {
        if ordinal == self.leader {
            return true;
        }
        self.progress
            .get(&ordinal)
            .is_some_and(|&(matched, active)| active && matched + CATCH_UP_SLACK >= self.commit)
    }
}

/// The whole cluster as observed.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    /// Per group; a group missing here has no leader any replica knows of.
    pub groups: BTreeMap<u64, GroupView>,
    /// How many groups the cluster has.
    pub group_count: u64,
    /// Ordinals of replicas that are healthy: reachable, ready, with a
    /// running pod, and caught up with the leader of every group they are
    /// a member of.
    pub healthy: BTreeSet<u32>,
}

fn ordinals(ids: &[u64]) -> BTreeSet<u32> {
    ids.iter().filter_map(|id| ordinal(*id)).collect()
}

impl ClusterView {
    pub fn build(observed: &Observed) -> ClusterView {
        let mut groups: BTreeMap<u64, GroupView> = BTreeMap::new();
        for (&ord, replica) in &observed.replicas {
            let Some(status) = &replica.status else {
                continue;
            };
            for g in &status.groups {
                if g.role != pb::Role::Leader as i32 || node_id(ord) != status.node_id {
                    continue;
                }
                if groups.get(&g.group).is_some_and(|seen| seen.term >= g.term) {
                    continue;
                }
                groups.insert(
                    g.group,
                    GroupView {
                        group: g.group,
                        leader: ord,
                        term: g.term,
                        commit: g.commit_index,
                        voters: ordinals(&g.voters),
                        learners: ordinals(&g.learners),
                        joint: !g.voters_outgoing.is_empty(),
                        progress: g
                            .progress
                            .iter()
                            .filter_map(|p| {
                                Some((ordinal(p.node)?, (p.match_index, p.recent_active)))
                            })
                            .collect(),
                    },
                );
            }
        }
        let mut view = ClusterView {
            groups,
            group_count: u64::from(observed.groups.max(1)),
            healthy: BTreeSet::new(),
        };
        for (&ord, replica) in &observed.replicas {
            let Some(status) = &replica.status else {
                continue;
            };
            let pod_ok = replica
                .pod
                .as_ref()
                .is_some_and(|p| p.ready && !p.terminating);
            let caught_up = view
                .groups
                .values()
                .filter(|g| g.is_member(ord))
                .all(|g| g.caught_up(ord));
            if pod_ok && status.ready && !status.awaiting_membership && caught_up {
                view.healthy.insert(ord);
            }
        }
        view
    }

    /// Every group has a known leader.
    pub fn all_groups_led(&self) -> bool {
        self.groups.len() as u64 == self.group_count
    }

    /// Ordinals that are members (voter or learner) of any group.
    pub fn members(&self) -> BTreeSet<u32> {
        self.groups
            .values()
            .flat_map(|g| g.voters.iter().chain(g.learners.iter()).copied())
            .collect()
    }

    pub fn voter_anywhere(&self, ordinal: u32) -> bool {
        self.groups.values().any(|g| g.voters.contains(&ordinal))
    }

    pub fn learner_anywhere(&self, ordinal: u32) -> bool {
        self.groups.values().any(|g| g.learners.contains(&ordinal))
    }

    /// Groups led by `ordinal`.
    pub fn led_by(&self, ordinal: u32) -> Vec<u64> {
        self.groups
            .values()
            .filter(|g| g.leader == ordinal)
            .map(|g| g.group)
            .collect()
    }

    /// Healthy voters of a group, leaving `without` out.
    pub fn healthy_voters(&self, group: &GroupView, without: Option<u32>) -> usize {
        group
            .voters
            .iter()
            .filter(|v| Some(**v) != without && self.healthy.contains(v))
            .count()
    }

    /// The group with the fewest healthy voters beyond its quorum (the one
    /// that decides availability), with (healthy, voters, quorum).
    pub fn weakest_group(&self) -> Option<(u64, usize, usize, usize)> {
        self.groups
            .values()
            .map(|g| {
                (
                    g.group,
                    self.healthy_voters(g, None),
                    g.voters.len(),
                    g.quorum(),
                )
            })
            .min_by_key(|&(group, healthy, _, quorum)| (healthy as i64 - quorum as i64, group))
    }

    /// Every group has a leader and a healthy quorum.
    pub fn available(&self) -> bool {
        self.all_groups_led()
            && self
                .groups
                .values()
                .all(|g| self.healthy_voters(g, None) >= g.quorum())
    }

    /// Whether removing voter `ordinal` leaves every group it votes in with
    /// a healthy quorum of the smaller configuration.
    pub fn can_remove_voter(&self, ordinal: u32) -> bool {
        self.groups
            .values()
            .filter(|g| g.voters.contains(&ordinal))
            .all(|g| {
                let remaining = g.voters.len() - 1;
                remaining >= 1 && self.healthy_voters(g, Some(ordinal)) > remaining / 2
            })
    }

    /// Whether stopping `ordinal` for a while keeps a healthy quorum in
    /// every group.
    pub fn can_stop(&self, ordinal: u32) -> bool {
        self.groups
            .values()
            .all(|g| self.healthy_voters(g, Some(ordinal)) >= g.quorum())
    }
}
