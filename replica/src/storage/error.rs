//! What can go wrong with the data directory, said so that an operator knows
//! what happened, where, and what to do about it.
//!
//! Every error names the file (and offset, for the log) it is about. Damage
//! that recovery does not repair on its own is always an error: data is never
//! silently dropped from the middle of the log.

use crate::raft::{GroupId, LogIndex, NodeId};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O error on {path}: {source} (while {action})")]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },

    #[error(
        "data directory {dir} belongs to cluster {found_cluster:?} as node {found_node}, \
         but this replica is configured as node {expected_node} of cluster {expected_cluster:?}; \
         point `data_dir` at this node's own volume, or, if the volume really is to be reused \
         for another cluster, delete its contents first"
    )]
    WrongIdentity {
        dir: PathBuf,
        found_cluster: String,
        found_node: NodeId,
        expected_cluster: String,
        expected_node: NodeId,
    },

    #[error(
        "data directory {dir} is in use by another process ({holder}); \
         stop that process first, two replicas must never share a volume"
    )]
    Locked { dir: PathBuf, holder: String },

    #[error(
        "{path} is not a kuberaft file we can read: {reason}; \
         the data directory may belong to another program or a newer kuberaft version"
    )]
    Unrecognized { path: PathBuf, reason: String },

    #[error(
        "the write-ahead log is damaged in {path} at byte offset {offset}: {reason}. \
         This is not a torn tail left by a crash ({detail}), so recovery stops instead of \
         dropping acknowledged data. Keep a copy of the data directory; then either repair \
         the volume, or remove this replica's data and add it back to the cluster as a new learner"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
        detail: String,
    },

    #[error(
        "the write-ahead log in {dir} is incomplete: {reason}. Nothing was dropped; \
         restore the missing files or re-create this replica from its peers"
    )]
    Missing { dir: PathBuf, reason: String },

    #[error("snapshot {path} is damaged: {reason}; delete it, the leader will send a new one")]
    CorruptSnapshot { path: PathBuf, reason: String },

    #[error("invalid write for group {group}: {reason} (a bug in the caller)")]
    InvalidWrite { group: GroupId, reason: String },

    #[error("no durable snapshot of group {group} covers index {index}; write the snapshot first")]
    NoSnapshot { group: GroupId, index: LogIndex },

    #[error(
        "the write-ahead log stopped accepting writes after an earlier failure: {0}; \
         restart the replica (it recovers what was durable)"
    )]
    Poisoned(Arc<StorageError>),

    #[error("the write-ahead log is closed")]
    Closed,
}

impl StorageError {
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
    ) -> impl FnOnce(io::Error) -> StorageError {
        let path = path.into();
        move |source| StorageError::Io {
            path,
            action,
            source,
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
