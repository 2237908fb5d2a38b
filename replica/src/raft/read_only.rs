//! Linearizable reads by ReadIndex (section 6.4 of the Raft thesis).
//!
//! A leader answers a read with its commit index once it has confirmed it is
//! still the leader: a quorum has answered a heartbeat sent *after* the read
//! arrived. Reads are grouped into rounds: every read that arrives before the
//! next broadcast shares one round, so a burst of reads costs one heartbeat.
//! The leader must also have committed an entry of its own term (before that
//! its commit index may be behind the cluster's); reads that arrive earlier
//! wait for it.

use super::message::ReadContext;
use super::types::{LogIndex, NodeId};
use std::collections::VecDeque;

/// A read waiting for its round to be confirmed.
#[derive(Clone, Copy, Debug)]
pub struct PendingRead {
    /// Who asked: this node, or the follower that forwarded it.
    pub from: NodeId,
    pub context: ReadContext,
    pub index: LogIndex,
    pub round: u64,
}

#[derive(Clone, Debug, Default)]
pub struct ReadOnly {
    /// Reads waiting for their round, in round order.
    pub pending: VecDeque<PendingRead>,
    /// Reads that arrived before the leader committed an entry of its term.
    pub awaiting_commit: Vec<(NodeId, ReadContext)>,
    /// The round the next broadcast will carry.
    pub next_round: u64,
    /// Reads joined `next_round` and it has not been broadcast yet.
    pub broadcast_due: bool,
}

impl ReadOnly {
    pub fn new() -> ReadOnly {
        ReadOnly {
            next_round: 1,
            ..ReadOnly::default()
        }
    }

    /// Queues a read at `index`; it is confirmed by the next broadcast round.
    pub fn add(&mut self, from: NodeId, context: ReadContext, index: LogIndex) {
        self.pending.push_back(PendingRead {
            from,
            context,
            index,
            round: self.next_round,
        });
        self.broadcast_due = true;
    }

    /// The round to broadcast now, if reads are waiting for one.
    pub fn take_broadcast(&mut self) -> Option<u64> {
        if !self.broadcast_due {
            return None;
        }
        self.broadcast_due = false;
        let round = self.next_round;
        self.next_round += 1;
        Some(round)
    }

    /// The round a heartbeat should carry so that lost confirmations are
    /// retried: the newest broadcast round if reads are still pending.
    pub fn retry_round(&self) -> u64 {
        match self.pending.back() {
            Some(read) if read.round < self.next_round => self.next_round - 1,
            _ => 0,
        }
    }

    /// Removes and returns the reads whose round a quorum confirmed.
    pub fn confirmed(&mut self, quorum_round: u64) -> Vec<PendingRead> {
        let mut out = Vec::new();
        while let Some(read) = self.pending.front() {
            if read.round > quorum_round {
                break;
            }
            out.extend(self.pending.pop_front());
        }
        out
    }

    /// Forgets everything (leadership lost); returns the reads that were waiting.
    pub fn reset(&mut self) -> Vec<(NodeId, ReadContext)> {
        let mut out: Vec<(NodeId, ReadContext)> = self
            .pending
            .drain(..)
            .map(|r| (r.from, r.context))
            .collect();
        out.append(&mut self.awaiting_commit);
        self.broadcast_due = false;
        out
    }
}
