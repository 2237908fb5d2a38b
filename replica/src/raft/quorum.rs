//! Quorum arithmetic for majority and joint configurations.
//!
//! A joint configuration (C_old,new) decides only when *both* halves decide:
//! an index is committed when it is committed in each half, an election is
//! won when it is won in each half and lost as soon as either half loses.
//! An empty half agrees to everything, so a simple configuration is a joint
//! one with an empty outgoing half.

use super::types::{ConfState, NodeId};
use std::collections::BTreeMap;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VoteResult {
    Pending,
    Lost,
    Won,
}

/// The highest value that a majority of `voters` has reached, where
/// `acked(id)` is what voter `id` has reached. `u64::MAX` for no voters.
pub fn majority_index(voters: &[NodeId], acked: impl Fn(NodeId) -> u64) -> u64 {
    if voters.is_empty() {
        return u64::MAX;
    }
    let mut values: Vec<u64> = voters.iter().map(|&id| acked(id)).collect();
    values.sort_unstable_by(|a, b| b.cmp(a));
    values[voters.len() / 2]
}

/// What a majority of `voters` decided, given the `votes` received so far.
pub fn majority_vote(voters: &[NodeId], votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let (mut granted, mut missing) = (0, 0);
    for id in voters {
        match votes.get(id) {
            Some(true) => granted += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    let quorum = voters.len() / 2 + 1;
    if granted >= quorum {
        VoteResult::Won
    } else if granted + missing >= quorum {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

/// [`majority_index`] over both halves of `conf`.
pub fn joint_index(conf: &ConfState, acked: impl Fn(NodeId) -> u64) -> u64 {
    majority_index(&conf.voters, &acked).min(majority_index(&conf.voters_outgoing, &acked))
}

/// [`majority_vote`] over both halves of `conf`.
pub fn joint_vote(conf: &ConfState, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    let incoming = majority_vote(&conf.voters, votes);
    let outgoing = majority_vote(&conf.voters_outgoing, votes);
    match (incoming, outgoing) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> Vec<NodeId> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn majority_index_is_the_median_from_the_top() {
        let voters = ids(&[1, 2, 3]);
        let acked = |id: NodeId| [0, 5, 9, 7][id.0 as usize];
        assert_eq!(majority_index(&voters, acked), 7);
        let five = ids(&[1, 2, 3, 4, 5]);
        let acked5 = |id: NodeId| [0, 1, 2, 3, 4, 5][id.0 as usize];
        assert_eq!(majority_index(&five, acked5), 3);
        let four = ids(&[1, 2, 3, 4]);
        assert_eq!(majority_index(&four, acked5), 2, "4 voters need 3 acks");
    }

    #[test]
    fn joint_index_needs_both_halves() {
        let conf = ConfState {
            voters: ids(&[1, 2, 3]),
            voters_outgoing: ids(&[3, 4, 5]),
            ..ConfState::default()
        };
        // incoming {1,2,3} reached 9,9,5 -> 9; outgoing {3,4,5} reached 5,1,1 -> 1.
        let acked = |id: NodeId| [0, 9, 9, 5, 1, 1][id.0 as usize];
        assert_eq!(joint_index(&conf, acked), 1);
    }

    #[test]
    fn votes_are_decided_as_soon_as_possible() {
        let voters = ids(&[1, 2, 3]);
        let mut votes = BTreeMap::new();
        assert_eq!(majority_vote(&voters, &votes), VoteResult::Pending);
        votes.insert(NodeId(1), true);
        votes.insert(NodeId(2), false);
        assert_eq!(majority_vote(&voters, &votes), VoteResult::Pending);
        votes.insert(NodeId(3), false);
        assert_eq!(majority_vote(&voters, &votes), VoteResult::Lost);
        votes.insert(NodeId(3), true);
        assert_eq!(majority_vote(&voters, &votes), VoteResult::Won);
        // A joint configuration loses when one half loses.
        let conf = ConfState {
            voters: ids(&[1, 2, 3]),
            voters_outgoing: ids(&[4, 5, 6]),
            ..ConfState::default()
        };
        votes.insert(NodeId(4), false);
        votes.insert(NodeId(5), false);
        assert_eq!(joint_vote(&conf, &votes), VoteResult::Lost);
    }
}
