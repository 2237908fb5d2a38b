//! The replicated state machine of the simulation and the client traffic
//! that drives it.
//!
//! A group's state machine is a small register map: `key -> (value, index)`,
//! where `index` is the log index of the write that set the value. Every
//! write carries a value no other write uses, so a read's answer names the
//! exact write it observed and the checker can place it in the log order.

use bytes::Bytes;
use kuberaft::raft::LogIndex;
use std::collections::BTreeMap;

/// How many keys each group's clients write and read: few, so that reads
/// race with writes to the same key.
pub const KEYS: u8 = 4;

/// One group's applied state: for each key the latest value and the index of
/// the entry that wrote it. Also what a snapshot carries.
pub type Kv = BTreeMap<u8, (u64, LogIndex)>;

/// A client write: `key := value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    pub key: u8,
    pub value: u64,
}

impl Write {
    pub fn encode(self) -> Bytes {
        let mut out = Vec::with_capacity(9);
        out.push(self.key);
        out.extend_from_slice(&self.value.to_le_bytes());
        Bytes::from(out)
    }

    /// `None` for a command the simulation did not write (a harness bug).
    pub fn decode(data: &[u8]) -> Option<Write> {
        let (&key, rest) = data.split_first()?;
        let value = u64::from_le_bytes(rest.try_into().ok()?);
        Some(Write { key, value })
    }
}

/// Applies a write at `index` to a state machine.
pub fn apply(kv: &mut Kv, write: Write, index: LogIndex) {
    kv.insert(write.key, (write.value, index));
}

/// The log index of the write a read of `key` observes (zero: never written).
pub fn observed(kv: &Kv, key: u8) -> LogIndex {
    kv.get(&key).map_or(LogIndex::ZERO, |&(_, index)| index)
}

/// A write proposed on a node and not yet acknowledged to its client: it is
/// acknowledged when that node applies the entry at `index` with `term`.
#[derive(Clone, Copy, Debug)]
pub struct PendingWrite {
    pub term: kuberaft::raft::Term,
    pub write: Write,
    /// A liveness marker (see `Sim::heal`), not ordinary traffic.
    pub marker: bool,
}

/// A linearizable read in progress on a node.
#[derive(Clone, Copy, Debug)]
pub struct PendingRead {
    pub key: u8,
    /// The checker's floor for `key` when the read was issued: the answer
    /// must come from a write at this index or later.
    pub floor: LogIndex,
    /// Set once the core confirmed the read: serve it once applied >= index.
    pub index: Option<LogIndex>,
}
