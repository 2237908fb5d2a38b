//! Many Raft groups on one node: routing by group id, heartbeats coalesced
//! per node pair, and leader balancing.
//!
//! [`MultiRaft`] owns every group replica of one node and turns their output
//! into [`Envelope`]s: one per peer per [`ready`](MultiRaft::ready), holding
//! the messages of every group for that peer. The transport sends one
//! envelope as one `Batch` (see `proto/proto/raft.proto`).
//!
//! # Coalescing rule
//!
//! The cost of an idle node must not grow with the number of groups it
//! hosts (CockroachDB's multiraft design). With `heartbeat_ticks = 1` every
//! leader heartbeats on every tick, and because [`MultiRaft::tick`] ticks all
//! groups at once, the heartbeats of all groups led by this node leave in one
//! envelope per follower node. Their answers would double that traffic, so:
//!
//! - a `HeartbeatResponse { read_round: 0 }` (a plain "I am alive") is held
//!   back and leaves with the next tick's envelope to that peer, alongside
//!   the heartbeats this node sends it for the groups it leads; only the
//!   latest one per group is kept;
//! - a heartbeat response with a non-zero `read_round` (it confirms a pending
//!   linearizable read) and every other message leave at once.
//!
//! The cost: an idle heartbeat response reaches its leader up to one tick
//! later. Leaders only use them to refresh check-quorum activity (judged per
//! election timeout, at least 10 ticks by default) and to retry appends
//! whose answer was lost, so one tick of delay is harmless.
//!
//! The result: an idle cluster sends at most one envelope per directed node
//! pair per tick, whatever the number of groups. Three nodes with one group
//! send 4 per tick (2 heartbeats, 2 held answers); with groups led from all
//! three nodes, 6 (every pair, both ways): the 1.5x ratio is a property of
//! the node count, not of the group count.
//!
//! This layer never performs I/O: like the core it only turns inputs into
//! outputs; persisting and sending are the caller's (see [`MultiReady`]).

mod balance;

pub use balance::{LeaderTransfer, plan_leader_transfers};

use crate::raft::{GroupId, Message, MessageBody, NodeId, Raft, Ready};
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

/// One message of one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMessage {
    pub group: GroupId,
    pub message: Message,
}

/// Everything one node sends another at once: messages of any number of
/// groups. The unit the transport sends as one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub messages: Vec<GroupMessage>,
}

/// The output of every group of a node, with the messages regrouped by
/// destination node.
///
/// The caller's loop is the one of [`Ready`] for all groups at once:
/// 1. send `messages`;
/// 2. write the snapshot, entries and hard state of every ready in `groups`
///    (one group commit);
/// 3. once that write is durable, call [`MultiRaft::on_persisted`] with
///    [`persisted`](MultiReady::persisted) and then send
///    `persisted_messages`;
/// 4. apply each group's `committed_entries` and answer its `read_states`.
#[derive(Debug, Default)]
pub struct MultiReady {
    /// Each group's ready, its `messages` and `persisted_messages` moved out.
    pub groups: Vec<(GroupId, Ready)>,
    /// Send now: at most one envelope per destination node.
    pub messages: Vec<Envelope>,
    /// Send once the writes of `groups` (and everything written before) are
    /// durable: at most one envelope per destination node.
    pub persisted_messages: Vec<Envelope>,
}

impl MultiReady {
    /// What to pass to [`MultiRaft::on_persisted`] once this ready's writes
    /// are durable.
    pub fn persisted(&self) -> Vec<(GroupId, u64)> {
        self.groups.iter().map(|(g, rd)| (*g, rd.number)).collect()
    }

    /// Whether step 2 of the loop has anything to write.
    pub fn must_persist(&self) -> bool {
        self.groups.iter().any(|(_, rd)| rd.must_persist())
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.messages.is_empty() && self.persisted_messages.is_empty()
    }
}

/// Messages that [`MultiRaft::step`] could not deliver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Undelivered {
    /// Messages for groups this node does not host. A node added to a group
    /// learns of it this way: the caller may create the group (with
    /// `RecoveredState::default()`) and step the message again.
    pub unknown_group: Vec<GroupMessage>,
    /// The envelope was addressed to another node; nothing was delivered.
    pub misaddressed: bool,
}

impl Undelivered {
    pub fn is_empty(&self) -> bool {
        self.unknown_group.is_empty() && !self.misaddressed
    }
}

/// Every group replica hosted by one node.
pub struct MultiRaft {
    id: NodeId,
    groups: BTreeMap<GroupId, Raft>,
    /// Idle heartbeat responses waiting for the next tick, per peer, the
    /// latest one per group.
    held: BTreeMap<NodeId, BTreeMap<GroupId, Message>>,
    /// A tick happened since the last `ready`: the held responses leave now.
    flush_held: bool,
}

