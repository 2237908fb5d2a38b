//! The vocabulary of Raft: identifiers, log entries, hard state and snapshot
//! metadata.
//!
//! Every number that Raft reasons about is a newtype here, so that a term can
//! never be passed where a log index is expected. These types are shared by
//! every layer (storage encodes them, transport carries them), so they stay
//! plain data: no behaviour beyond ordering and arithmetic helpers.

use bytes::Bytes;
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// A replica of the cluster. Node ids are never reused: a replica that
    /// lost its volume comes back under a new id or is removed and re-added.
    NodeId,
    "n"
);
id_type!(
    /// A Raft group hosted by the nodes of the cluster (a shard of the key space).
    GroupId,
    "g"
);
id_type!(
    /// A Raft term. Terms only grow.
    Term,
    "t"
);
id_type!(
    /// A position in a group's log. Index 0 is the empty prefix; the first
    /// entry has index 1.
    LogIndex,
    "i"
);

impl Term {
    pub const ZERO: Term = Term(0);
    /// No correct node reaches a term (or index, see [`LogIndex::MAX_VALID`])
    /// above 2^62: one a nanosecond would take 146 years. Decoders of bytes
    /// from the network or the disk refuse larger ones, so that the core's
    /// `+ 1`s can never overflow.
    pub const MAX_VALID: Term = Term(1 << 62);
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl LogIndex {
    pub const ZERO: LogIndex = LogIndex(0);
    /// The largest index a decoder accepts (see [`Term::MAX_VALID`]).
    pub const MAX_VALID: LogIndex = LogIndex(1 << 62);
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }
    /// The previous index; `ZERO.prev()` is `ZERO`.
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
    pub fn plus(self, n: u64) -> LogIndex {
        LogIndex(self.0 + n)
    }
}

/// What a log entry carries.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Payload {
    /// The no-op a new leader appends to commit entries of earlier terms.
    Empty,
    /// An opaque command for the replicated state machine.
    Command(Bytes),
    /// A membership change. It takes effect when it is applied (committed and
    /// handed to the application), as in etcd/raft and raft-rs.
    ConfChange(ConfChange),
}

/// One entry of a group's log.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Entry {
    pub term: Term,
    pub index: LogIndex,
    pub payload: Payload,
}

impl Entry {
    /// An estimate of the entry's encoded size, used for flow control.
    pub fn size(&self) -> u64 {
        let body = match &self.payload {
            Payload::Empty => 0,
            Payload::Command(b) => b.len() as u64,
            Payload::ConfChange(cc) => 8 + 9 * cc.changes.len() as u64,
        };
        body + 24
    }
}

/// The part of a node's state that must be durable before it answers a vote
/// or acknowledges an append.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct HardState {
    pub term: Term,
    pub vote: Option<NodeId>,
    pub commit: LogIndex,
    /// This node's earlier votes were lost: it restarted on an empty disk
    /// in a running cluster. It neither votes nor campaigns, even if the
    /// membership it learns names it a voter, until it is re-admitted (see
    /// [`Raft::readmit`](super::Raft::readmit)): the cluster removed it
    /// and added it back as a learner (or added it as a new member). Durable,
    /// so a restart in between keeps the restriction.
    pub rejoining: bool,
}

/// The membership of a group.
///
/// Outside a joint configuration `voters_outgoing` is empty. During a joint
/// configuration (C_old,new) decisions need a majority of `voters` (C_new)
/// *and* of `voters_outgoing` (C_old). `learners_next` holds voters of C_old
/// that become learners when the joint configuration is left (they cannot be
/// learners while they are still voters of C_old).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ConfState {
    pub voters: Vec<NodeId>,
    pub voters_outgoing: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub learners_next: Vec<NodeId>,
    /// Leave the joint configuration automatically once it is applied.
    pub auto_leave: bool,
}

impl ConfState {
    /// A simple configuration of voters only.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> ConfState {
        let mut voters: Vec<NodeId> = voters.into_iter().collect();
        voters.sort();
        voters.dedup();
        ConfState {
            voters,
            ..ConfState::default()
        }
    }

    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// Whether `id` votes in this configuration (in either half of a joint one).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id) || self.learners_next.contains(&id)
    }

    /// Every node that receives the log: voters of both halves and learners.
    pub fn members(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self
            .voters
            .iter()
            .chain(&self.voters_outgoing)
            .chain(&self.learners)
            .chain(&self.learners_next)
            .copied()
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

/// One step of a membership change.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ConfChangeKind {
    /// Add a voter, or promote a learner to voter.
    AddVoter,
    /// Add a learner, or demote a voter to learner.
    AddLearner,
    /// Remove a voter or learner.
    Remove,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConfChangeSingle {
    pub kind: ConfChangeKind,
    pub node: NodeId,
}

/// How a change that needs joint consensus is left.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum ConfChangeTransition {
    /// Use a simple (one-step) change when it is safe (at most one voter
    /// changes), joint consensus otherwise, left automatically.
    #[default]
    Auto,
    /// Always use joint consensus and leave it automatically.
    JointImplicit,
    /// Always use joint consensus; stay joint until an empty change is proposed.
    JointExplicit,
}

/// A membership change: several additions, removals, promotions and
/// demotions at once. An empty change while joint means "leave the joint
/// configuration".
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ConfChange {
    pub transition: ConfChangeTransition,
    pub changes: Vec<ConfChangeSingle>,
}

impl ConfChange {
    pub fn single(kind: ConfChangeKind, node: NodeId) -> ConfChange {
        ConfChange {
            transition: ConfChangeTransition::Auto,
            changes: vec![ConfChangeSingle { kind, node }],
        }
    }

    /// The change that leaves a joint configuration.
    pub fn leave_joint() -> ConfChange {
        ConfChange::default()
    }

    pub fn is_leave_joint(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Where a snapshot sits in the log and which membership it carries.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct SnapshotMeta {
    pub index: LogIndex,
    pub term: Term,
    pub conf_state: ConfState,
}

/// The durable state a group is restarted from: what storage recovered.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct RecoveredState {
    pub hard_state: HardState,
    /// The latest durable snapshot, if any; the log continues after it.
    pub snapshot: Option<SnapshotMeta>,
    /// Every durable entry after the snapshot, contiguous and in order.
    pub entries: Vec<Entry>,
}

impl RecoveredState {
    /// The state every initial member of a new group starts from: a snapshot
    /// of the empty state machine at index 1, term 1, naming the initial
    /// voters. Because the log proper starts at index 2, a node that joins
    /// later with an empty disk always receives a snapshot first, and with it
    /// the membership; it never has to guess the configuration.
    pub fn bootstrap(voters: impl IntoIterator<Item = NodeId>) -> RecoveredState {
        RecoveredState {
            hard_state: HardState {
                term: Term(1),
                vote: None,
                commit: LogIndex(1),
                rejoining: false,
            },
            snapshot: Some(SnapshotMeta {
                index: LogIndex(1),
                term: Term(1),
                conf_state: ConfState::with_voters(voters),
            }),
            entries: Vec::new(),
        }
    }

    /// The state of a node that starts on an empty disk in a running
    /// cluster (a new member, or one that lost its volume): no membership,
    /// and no vote until it is a learner (see [`HardState::rejoining`]).
    pub fn rejoining() -> RecoveredState {
        RecoveredState {
            hard_state: HardState {
                rejoining: true,
                ..HardState::default()
            },
            ..RecoveredState::default()
        }
    }
}
