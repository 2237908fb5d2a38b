//! Fuzz target `peer_message`: a `Batch` from a peer, as the peer service
//! receives it, decoded and stepped into the groups of a node.
//!
//! Input: a byte whose bits say after which messages the node ticks (bit
//! `i % 8` after message `i`), then the protobuf bytes of a `pb::Batch`.
//! After the last message the node ticks until every timeout has fired.
//!
//! The node (id 1, cluster "fuzz") hosts three groups of members 1, 2, 3:
//! group 0 as a follower with a few entries, group 1 as the leader with
//! entries in flight, group 2 as a replica that lost its disk and waits for
//! a snapshot. The batch goes through the same checks and decoding as in
//! the peer service, every decoded message is stepped in, and the node's
//! readies are persisted and applied to a key-value state machine per group.
//!
//! Checked, whatever the bytes:
//! - decoding fails with an error or yields messages that survive a second
//!   trip over the wire unchanged;
//! - no message a peer can send makes a core panic, lowers its term, or
//!   hands out committed entries that do not follow what was applied.

use super::split_mode;
use crate::kv::{KvStateMachine, SessionPolicy};
use crate::multi::{Envelope, GroupMessage, MultiRaft};
use crate::raft::{
    Config, GroupId, LogIndex, Message, MessageBody, NodeId, Raft, RecoveredState, Term,
};
use crate::transport::codec::{decode_message, encode_message};
use crate::transport::{PeerService, TransportConfig};
use bytes::Bytes;
use kuberaft_proto::raft as pb;
use prost::Message as _;
use std::collections::BTreeMap;
use std::path::PathBuf;

const ME: NodeId = NodeId(1);
const CLUSTER: &str = "fuzz";
const GROUPS: [GroupId; 3] = [GroupId(0), GroupId(1), GroupId(2)];

/// A node whose readies are persisted and applied at once.
struct Node {
    multi: MultiRaft,
    machines: BTreeMap<GroupId, KvStateMachine>,
    terms: BTreeMap<GroupId, Term>,
}

impl Node {
    fn new() -> Node {
        let mut multi = MultiRaft::new(ME);
        let members = [NodeId(1), NodeId(2), NodeId(3)];
        let mut machines = BTreeMap::new();
        for (group, state) in [
            (GROUPS[0], RecoveredState::bootstrap(members)),
            (GROUPS[1], RecoveredState::bootstrap(members)),
            (GROUPS[2], RecoveredState::default()),
        ] {
            let mut config = Config::new(ME);
            config.seed = 7 + group.0;
            let raft = Raft::new(config, state).expect("a valid starting state");
            let applied = raft.applied();
            multi.add_group(group, raft);
            machines.insert(
                group,
                KvStateMachine::empty_at(group, SessionPolicy::default(), applied, Term(1)),
            );
        }
        let mut node = Node {
            multi,
            machines,
            terms: BTreeMap::new(),
        };
        node.drive();
        // Group 0: a follower of node 2 holding two entries.
        node.deliver(2, GROUPS[0], append(2, 1, 1, &[b"a", b"b"], 2));
        // Group 1: node 1 wins an election (pre-vote, then vote) and
        // proposes, so it has followers to track and entries in flight.
        let raft = node.multi.group_mut(GROUPS[1]).expect("group 1");
        raft.campaign();
        node.drive();
        let term = node.multi.group(GROUPS[1]).expect("group 1").term();
        node.deliver(
            2,
            GROUPS[1],
            Message {
                from: NodeId(2),
                to: ME,
                term: term.next(),
                body: MessageBody::RequestVoteResponse {
                    pre_vote: true,
                    granted: true,
                },
            },
        );
        let term = node.multi.group(GROUPS[1]).expect("group 1").term();
        node.deliver(
            2,
            GROUPS[1],
            Message {
                from: NodeId(2),
                to: ME,
                term,
                body: MessageBody::RequestVoteResponse {
                    pre_vote: false,
                    granted: true,
                },
            },
        );
        let leader = node.multi.group_mut(GROUPS[1]).expect("group 1");
        let _ = leader.propose(Bytes::from_static(b"\x01\x01\x00\x00\x00\x01k\x01v"));
        node.drive();
        node
    }

    fn deliver(&mut self, from: u64, group: GroupId, message: Message) {
        self.multi.step(Envelope {
            from: NodeId(from),
            to: ME,
            messages: vec![GroupMessage { group, message }],
        });
        self.drive();
    }

    /// Persists and applies until nothing is left to do.
    fn drive(&mut self) {
        for _ in 0..16 {
            if !self.multi.has_ready() {
                return;
            }
            let ready = self.multi.ready();
            for (group, rd) in &ready.groups {
                let machine = self.machines.get_mut(group).expect("a hosted group");
                if let Some(meta) = &rd.snapshot {
                    // The node restores the state machine from the
                    // snapshot's data; its contents are not what this
                    // target is about.
                    *machine = KvStateMachine::empty_at(
                        *group,
                        SessionPolicy::default(),
                        meta.index,
                        meta.term,
                    );
                }
                for entry in &rd.committed_entries {
                    if let Err(e) = machine.apply(entry) {
                        panic!("group {group}: committed entries out of order: {e}");
                    }
                }
            }
            self.multi.on_persisted(&ready.persisted());
            for (group, raft) in self.multi.groups() {
                let term = raft.term();
                let before = self.terms.insert(group, term).unwrap_or(Term::ZERO);
                assert!(
                    term >= before,
                    "group {group}: term went down from {before} to {term}"
                );
            }
        }
    }
}

