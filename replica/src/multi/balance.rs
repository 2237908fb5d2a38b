//! Leader balancing: which leadership transfers spread the leaders of a
//! node set's groups evenly over its nodes.
//!
//! Leaders do more work than followers (they serve writes and reads and send
//! the heartbeats), so a node that leads most groups is a hot spot, and idle
//! traffic is only minimal when every node leads some groups (see the
//! coalescing rule in the parent module). This is a pure planning function:
//! the caller asks each group's leader to transfer leadership.

use crate::raft::{GroupId, NodeId};
use std::collections::BTreeMap;

/// Ask the leader of `group` (`from`) to hand leadership to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderTransfer {
    pub group: GroupId,
    pub from: NodeId,
    pub to: NodeId,
}

/// Transfers after which no node leads more than one group more than any
/// other voter it could hand a group to. `groups` gives, per group, its
/// current leader and its voters (a transfer only goes to a voter).
///
/// Deterministic: the same input gives the same plan. Each transfer lowers
/// the sum of squared leader counts, so the plan is finite, and no group is
/// moved twice.
pub fn plan_leader_transfers<'a>(
    groups: impl IntoIterator<Item = (GroupId, NodeId, &'a [NodeId])>,
) -> Vec<LeaderTransfer> {
    let groups: Vec<(GroupId, NodeId, &[NodeId])> = groups.into_iter().collect();
    let mut count: BTreeMap<NodeId, usize> = BTreeMap::new();
    for (_, leader, voters) in &groups {
        for v in voters.iter() {
            count.entry(*v).or_insert(0);
        }
        *count.entry(*leader).or_insert(0) += 1;
    }
    let mut leader: BTreeMap<GroupId, NodeId> = groups.iter().map(|(g, l, _)| (*g, *l)).collect();
    let mut moved: BTreeMap<GroupId, LeaderTransfer> = BTreeMap::new();
    loop {
        // The best single move: from the most loaded leader to its least
        // loaded fellow voter, if that narrows the gap.
        let mut best: Option<(usize, usize, GroupId, NodeId, NodeId)> = None;
        for (g, _, voters) in &groups {
            if moved.contains_key(g) {
                continue;
            }
            let from = leader[g];
            let from_count = count[&from];
            for &to in voters.iter() {
                let to_count = count[&to];
                if to == from || to_count + 1 >= from_count {
                    continue;
                }
                // Prefer the largest gap; ties broken by ids (determinism).
                let key = (from_count - to_count, usize::MAX - to_count, *g, from, to);
                let better = match best {
                    None => true,
                    Some((gap, inv, bg, bf, bt)) => {
                        (key.0, key.1) > (gap, inv)
                            || ((key.0, key.1) == (gap, inv)
                                && (key.2, key.3, key.4) < (bg, bf, bt))
                    }
                };
                if better {
                    best = Some(key);
                }
            }
        }
        let Some((_, _, group, from, to)) = best else {
            break;
        };
        *count.get_mut(&from).expect("counted") -= 1;
        *count.get_mut(&to).expect("counted") += 1;
        leader.insert(group, to);
        moved.insert(group, LeaderTransfer { group, from, to });
    }
    moved.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> Vec<NodeId> {
        v.iter().copied().map(NodeId).collect()
    }

    #[test]
    fn spreads_leaders_evenly_over_voters() {
        let voters = ids(&[1, 2, 3]);
        let groups: Vec<(GroupId, NodeId, &[NodeId])> = (0..9)
            .map(|g| (GroupId(g), NodeId(1), voters.as_slice()))
            .collect();
        let plan = plan_leader_transfers(groups);
        assert_eq!(plan.len(), 6, "three of nine groups stay on node 1");
        let mut per_node = BTreeMap::new();
        for t in &plan {
            assert_eq!(t.from, NodeId(1));
            *per_node.entry(t.to).or_insert(0) += 1;
        }
        assert_eq!(per_node[&NodeId(2)], 3);
        assert_eq!(per_node[&NodeId(3)], 3);
    }

    #[test]
    fn never_moves_a_leader_to_a_non_voter_nor_when_balanced() {
        let a = ids(&[1, 2]);
        let b = ids(&[1, 3]);
        let plan = plan_leader_transfers(vec![
            (GroupId(1), NodeId(1), a.as_slice()),
            (GroupId(2), NodeId(1), a.as_slice()),
            (GroupId(3), NodeId(3), b.as_slice()),
        ]);
        // Node 1 leads 2, node 3 leads 1, node 2 leads 0: one of node 1's
        // groups of `a` moves to node 2; group 3 stays.
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].to, NodeId(2));
        assert!(plan_leader_transfers(vec![(GroupId(1), NodeId(1), a.as_slice())]).is_empty());
    }
}
