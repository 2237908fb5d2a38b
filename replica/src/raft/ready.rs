//! What the core hands back to its caller after inputs: the work the caller
//! must do, in order.
//!
//! The caller's loop is:
//! 1. send `messages` right away (a leader's appends may travel while its own
//!    write is still in flight);
//! 2. write `snapshot` (if any), then `entries` (replacing any stored entries
//!    from `entries[0].index` on), then `hard_state`, durably;
//! 3. once that write is durable: call [`Raft::on_persisted`] with `number`,
//!    then send `persisted_messages` (votes and append acknowledgements,
//!    which must never precede durability);
//! 4. apply `committed_entries` in order, and answer `read_states` once the
//!    state machine has applied their index.
//!
//! Several readies may be outstanding: writes complete in order, so a group
//! commit can cover the readies of many groups with one fsync.
//!
//! [`Raft::on_persisted`]: super::Raft::on_persisted

use super::message::{Message, ReadContext};
use super::types::{Entry, HardState, LogIndex, NodeId, SnapshotMeta, Term};

/// A node's role in its group.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

/// Volatile state that is useful to observe but never persisted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SoftState {
    pub leader: Option<NodeId>,
    pub role: Role,
}

/// A ReadIndex request that is confirmed: serve it once applied >= `index`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReadState {
    pub context: ReadContext,
    pub index: LogIndex,
}

/// The answer to a proposal or read the core can no longer serve.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DroppedRead {
    pub context: ReadContext,
}

#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Ready {
    /// Identifies this ready for [`on_persisted`](super::Raft::on_persisted).
    pub number: u64,
    /// Set when leader or role changed since the last ready.
    pub soft_state: Option<SoftState>,
    pub hard_state: Option<HardState>,
    /// A snapshot received from the leader: persist it and restore the
    /// state machine from its data before applying anything after it.
    pub snapshot: Option<SnapshotMeta>,
    /// Entries to append to stable storage.
    pub entries: Vec<Entry>,
    /// Send now.
    pub messages: Vec<Message>,
    /// Send once this ready's writes are durable.
    pub persisted_messages: Vec<Message>,
    /// Apply in order. Only entries that are durable locally appear here.
    pub committed_entries: Vec<Entry>,
    pub read_states: Vec<ReadState>,
    /// Read requests that were abandoned (leadership lost, no leader known):
    /// the client must retry.
    pub dropped_reads: Vec<DroppedRead>,
}

impl Ready {
    /// Whether step 2 of the loop has anything to write.
    pub fn must_persist(&self) -> bool {
        self.hard_state.is_some() || self.snapshot.is_some() || !self.entries.is_empty()
    }

    /// The last entry to persist, if any.
    pub fn last_entry(&self) -> Option<(LogIndex, Term)> {
        self.entries.last().map(|e| (e.index, e.term))
    }
}
