//! Messages exchanged between the replicas of one group.
//!
//! The core produces and consumes these; the `multi` layer wraps them with a
//! group id and the transport encodes them. A message's `term` is the
//! sender's current term, except for pre-votes, which carry the term the
//! sender *would* campaign in (its term + 1) without having moved to it.

use super::types::{Entry, LogIndex, NodeId, SnapshotMeta, Term};

/// A request for a linearizable read, chosen by the application (unique per
/// node) so it can match the answer in [`ReadState`](super::ReadState).
pub type ReadContext = u64;

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub body: MessageBody,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MessageBody {
    /// Leader → follower: entries following (`prev_index`, `prev_term`), and
    /// the leader's commit index. An empty `entries` is a probe.
    Append {
        prev_index: LogIndex,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: LogIndex,
    },
    /// Follower → leader, sent only once the entries are durable.
    AppendResponse {
        /// On success: the index the follower's log now matches up to.
        /// On rejection: the `prev_index` that did not match.
        index: LogIndex,
        /// Present when the append was rejected.
        reject: Option<RejectHint>,
    },
    /// Leader → follower, every heartbeat interval. `commit` is capped at
    /// what the follower is known to have; `read_round` confirms leadership
    /// for pending ReadIndex requests.
    Heartbeat {
        commit: LogIndex,
        read_round: u64,
    },
    HeartbeatResponse {
        read_round: u64,
    },
    /// Candidate (or pre-candidate) → voter.
    RequestVote {
        pre_vote: bool,
        last_index: LogIndex,
        last_term: Term,
        /// Set by a leadership transfer: voters ignore their leader lease.
        transfer: bool,
    },
    /// Voter → candidate; a granted real vote is sent only once durable.
    RequestVoteResponse {
        pre_vote: bool,
        granted: bool,
    },
    /// Leader → follower whose next entry was compacted away. The
    /// application attaches the snapshot data; the core only sees metadata.
    InstallSnapshot {
        meta: SnapshotMeta,
    },
    /// Leader → transfer target: campaign now.
    TimeoutNow,
    /// Follower → leader: confirm leadership and tell me the read index.
    ReadIndex {
        context: ReadContext,
    },
    /// Leader → follower: reads for `context` may be served once the
    /// follower has applied `index`. `index` is `None` when the leader could
    /// not serve the request (it has not committed an entry of its term yet,
    /// or it is stepping down); the follower reports it as dropped.
    ReadIndexResponse {
        context: ReadContext,
        index: Option<LogIndex>,
    },
}

/// Where a follower's log diverges, so the leader can skip a whole term of
/// conflicting entries in one round trip instead of one index at a time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RejectHint {
    /// The follower's guess at the last index that may match.
    pub index: LogIndex,
    /// The term of the follower's entry at `index` (zero if none).
    pub term: Term,
}

impl MessageBody {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::Append { .. } => "append",
            MessageBody::AppendResponse { .. } => "append_response",
            MessageBody::Heartbeat { .. } => "heartbeat",
            MessageBody::HeartbeatResponse { .. } => "heartbeat_response",
            MessageBody::RequestVote { pre_vote: true, .. } => "pre_vote",
            MessageBody::RequestVote { .. } => "vote",
            MessageBody::RequestVoteResponse { pre_vote: true, .. } => "pre_vote_response",
            MessageBody::RequestVoteResponse { .. } => "vote_response",
            MessageBody::InstallSnapshot { .. } => "install_snapshot",
            MessageBody::TimeoutNow => "timeout_now",
            MessageBody::ReadIndex { .. } => "read_index",
            MessageBody::ReadIndexResponse { .. } => "read_index_response",
        }
    }

    /// Heartbeats and their responses: the traffic the `multi` layer
    /// coalesces per node pair.
    pub fn is_heartbeat(&self) -> bool {
        matches!(
            self,
            MessageBody::Heartbeat { .. } | MessageBody::HeartbeatResponse { .. }
        )
    }
}