impl MultiRaft {
    pub fn new(id: NodeId) -> MultiRaft {
        MultiRaft {
            id,
            groups: BTreeMap::new(),
            held: BTreeMap::new(),
            flush_held: false,
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Hosts `raft` as this node's replica of `group`, replacing any replica
    /// hosted before (which is returned).
    pub fn add_group(&mut self, group: GroupId, raft: Raft) -> Option<Raft> {
        debug_assert_eq!(raft.id(), self.id, "a group replica of another node");
        self.groups.insert(group, raft)
    }

    /// Stops hosting `group` (the replica was removed from its membership
    /// and its data deleted). Held responses of the group are dropped.
    pub fn remove_group(&mut self, group: GroupId) -> Option<Raft> {
        for held in self.held.values_mut() {
            held.remove(&group);
        }
        self.groups.remove(&group)
    }

    pub fn group(&self, group: GroupId) -> Option<&Raft> {
        self.groups.get(&group)
    }

    pub fn group_mut(&mut self, group: GroupId) -> Option<&mut Raft> {
        self.groups.get_mut(&group)
    }

    pub fn groups(&self) -> impl Iterator<Item = (GroupId, &Raft)> {
        self.groups.iter().map(|(g, r)| (*g, r))
    }

    pub fn group_ids(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.groups.keys().copied()
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// One tick of time passed for every group: their heartbeats, and the
    /// held heartbeat responses, leave together at the next `ready`.
    pub fn tick(&mut self) {
        for raft in self.groups.values_mut() {
            raft.tick();
        }
        self.flush_held = true;
    }

    /// Delivers the messages of an envelope to their groups.
    pub fn step(&mut self, envelope: Envelope) -> Undelivered {
        let mut undelivered = Undelivered::default();
        if envelope.to != self.id {
            undelivered.misaddressed = true;
            return undelivered;
        }
        for gm in envelope.messages {
            match self.groups.get_mut(&gm.group) {
                Some(raft) => raft.step(gm.message),
                None => undelivered.unknown_group.push(gm),
            }
        }
        undelivered
    }

    /// The transport could not reach `to`: every group stops pipelining to it.
    pub fn report_unreachable(&mut self, to: NodeId) {
        for raft in self.groups.values_mut() {
            raft.report_unreachable(to);
        }
    }

    /// Whether [`ready`](MultiRaft::ready) has anything for the caller.
    pub fn has_ready(&self) -> bool {
        (self.flush_held && self.held.values().any(|h| !h.is_empty()))
            || self.groups.values().any(Raft::has_ready)
    }

    /// Collects the ready of every group that has one.
    pub fn ready(&mut self) -> MultiReady {
        let mut now: BTreeMap<NodeId, Vec<GroupMessage>> = BTreeMap::new();
        let mut persisted: BTreeMap<NodeId, Vec<GroupMessage>> = BTreeMap::new();
        let mut groups = Vec::new();
        for (&group, raft) in self.groups.iter_mut() {
            if !raft.has_ready() {
                continue;
            }
            let mut rd = raft.ready();
            for message in rd.messages.drain(..) {
                if is_idle_heartbeat_response(&message) {
                    self.held
                        .entry(message.to)
                        .or_default()
                        .insert(group, message);
                } else {
                    push(&mut now, group, message);
                }
            }
            for message in rd.persisted_messages.drain(..) {
                push(&mut persisted, group, message);
            }
            groups.push((group, rd));
        }
        if std::mem::take(&mut self.flush_held) {
            for (to, held) in std::mem::take(&mut self.held) {
                if held.is_empty() {
                    continue;
                }
                let out = now.entry(to).or_default();
                out.extend(
                    held.into_iter()
                        .map(|(group, message)| GroupMessage { group, message }),
                );
            }
        }
        MultiReady {
            groups,
            messages: envelopes(self.id, now),
            persisted_messages: envelopes(self.id, persisted),
        }
    }

    /// The writes of the readies named (each `(group, Ready::number)`), and
    /// of every ready before them, are durable.
    pub fn on_persisted(&mut self, readies: &[(GroupId, u64)]) {
        for &(group, number) in readies {
            if let Some(raft) = self.groups.get_mut(&group) {
                raft.on_persisted(number);
            }
        }
    }
}

fn is_idle_heartbeat_response(m: &Message) -> bool {
    matches!(m.body, MessageBody::HeartbeatResponse { read_round: 0 })
}

fn push(out: &mut BTreeMap<NodeId, Vec<GroupMessage>>, group: GroupId, message: Message) {
    match out.entry(message.to) {
        Entry::Occupied(mut e) => e.get_mut().push(GroupMessage { group, message }),
        Entry::Vacant(e) => {
            e.insert(vec![GroupMessage { group, message }]);
        }
    }
}

fn envelopes(from: NodeId, by_peer: BTreeMap<NodeId, Vec<GroupMessage>>) -> Vec<Envelope> {
    by_peer
        .into_iter()
        .filter(|(_, messages)| !messages.is_empty())
        .map(|(to, messages)| Envelope { from, to, messages })
        .collect()
}

#[cfg(test)]
mod tests;
