//! The planner against hand-built observations: each test is one situation
//! a cluster can be in and the one step the operator must take.

use super::*;
use crate::names::node_id;
use kuberaft_proto::admin as pb;
use std::collections::BTreeMap;

/// A cluster in which `voters` and `learners` (ordinals) are members of
/// every group, `leader` leads every group, and every replica in `pods` has
/// a ready, updated pod and answers.
struct Cluster {
    groups: u64,
    voters: Vec<u32>,
    learners: Vec<u32>,
    leader: u32,
    pods: Vec<u32>,
    commit: u64,
    /// Per ordinal: match index (default: commit).
    matched: BTreeMap<u32, u64>,
}

impl Cluster {
    fn new(voters: &[u32], leader: u32) -> Cluster {
        Cluster {
            groups: 1,
            voters: voters.to_vec(),
            learners: vec![],
            leader,
            pods: voters.to_vec(),
            commit: 1000,
            matched: BTreeMap::new(),
        }
    }

    fn status(&self, ord: u32) -> pb::NodeStatus {
        let ids = |v: &[u32]| v.iter().map(|o| node_id(*o)).collect::<Vec<_>>();
        let member = self.voters.contains(&ord) || self.learners.contains(&ord);
        let groups = (0..self.groups)
            .map(|g| {
                let role = if ord == self.leader {
                    pb::Role::Leader
                } else if self.learners.contains(&ord) {
                    pb::Role::Learner
                } else {
                    pb::Role::Follower
                };
                let progress = if ord == self.leader {
                    self.voters
                        .iter()
                        .chain(self.learners.iter())
                        .filter(|o| **o != ord)
                        .map(|o| pb::FollowerProgress {
                            node: node_id(*o),
                            match_index: *self.matched.get(o).unwrap_or(&self.commit),
                            next_index: self.commit + 1,
                            state: "replicate".into(),
                            recent_active: self.pods.contains(o),
                        })
                        .collect()
                } else {
                    vec![]
                };
                pb::GroupStatus {
                    group: g,
                    role: role as i32,
                    term: 7,
                    leader: node_id(self.leader),
                    commit_index: self.commit,
                    applied_index: self.commit,
                    voters: if member { ids(&self.voters) } else { vec![] },
                    learners: if member { ids(&self.learners) } else { vec![] },
                    progress,
                    ..pb::GroupStatus::default()
                }
            })
            .collect();
        pb::NodeStatus {
            node_id: node_id(ord),
            name: format!("kv-{ord}"),
            groups,
            ready: member,
            awaiting_membership: !member,
            ..pb::NodeStatus::default()
        }
    }

    fn observe(&self, desired: u32, statefulset: u32) -> Observed {
        let replicas = self
            .pods
            .iter()
            .map(|&o| {
                (
                    o,
                    ReplicaView {
                        pod: Some(PodView {
                            ready: true,
                            updated: true,
                            terminating: false,
                        }),
                        status: Some(self.status(o)),
                    },
                )
            })
            .collect();
        Observed {
            desired,
            groups: self.groups as u32,
            statefulset_replicas: statefulset,
            bootstrapped: true,
            bootstrap_replicas: 3,
            replicas,
        }
    }
}

#[test]
fn a_settled_cluster_needs_nothing() {
    let c = Cluster::new(&[0, 1, 2], 0);
    let p = plan(&c.observe(3, 3));
    assert_eq!(p.step, Step::None);
    assert_eq!(p.statefulset_replicas, 3);
    assert_eq!(p.progress, None);
    assert_eq!(p.blocked, None);
}

#[test]
fn before_bootstrap_the_statefulset_has_the_initial_size_and_nothing_else_happens() {
    let c = Cluster::new(&[0, 1, 2], 0);
    let mut o = c.observe(5, 0);
    o.bootstrapped = false;
    let p = plan(&o);
    assert_eq!(p.statefulset_replicas, 3);
    assert_eq!(p.step, Step::None);
    assert_eq!(p.progress.map(|p| p.reason), Some("Bootstrapping"));
}

#[test]
fn scale_up_grows_the_statefulset_then_adds_one_learner_at_a_time() {
    let c = Cluster::new(&[0, 1, 2], 0);
    let p = plan(&c.observe(5, 3));
    assert_eq!(p.statefulset_replicas, 5);
    assert_eq!(p.step, Step::None, "pods 3 and 4 do not exist yet");
    assert_eq!(p.progress.as_ref().map(|p| p.reason), Some("ScalingOut"));

    let mut c = c;
    c.pods = vec![0, 1, 2, 3, 4];
    let p = plan(&c.observe(5, 5));
    assert_eq!(
        p.step,
        Step::AddLearner {
            ordinal: 3,
            group: None
        }
    );
}

