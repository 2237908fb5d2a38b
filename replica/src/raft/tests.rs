//! Unit tests of the whole state machine through a tiny synchronous
//! network: every message is delivered at once and every write is durable
//! at once. The scenario files and the simulation test the hard cases; these
//! pin down the basic contract quickly.

use super::*;
use bytes::Bytes;
use std::collections::BTreeMap;

struct Cluster {
    nodes: BTreeMap<NodeId, Raft>,
    applied: BTreeMap<NodeId, Vec<Entry>>,
    reads: BTreeMap<NodeId, Vec<ReadState>>,
    /// Nodes whose messages are dropped (in and out).
    down: Vec<NodeId>,
}

impl Cluster {
    fn new(n: u64) -> Cluster {
        let ids: Vec<NodeId> = (1..=n).map(NodeId).collect();
        let mut nodes = BTreeMap::new();
        for &id in &ids {
            let raft = Raft::new(Config::new(id), RecoveredState::bootstrap(ids.clone())).unwrap();
            nodes.insert(id, raft);
        }
        Cluster {
            nodes,
            applied: BTreeMap::new(),
            reads: BTreeMap::new(),
            down: Vec::new(),
        }
    }

    fn add_empty(&mut self, id: NodeId) {
        self.nodes.insert(
            id,
            Raft::new(Config::new(id), RecoveredState::default()).unwrap(),
        );
    }

    fn node(&mut self, id: u64) -> &mut Raft {
        self.nodes.get_mut(&NodeId(id)).unwrap()
    }

    /// Processes readies and delivers messages until nothing moves.
    fn stabilize(&mut self) {
        for _ in 0..1000 {
            let mut inbox = Vec::new();
            for (&id, raft) in self.nodes.iter_mut() {
                while raft.has_ready() {
                    let rd = raft.ready();
                    self.applied
                        .entry(id)
                        .or_default()
                        .extend(rd.committed_entries.clone());
                    self.reads
                        .entry(id)
                        .or_default()
                        .extend(rd.read_states.clone());
                    inbox.extend(rd.messages);
                    raft.on_persisted(rd.number);
                    inbox.extend(rd.persisted_messages);
                }
            }
            if inbox.is_empty() {
                return;
            }
            for m in inbox {
                if self.down.contains(&m.from) || self.down.contains(&m.to) {
                    continue;
                }
                if let Some(to) = self.nodes.get_mut(&m.to) {
                    to.step(m);
                }
            }
        }
        panic!("cluster did not stabilize");
    }

    fn tick_all(&mut self, n: usize) {
        for _ in 0..n {
            for (id, raft) in self.nodes.iter_mut() {
                if !self.down.contains(id) {
                    raft.tick();
                }
            }
            self.stabilize();
        }
    }

