//! The contract of the multi layer: routing, one envelope per peer, and idle
//! traffic that does not grow with the number of groups. Driven through a
//! small synchronous cluster (instant network, instant disk); the
//! simulation covers faults.

use super::*;
use crate::raft::{Config, RecoveredState, Role};
use bytes::Bytes;

struct Cluster {
    nodes: BTreeMap<NodeId, MultiRaft>,
    /// Envelopes sent since the counter was last reset.
    sent: usize,
    /// Confirmed reads, per node.
    reads: Vec<(NodeId, crate::raft::ReadState)>,
}

impl Cluster {
    fn new(nodes: u64, groups: u64) -> Cluster {
        let ids: Vec<NodeId> = (1..=nodes).map(NodeId).collect();
        let mut out = BTreeMap::new();
        for &id in &ids {
            let mut multi = MultiRaft::new(id);
            for g in 0..groups {
                let mut config = Config::new(id);
                config.seed = id.0 * 1000 + g;
                let raft = Raft::new(config, RecoveredState::bootstrap(ids.clone())).unwrap();
                multi.add_group(GroupId(g), raft);
            }
            out.insert(id, multi);
        }
        Cluster {
            nodes: out,
            sent: 0,
            reads: Vec::new(),
        }
    }

    /// Handles readies and delivers envelopes until nothing moves.
    fn settle(&mut self) {
        for _ in 0..100 {
            let mut inbox = Vec::new();
            for (&id, multi) in self.nodes.iter_mut() {
                while multi.has_ready() {
                    let rd = multi.ready();
                    for (_, r) in &rd.groups {
                        self.reads.extend(r.read_states.iter().map(|s| (id, *s)));
                    }
                    let mut peers: Vec<NodeId> = rd.messages.iter().map(|e| e.to).collect();
                    peers.dedup();
                    assert_eq!(peers.len(), rd.messages.len(), "one envelope per peer");
                    let done = rd.persisted();
                    inbox.extend(rd.messages);
                    multi.on_persisted(&done);
                    inbox.extend(rd.persisted_messages);
                }
            }
            if inbox.is_empty() {
                return;
            }
            for envelope in inbox {
                self.sent += 1;
                let to = self.nodes.get_mut(&envelope.to).unwrap();
                assert!(to.step(envelope).is_empty());
            }
        }
        panic!("the cluster did not settle");
    }

    fn tick(&mut self) {
        for multi in self.nodes.values_mut() {
            multi.tick();
        }
        self.settle();
    }

    fn leaders(&self) -> BTreeMap<GroupId, NodeId> {
        let mut out = BTreeMap::new();
        for (&id, multi) in &self.nodes {
            for (g, raft) in multi.groups() {
                if raft.role() == Role::Leader {
                    out.insert(g, id);
                }
            }
        }
        out
    }

    /// Elects a leader in every group, spread over the nodes round-robin.
    fn elect_spread(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let groups: Vec<GroupId> = self.nodes[&ids[0]].group_ids().collect();
        for (i, &g) in groups.iter().enumerate() {
            let id = ids[i % ids.len()];
            self.nodes
                .get_mut(&id)
                .unwrap()
                .group_mut(g)
                .unwrap()
                .campaign();
            self.settle();
        }
        assert_eq!(
            self.leaders().len(),
            groups.len(),
            "every group has a leader"
        );
    }

    /// Envelopes per tick, averaged over `ticks` idle ticks.
    fn idle_envelopes_per_tick(&mut self, ticks: usize) -> f64 {
        for _ in 0..3 {
            self.tick();
        }
        self.sent = 0;
        for _ in 0..ticks {
            self.tick();
        }
        self.sent as f64 / ticks as f64
    }
}

#[test]
fn idle_traffic_is_one_envelope_per_node_pair_whatever_the_group_count() {
    let mut one = Cluster::new(3, 1);
    one.elect_spread();
    let one_rate = one.idle_envelopes_per_tick(50);
    assert_eq!(one_rate, 4.0, "2 heartbeats and 2 held answers per tick");

    let mut many = Cluster::new(3, 256);
    many.elect_spread();
    let many_rate = many.idle_envelopes_per_tick(50);
    assert_eq!(many_rate, 6.0, "every directed pair once per tick");
    assert!(many_rate / one_rate <= 1.5);
}

#[test]
fn reads_are_confirmed_without_waiting_for_a_tick() {
    let mut c = Cluster::new(3, 2);
    c.elect_spread();
    c.tick();
    let leader = c.leaders()[&GroupId(0)];
    let multi = c.nodes.get_mut(&leader).unwrap();
    multi.group_mut(GroupId(0)).unwrap().read_index(7);
    // No tick: the read's heartbeat round and its answers travel at once.
    c.settle();
    let contexts: Vec<_> = c.reads.iter().map(|(id, r)| (*id, r.context)).collect();
    assert_eq!(contexts, vec![(leader, 7)]);
}

#[test]
fn messages_for_unknown_groups_are_handed_back() {
    let mut multi = MultiRaft::new(NodeId(2));
    let message = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: crate::raft::Term(3),
        body: MessageBody::Heartbeat {
            commit: crate::raft::LogIndex(0),
            read_round: 0,
        },
    };
    let undelivered = multi.step(Envelope {
        from: NodeId(1),
        to: NodeId(2),
        messages: vec![GroupMessage {
            group: GroupId(9),
            message: message.clone(),
        }],
    });
    assert_eq!(undelivered.unknown_group.len(), 1);
    assert_eq!(undelivered.unknown_group[0].group, GroupId(9));
    let misaddressed = multi.step(Envelope {
        from: NodeId(1),
        to: NodeId(3),
        messages: vec![GroupMessage {
            group: GroupId(9),
            message,
        }],
    });
    assert!(misaddressed.misaddressed);
}

#[test]
fn proposals_of_many_groups_commit_through_shared_envelopes() {
    let mut c = Cluster::new(3, 8);
    c.elect_spread();
    for (g, id) in c.leaders() {
        let raft = c.nodes.get_mut(&id).unwrap().group_mut(g).unwrap();
        raft.propose(Bytes::from_static(b"x")).unwrap();
    }
    c.settle();
    c.tick();
    for multi in c.nodes.values() {
        for (_, raft) in multi.groups() {
            // bootstrap snapshot (1) + leader no-op (2) + the proposal (3)
            assert_eq!(raft.applied().0, 3);
        }
    }
}
