//! What the API layer asks of the event loop, and what it gets back.
//!
//! Every request carries a oneshot reply channel; the loop answers each one
//! exactly once (or drops it when shutting down, which the caller sees as
//! [`NodeError::ShuttingDown`]).

use crate::raft::{ConfChange, GroupId, LogIndex, NodeId, ProposeError, Status, Term};
use bytes::Bytes;
use thiserror::Error;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Why the node could not serve a request. The API layer turns each into a
/// gRPC status (and forwards `NotLeader` writes to the leader).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NodeError {
    #[error("this replica does not lead group {group}")]
    NotLeader {
        group: GroupId,
        leader: Option<NodeId>,
    },
    /// The write may or may not have been applied: a new leader replaced
    /// the entry, or leadership moved. Retrying with the same (client, seq)
    /// is safe.
    #[error("group {group} changed leader before the request completed; retry")]
    Aborted { group: GroupId },
    #[error("group {group} has no leader right now; retry")]
    NoLeader { group: GroupId },
    #[error("group {0} does not exist on this replica")]
    UnknownGroup(GroupId),
    #[error("{0}")]
    Invalid(String),
    #[error("the replica is shutting down")]
    ShuttingDown,
}

impl NodeError {
    pub fn from_propose(group: GroupId, e: ProposeError) -> NodeError {
        match e {
            ProposeError::NotLeader { leader } => NodeError::NotLeader { group, leader },
            ProposeError::TransferInProgress | ProposeError::ConfChangeInProgress => {
                NodeError::Aborted { group }
            }
            ProposeError::InvalidConfChange(why) => NodeError::Invalid(why),
            ProposeError::InvalidTransferTarget(node) => NodeError::Invalid(format!(
                "node {node} is not a voter of group {group} and cannot become its leader"
            )),
        }
    }
}

/// Where a write or read was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Served {
    pub group: GroupId,
    pub term: Term,
    pub index: LogIndex,
    pub leader: Option<NodeId>,
}

/// A read of a group's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    Get {
        key: Bytes,
    },
    Scan {
        prefix: Bytes,
        start_after: Bytes,
        limit: usize,
    },
}

/// What a read returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadResult {
    Value(Option<Bytes>),
    Page(crate::kv::ScanPage),
}

pub type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

pub enum Request {
    /// Append a state-machine command (already validated and encoded).
    Propose {
        group: GroupId,
        command: Bytes,
        arrived: Instant,
        reply: Reply<(Served, crate::kv::CommandResult)>,
    },
    Read {
        group: GroupId,
        query: Query,
        linearizable: bool,
        arrived: Instant,
        reply: Reply<(Served, ReadResult)>,
    },
    ConfChange {
        group: GroupId,
        change: ConfChange,
        reply: Reply<Served>,
    },
    TransferLeader {
        group: GroupId,
        /// `None`: the most up-to-date other voter.
        to: Option<NodeId>,
        reply: Reply<NodeId>,
    },
    Snapshot {
        group: GroupId,
        reply: Reply<LogIndex>,
    },
    Status {
        reply: oneshot::Sender<Vec<(GroupId, Status)>>,
    },
}