    fn leader(&self) -> Option<NodeId> {
        let leaders: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(id, r)| r.role() == Role::Leader && !self.down.contains(id))
            .map(|(&id, _)| id)
            .collect();
        assert!(
            leaders.len() <= 1 || {
                let terms: Vec<Term> = leaders.iter().map(|id| self.nodes[id].term()).collect();
                terms.windows(2).all(|w| w[0] != w[1])
            }
        );
        leaders.into_iter().max_by_key(|id| self.nodes[id].term())
    }

    fn commands(&self, id: u64) -> Vec<Bytes> {
        self.applied
            .get(&NodeId(id))
            .into_iter()
            .flatten()
            .filter_map(|e| match &e.payload {
                Payload::Command(b) => Some(b.clone()),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_leader_is_elected_and_commits() {
    let mut c = Cluster::new(3);
    c.node(1).campaign();
    c.stabilize();
    assert_eq!(c.leader(), Some(NodeId(1)));
    assert_eq!(c.node(2).leader(), Some(NodeId(1)));
    c.node(1).propose(Bytes::from_static(b"x")).unwrap();
    c.stabilize();
    for id in 1..=3 {
        assert_eq!(c.commands(id), vec![Bytes::from_static(b"x")], "node {id}");
    }
    let err = c.node(2).propose(Bytes::from_static(b"y")).unwrap_err();
    assert_eq!(
        err,
        ProposeError::NotLeader {
            leader: Some(NodeId(1))
        }
    );
}

#[test]
fn election_happens_by_timeout_and_survives_leader_loss() {
    let mut c = Cluster::new(3);
    c.tick_all(30);
    let first = c.leader().expect("a leader after 30 ticks");
    c.down.push(first);
    c.tick_all(50);
    let second = c.leader().expect("a new leader without the old one");
    assert_ne!(first, second);
    assert!(c.nodes[&second].term() > c.nodes[&first].term());
    c.nodes
        .get_mut(&second)
        .unwrap()
        .propose(Bytes::from_static(b"after"))
        .unwrap();
    c.stabilize();
    assert_eq!(c.commands(second.0), vec![Bytes::from_static(b"after")]);
}

#[test]
fn an_isolated_leader_steps_down_by_check_quorum() {
    let mut c = Cluster::new(3);
    c.node(1).campaign();
    c.stabilize();
    c.down.extend([NodeId(2), NodeId(3)]);
    for _ in 0..25 {
        c.node(1).tick();
        c.stabilize();
    }
    assert_eq!(c.node(1).role(), Role::Follower);
}

#[test]
fn read_index_on_leader_and_follower() {
    let mut c = Cluster::new(3);
    c.node(1).campaign();
    c.stabilize();
    c.node(1).propose(Bytes::from_static(b"a")).unwrap();
    c.stabilize();
    let commit = c.node(1).commit();
    c.node(1).read_index(7);
    c.node(3).read_index(8);
    c.stabilize();
    assert_eq!(
        c.reads[&NodeId(1)],
        vec![ReadState {
            context: 7,
            index: commit
        }]
    );
    assert_eq!(
        c.reads[&NodeId(3)],
        vec![ReadState {
            context: 8,
            index: commit
        }]
    );
}

#[test]
fn joint_change_and_leader_removal() {
    let mut c = Cluster::new(3);
    c.node(1).campaign();
    c.stabilize();
    c.add_empty(NodeId(4));
    c.add_empty(NodeId(5));
    let cc = ConfChange {
        transition: ConfChangeTransition::Auto,
        changes: vec![
            ConfChangeSingle {
                kind: ConfChangeKind::AddVoter,
                node: NodeId(4),
            },
            ConfChangeSingle {
                kind: ConfChangeKind::AddVoter,
                node: NodeId(5),
            },
            ConfChangeSingle {
                kind: ConfChangeKind::Remove,
                node: NodeId(1),
            },
        ],
    };
    c.node(1).propose_conf_change(cc).unwrap();
    c.stabilize();
    // The joint configuration was left automatically; node 1 removed itself.
    let conf = c.node(2).conf_state().clone();
    assert_eq!(
        conf.voters,
        vec![NodeId(2), NodeId(3), NodeId(4), NodeId(5)]
    );
    assert!(!conf.is_joint());
    assert_ne!(c.node(1).role(), Role::Leader);
    c.tick_all(30);
    let leader = c.leader().expect("the remaining voters elect a leader");
    assert_ne!(leader, NodeId(1));
    c.nodes
        .get_mut(&leader)
        .unwrap()
        .propose(Bytes::from_static(b"z"))
        .unwrap();
    c.stabilize();
    assert_eq!(c.commands(5), vec![Bytes::from_static(b"z")]);
}

#[test]
fn a_learner_catches_up_through_a_snapshot() {
    let mut c = Cluster::new(3);
    c.node(1).campaign();
    c.stabilize();
    for i in 0..5u8 {
        c.node(1).propose(Bytes::copy_from_slice(&[i])).unwrap();
    }
    c.stabilize();
    let meta = c.node(1).applied_snapshot_meta();
    c.node(1).compact(meta.clone());
    assert_eq!(c.node(1).snapshot_meta(), Some(&meta));
    c.add_empty(NodeId(4));
    c.node(1)
        .propose_conf_change(ConfChange::single(ConfChangeKind::AddLearner, NodeId(4)))
        .unwrap();
    c.stabilize();
    c.tick_all(2);
    assert_eq!(c.node(4).applied(), c.node(1).applied());
    assert_eq!(c.node(4).snapshot_meta().map(|m| m.index), Some(meta.index));
    c.node(1)
        .propose_conf_change(ConfChange::single(ConfChangeKind::AddVoter, NodeId(4)))
        .unwrap();
    c.stabilize();
    assert!(c.node(4).conf_state().voters.contains(&NodeId(4)));
}

#[test]
fn leader_transfer_hands_over() {
    let mut c = Cluster::new(3);
    c.node(1).campaign();
    c.stabilize();
    c.node(1).transfer_leader(NodeId(3)).unwrap();
    c.stabilize();
    assert_eq!(c.leader(), Some(NodeId(3)));
    assert_eq!(c.node(1).leader(), Some(NodeId(3)));
}

#[test]
fn an_empty_node_never_votes() {
    let mut c = Cluster::new(1);
    c.add_empty(NodeId(2));
    let m = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(5),
        body: MessageBody::RequestVote {
            pre_vote: false,
            last_index: LogIndex(9),
            last_term: Term(5),
            transfer: false,
        },
    };
    c.node(2).step(m);
    let rd = c.node(2).ready();
    assert!(matches!(
        rd.persisted_messages[0].body,
        MessageBody::RequestVoteResponse { granted: false, .. }
    ));
}