#[test]
fn a_learner_is_promoted_only_once_caught_up_and_before_the_next_is_added() {
    let mut c = Cluster::new(&[0, 1, 2], 0);
    c.learners = vec![3];
    c.pods = vec![0, 1, 2, 3, 4];
    c.matched.insert(3, 10);
    let p = plan(&c.observe(5, 5));
    assert_eq!(p.step, Step::None);
    assert_eq!(p.progress.map(|p| p.reason), Some("LearnerCatchingUp"));

    c.matched.insert(3, 1000);
    let p = plan(&c.observe(5, 5));
    assert_eq!(
        p.step,
        Step::Promote {
            ordinal: 3,
            group: None
        }
    );
}

#[test]
fn scale_down_removes_the_highest_ordinal_and_keeps_the_statefulset_until_it_is_gone() {
    let mut c = Cluster::new(&[0, 1, 2, 3, 4], 0);
    c.pods = vec![0, 1, 2, 3, 4];
    let p = plan(&c.observe(3, 5));
    assert_eq!(
        p.step,
        Step::Remove {
            ordinal: 4,
            group: None,
            replacing: false
        }
    );
    assert_eq!(p.statefulset_replicas, 5, "never below the members");

    c.voters = vec![0, 1, 2, 3];
    let p = plan(&c.observe(3, 5));
    assert_eq!(
        p.step,
        Step::Remove {
            ordinal: 3,
            group: None,
            replacing: false
        }
    );
    assert_eq!(p.statefulset_replicas, 4);

    c.voters = vec![0, 1, 2];
    let p = plan(&c.observe(3, 4));
    assert_eq!(p.step, Step::None);
    assert_eq!(p.statefulset_replicas, 3);
    assert_eq!(p.progress.map(|p| p.reason), Some("ScalingIn"));
}

#[test]
fn a_leader_about_to_be_removed_hands_over_first() {
    let c = Cluster::new(&[0, 1, 2, 3, 4], 4);
    let p = plan(&c.observe(3, 5));
    match p.step {
        Step::TransferLeader {
            from: 4,
            group: 0,
            to,
        } => assert!(to < 3, "to {to} stays"),
        other => panic!("expected a transfer, got {other:?}"),
    }
}

#[test]
fn a_missing_pod_never_removes_a_member() {
    let mut c = Cluster::new(&[0, 1, 2], 0);
    c.pods = vec![0, 1];
    let p = plan(&c.observe(3, 3));
    assert_eq!(p.step, Step::None);
    assert_eq!(p.statefulset_replicas, 3);
}

#[test]
fn scale_down_waits_when_removing_would_cost_the_quorum() {
    // 0, 1 are down: removing 4 of 5 would leave 2 healthy of 4 (quorum 3).
    let mut c = Cluster::new(&[0, 1, 2, 3, 4], 2);
    c.pods = vec![2, 3, 4];
    let p = plan(&c.observe(3, 5));
    assert_eq!(p.step, Step::None);
    assert_eq!(p.blocked.map(|b| b.reason), Some("ScaleInBlocked"));
    assert_eq!(p.statefulset_replicas, 5);
}

#[test]
fn without_a_quorum_nothing_changes_and_nothing_shrinks() {
    let mut c = Cluster::new(&[0, 1, 2], 0);
    c.pods = vec![0];
    let p = plan(&c.observe(1, 3));
    assert_eq!(p.step, Step::None);
    assert_eq!(p.blocked.map(|b| b.reason), Some("QuorumLost"));
    assert_eq!(p.statefulset_replicas, 3);
}

