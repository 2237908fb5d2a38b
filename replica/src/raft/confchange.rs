//! Applying a membership change to a configuration.
//!
//! A change that alters at most one voter can be applied in one step: any
//! majority of the old voters and any majority of the new ones intersect.
//! Anything larger goes through joint consensus: the new configuration
//! C_new is entered *together* with the old one (C_old,new), every decision
//! needs a majority of both, and a second change leaves the joint
//! configuration for C_new alone. This is the scheme of the Raft paper
//! (section 6) as etcd/raft and raft-rs implement it.

use super::types::{ConfChange, ConfChangeKind, ConfChangeTransition, ConfState, NodeId};

/// The configuration after `cc`, or why `cc` cannot be applied to `conf`.
pub fn apply(conf: &ConfState, cc: &ConfChange) -> Result<ConfState, String> {
    if cc.is_leave_joint() {
        if !conf.is_joint() {
            return Err(
                "cannot leave a joint configuration: the configuration is not joint".into(),
            );
        }
        let mut next = conf.clone();
        next.voters_outgoing.clear();
        let promoted_to_learners = std::mem::take(&mut next.learners_next);
        for id in promoted_to_learners {
            insert(&mut next.learners, id);
        }
        next.auto_leave = false;
        return check(next);
    }
    if conf.is_joint() {
        return Err(
            "a joint configuration must be left (an empty change) before the next change".into(),
        );
    }
    let joint = match cc.transition {
        ConfChangeTransition::Auto => voters_changed(conf, cc) > 1,
        ConfChangeTransition::JointImplicit | ConfChangeTransition::JointExplicit => true,
    };
    let mut next = conf.clone();
    if joint {
        next.voters_outgoing = conf.voters.clone();
        next.auto_leave = cc.transition != ConfChangeTransition::JointExplicit;
    }
    for change in &cc.changes {
        let id = change.node;
        if id.0 == 0 {
            return Err("node id 0 is reserved and cannot be a member".into());
        }
        match change.kind {
            ConfChangeKind::AddVoter => {
                insert(&mut next.voters, id);
                remove(&mut next.learners, id);
                remove(&mut next.learners_next, id);
            }
            ConfChangeKind::AddLearner => {
                remove(&mut next.voters, id);
                remove(&mut next.learners, id);
                remove(&mut next.learners_next, id);
                // A voter of C_old stays a voter until the joint
                // configuration is left; it becomes a learner then.
                if next.voters_outgoing.contains(&id) {
                    insert(&mut next.learners_next, id);
                } else {
                    insert(&mut next.learners, id);
                }
            }
            ConfChangeKind::Remove => {
                remove(&mut next.voters, id);
                remove(&mut next.learners, id);
                remove(&mut next.learners_next, id);
            }
        }
    }
    if !joint && symmetric_difference(&conf.voters, &next.voters) > 1 {
        return Err("more than one voter changes: use joint consensus".into());
    }
    check(next)
}

fn voters_changed(conf: &ConfState, cc: &ConfChange) -> usize {
    let mut voters = conf.voters.clone();
    for change in &cc.changes {
        match change.kind {
            ConfChangeKind::AddVoter => insert(&mut voters, change.node),
            ConfChangeKind::AddLearner | ConfChangeKind::Remove => remove(&mut voters, change.node),
        }
    }
    symmetric_difference(&conf.voters, &voters)
}

fn check(conf: ConfState) -> Result<ConfState, String> {
    if conf.voters.is_empty() {
        return Err("the change would leave no voters".into());
    }
    if let Some(id) = conf.learners.iter().find(|id| conf.is_voter(**id)) {
        return Err(format!("node {id} would be both a voter and a learner"));
    }
    Ok(conf)
}

fn insert(set: &mut Vec<NodeId>, id: NodeId) {
    if let Err(pos) = set.binary_search(&id) {
        set.insert(pos, id);
    }
}

fn remove(set: &mut Vec<NodeId>, id: NodeId) {
    if let Ok(pos) = set.binary_search(&id) {
        set.remove(pos);
    }
}

fn symmetric_difference(a: &[NodeId], b: &[NodeId]) -> usize {
    a.iter().filter(|id| !b.contains(id)).count() + b.iter().filter(|id| !a.contains(id)).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::ConfChangeSingle;

    fn ids(v: &[u64]) -> Vec<NodeId> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    fn change(kind: ConfChangeKind, node: u64) -> ConfChangeSingle {
        ConfChangeSingle {
            kind,
            node: NodeId(node),
        }
    }

    #[test]
    fn one_voter_change_is_simple() {
        let conf = ConfState::with_voters(ids(&[1, 2, 3]));
        let next = apply(
            &conf,
            &ConfChange::single(ConfChangeKind::AddVoter, NodeId(4)),
        )
        .unwrap();
        assert_eq!(next.voters, ids(&[1, 2, 3, 4]));
        assert!(!next.is_joint());
    }

    #[test]
    fn several_voter_changes_go_through_joint_consensus() {
        let conf = ConfState::with_voters(ids(&[1, 2, 3]));
        let cc = ConfChange {
            transition: ConfChangeTransition::Auto,
            changes: vec![
                change(ConfChangeKind::AddVoter, 4),
                change(ConfChangeKind::Remove, 1),
                change(ConfChangeKind::AddLearner, 2),
            ],
        };
        let joint = apply(&conf, &cc).unwrap();
        assert_eq!(joint.voters, ids(&[3, 4]));
        assert_eq!(joint.voters_outgoing, ids(&[1, 2, 3]));
        assert_eq!(
            joint.learners_next,
            ids(&[2]),
            "2 votes in C_old until the joint config is left"
        );
        assert!(joint.auto_leave);
        assert!(apply(&joint, &cc).is_err(), "no new change while joint");
        let left = apply(&joint, &ConfChange::leave_joint()).unwrap();
        assert_eq!(left.voters, ids(&[3, 4]));
        assert!(left.voters_outgoing.is_empty());
        assert_eq!(left.learners, ids(&[2]));
    }

    #[test]
    fn invalid_changes_are_refused() {
        let conf = ConfState::with_voters(ids(&[1]));
        assert!(
            apply(
                &conf,
                &ConfChange::single(ConfChangeKind::Remove, NodeId(1))
            )
            .is_err()
        );
        assert!(apply(&conf, &ConfChange::leave_joint()).is_err());
        let promote_two = ConfChange {
            transition: ConfChangeTransition::Auto,
            changes: vec![change(ConfChangeKind::AddLearner, 5)],
        };
        let with_learner = apply(&conf, &promote_two).unwrap();
        assert_eq!(with_learner.learners, ids(&[5]));
        let promote = apply(
            &with_learner,
            &ConfChange::single(ConfChangeKind::AddVoter, NodeId(5)),
        )
        .unwrap();
        assert_eq!(promote.voters, ids(&[1, 5]));
        assert!(promote.learners.is_empty());
    }
}