fn append(from: u64, prev_index: u64, term: u64, commands: &[&[u8]], commit: u64) -> Message {
    Message {
        from: NodeId(from),
        to: ME,
        term: Term(term),
        body: MessageBody::Append {
            prev_index: LogIndex(prev_index),
            prev_term: Term(1),
            entries: commands
                .iter()
                .enumerate()
                .map(|(i, c)| crate::raft::Entry {
                    term: Term(term),
                    index: LogIndex(prev_index + 1 + i as u64),
                    payload: crate::raft::Payload::Command(Bytes::copy_from_slice(c)),
                })
                .collect(),
            commit: LogIndex(commit),
        },
    }
}

fn service() -> PeerService {
    let (inbox, _) = tokio::sync::mpsc::channel(1);
    PeerService::new(
        TransportConfig::new(CLUSTER, ME, PathBuf::from("(unused)")),
        inbox,
    )
}

pub fn run(data: &[u8]) {
    let Some((ticks, rest)) = split_mode(data) else {
        return;
    };
    let Ok(batch) = pb::Batch::decode(rest) else {
        return;
    };
    let Ok(from) = service().check_addressee(&batch.cluster_id, batch.from, batch.to) else {
        return;
    };
    let mut node = Node::new();
    for (i, wire) in batch.messages.into_iter().enumerate() {
        let Ok((group, message)) = decode_message(from, ME, wire) else {
            continue;
        };
        let again = decode_message(from, ME, encode_message(group, &message));
        assert_eq!(
            again,
            Ok((group, message.clone())),
            "a decoded message changed on a second trip over the wire"
        );
        node.deliver(from.0, group, message);
        if (ticks >> (i % 8)) & 1 == 1 {
            node.multi.tick();
            node.drive();
        }
    }
    // Long enough for every timeout to fire: elections, check-quorum.
    for _ in 0..2 * Config::new(ME).election_ticks + 1 {
        node.multi.tick();
        node.drive();
    }
}

fn batch(messages: Vec<(GroupId, Message)>) -> Vec<u8> {
    pb::Batch {
        cluster_id: CLUSTER.into(),
        from: 2,
        to: ME.0,
        seq: 1,
        messages: messages
            .iter()
            .map(|(g, m)| encode_message(*g, m))
            .collect(),
    }
    .encode_to_vec()
}

pub fn seeds() -> Vec<Vec<u8>> {
    use crate::raft::{ConfState, RejectHint, SnapshotMeta};
    let m = |term: u64, body: MessageBody| Message {
        from: NodeId(2),
        to: ME,
        term: Term(term),
        body,
    };
    let mut out = Vec::new();
    for group in GROUPS {
        let bodies = vec![
            append(2, 3, 2, &[b"\x01\x02\x00\x00\x00\x01k"], 4),
            m(
                2,
                MessageBody::AppendResponse {
                    index: LogIndex(3),
                    reject: Some(RejectHint {
                        index: LogIndex(2),
                        term: Term(1),
                    }),
                },
            ),
            m(
                2,
                MessageBody::Heartbeat {
                    commit: LogIndex(3),
                    read_round: 1,
                },
            ),
            m(2, MessageBody::HeartbeatResponse { read_round: 1 }),
            m(
                3,
                MessageBody::RequestVote {
                    pre_vote: true,
                    last_index: LogIndex(9),
                    last_term: Term(2),
                    transfer: false,
                },
            ),
            m(
                3,
                MessageBody::RequestVoteResponse {
                    pre_vote: false,
                    granted: true,
                },
            ),
            m(
                3,
                MessageBody::InstallSnapshot {
                    meta: SnapshotMeta {
                        index: LogIndex(10),
                        term: Term(2),
                        conf_state: ConfState::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
                    },
                },
            ),
            m(3, MessageBody::TimeoutNow),
            m(3, MessageBody::ReadIndex { context: 5 }),
            m(
                3,
                MessageBody::ReadIndexResponse {
                    context: 5,
                    index: Some(LogIndex(3)),
                },
            ),
        ];
        for body in &bodies {
            out.push(super::with_mode(0, &batch(vec![(group, body.clone())])));
        }
        out.push(super::with_mode(
            0x55,
            &batch(bodies.into_iter().map(|b| (group, b)).collect()),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Role;

    #[test]
    fn the_node_starts_in_the_intended_roles() {
        let node = Node::new();
        let follower = node.multi.group(GROUPS[0]).expect("group 0");
        assert_eq!(follower.role(), Role::Follower);
        assert_eq!(follower.leader(), Some(NodeId(2)));
        assert_eq!(follower.last_index(), LogIndex(3));
        let leader = node.multi.group(GROUPS[1]).expect("group 1");
        assert_eq!(leader.role(), Role::Leader);
        let rejoining = node.multi.group(GROUPS[2]).expect("group 2");
        assert_eq!(rejoining.last_index(), LogIndex::ZERO);
    }
}