#[test]
fn a_voter_with_an_empty_volume_is_removed_then_added_back_as_a_learner() {
    let c = Cluster::new(&[0, 1, 2], 0);
    let mut o = c.observe(3, 3);
    let lost = o
        .replicas
        .get_mut(&2)
        .and_then(|r| r.status.as_mut())
        .unwrap();
    lost.awaiting_membership = true;
    lost.groups.iter_mut().for_each(|g| {
        g.voters.clear();
        g.role = pb::Role::Follower as i32;
    });
    let p = plan(&o);
    assert_eq!(
        p.step,
        Step::Remove {
            ordinal: 2,
            group: None,
            replacing: true
        }
    );
    assert_eq!(p.progress.map(|p| p.reason), Some("ReplacingMember"));

    // Once removed, it is added back.
    let mut c = c;
    c.voters = vec![0, 1];
    let p = plan(&c.observe(3, 3));
    assert_eq!(
        p.step,
        Step::AddLearner {
            ordinal: 2,
            group: None
        }
    );
}

#[test]
fn a_learner_still_receiving_its_first_snapshot_is_not_a_lost_volume() {
    let mut c = Cluster::new(&[0, 1, 2], 0);
    c.learners = vec![3];
    c.pods = vec![0, 1, 2, 3];
    c.matched.insert(3, 0);
    let mut o = c.observe(4, 4);
    o.replicas
        .get_mut(&3)
        .and_then(|r| r.status.as_mut())
        .unwrap()
        .awaiting_membership = true;
    let p = plan(&o);
    assert_eq!(p.step, Step::None);
    assert_eq!(p.progress.map(|p| p.reason), Some("LearnerCatchingUp"));
}

#[test]
fn a_change_missing_in_one_group_is_repaired_in_that_group_only() {
    let mut c = Cluster::new(&[0, 1, 2], 0);
    c.groups = 3;
    c.pods = vec![0, 1, 2, 3];
    let mut o = c.observe(4, 4);
    // Group 1 already has replica 3 as a learner (a partial earlier call).
    for r in o.replicas.values_mut() {
        let s = r.status.as_mut().unwrap();
        if s.node_id == 1 {
            let g1 = &mut s.groups[1];
            g1.learners.push(node_id(3));
            g1.progress.push(pb::FollowerProgress {
                node: 4,
                match_index: 0,
                recent_active: true,
                ..Default::default()
            });
        }
    }
    let p = plan(&o);
    assert_eq!(
        p.step,
        Step::AddLearner {
            ordinal: 3,
            group: Some(0)
        },
        "groups 0 and 2 still lack the learner; group 1 must not get it twice"
    );
}

fn outdated(o: &mut Observed, ordinals: &[u32]) {
    for ord in ordinals {
        o.replicas
            .get_mut(ord)
            .unwrap()
            .pod
            .as_mut()
            .unwrap()
            .updated = false;
    }
}

#[test]
fn rolling_update_restarts_followers_first_highest_ordinal_first() {
    let c = Cluster::new(&[0, 1, 2], 1);
    let mut o = c.observe(3, 3);
    outdated(&mut o, &[0, 1, 2]);
    let p = plan(&o);
    assert_eq!(p.step, Step::DeletePod { ordinal: 2 });
    assert_eq!(p.progress.map(|p| p.reason), Some("RollingUpdate"));
}

#[test]
fn rolling_update_moves_leadership_to_an_updated_voter_before_the_leader_restarts() {
    let c = Cluster::new(&[0, 1, 2], 1);
    let mut o = c.observe(3, 3);
    outdated(&mut o, &[1]);
    let p = plan(&o);
    match p.step {
        Step::TransferLeader {
            from: 1,
            group: 0,
            to,
        } => assert_ne!(to, 1),
        other => panic!("expected a transfer, got {other:?}"),
    }
}

#[test]
fn rolling_update_stops_while_another_member_is_unhealthy() {
    let mut c = Cluster::new(&[0, 1, 2, 3, 4], 0);
    c.pods = vec![0, 1, 2, 3, 4];
    c.matched.insert(3, 5); // far behind
    let mut o = c.observe(5, 5);
    outdated(&mut o, &[4]);
    let p = plan(&o);
    assert_eq!(p.step, Step::None);
    let b = p.blocked.expect("blocked");
    assert_eq!(b.reason, "RollingUpdateBlocked");
    assert!(b.message.contains("[3]"), "{}", b.message);
}

#[test]
fn rolling_update_waits_for_the_restarted_pod_to_catch_up() {
    let mut c = Cluster::new(&[0, 1, 2], 0);
    c.matched.insert(2, 3);
    let mut o = c.observe(3, 3);
    outdated(&mut o, &[1, 0]);
    let p = plan(&o);
    assert_eq!(p.step, Step::None);
    assert_eq!(p.blocked.map(|b| b.reason), Some("RollingUpdateBlocked"));
}
