//! Durable storage of a node: the write-ahead log shared by every group on
//! the node, and the snapshots of each group.
//!
//! [`LogStore`] is the seam between the core and the disk: the replica uses
//! the on-disk write-ahead log, the simulation of the core uses a simulated
//! disk that loses whatever was not synced when a node crashes.
//!
//! [`Wal`] is the on-disk implementation: one write-ahead log per node,
//! group commit by a writer thread, CRC32C-framed records in preallocated
//! segments, a torn tail repaired and any other damage refused at recovery,
//! snapshots streamed to and from files by [`SnapshotStore`]. Storage never
//! interprets entries: it keeps what the core asks it to keep.

mod codec;
mod dir;
mod error;
mod recovery;
mod segment;
mod snapshot;
mod tracker;
mod wal;

pub use dir::{FORMAT_VERSION, Identity};
pub use error::StorageError;
pub use recovery::{RecoveryReport, Truncation};
pub use snapshot::{SnapshotReader, SnapshotStore, SnapshotWriter};
pub use wal::{Ticket, Wal, WalOptions, WalStats};

// What the fuzz targets (`crate::fuzzing`) need of the on-disk format.
pub(crate) use codec::{
    encode_compacted, encode_entries, encode_hard_state, encode_install, encode_log_end,
};
pub(crate) use recovery::replay_in_memory;
pub(crate) use segment::{HEADER_LEN, SegmentHeader, frame_header};

use crate::raft::{Entry, GroupId, HardState, LogIndex, RecoveredState, SnapshotMeta};
use std::collections::BTreeMap;

/// One group's share of a write: what a [`Ready`](crate::raft::Ready) asks
/// to persist, applied in this order: snapshot, entries, hard state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupWrite {
    pub group: GroupId,
    /// A snapshot installed from the leader: the group's log is replaced by
    /// an empty log that starts after `snapshot.index`.
    pub snapshot: Option<SnapshotMeta>,
    /// Entries to append. If `entries[0].index` is not after the group's last
    /// stored index, the stored entries from that index on are discarded
    /// first (a log conflict resolved by the leader).
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
}

/// The write-ahead log of a node, as the event loop sees it.
pub trait LogStore {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Appends the writes of any number of groups. They become durable, all
    /// together and in order, when a following [`sync`](LogStore::sync)
    /// returns; a crash before that may keep any prefix of them.
    fn append(&mut self, writes: &[GroupWrite]) -> Result<(), Self::Error>;

    /// Makes everything appended so far durable.
    fn sync(&mut self) -> Result<(), Self::Error>;

    /// Entries of `group` up to and including `index` are covered by a
    /// durable snapshot and may be discarded.
    fn compact(&mut self, group: GroupId, index: LogIndex) -> Result<(), Self::Error>;

    /// The durable state of every group, as the core needs it to restart.
    fn recover(&mut self) -> Result<BTreeMap<GroupId, RecoveredState>, Self::Error>;
}
