//! One simulated replica: a `MultiRaft` hosting every group, its disk, and
//! per group the application state a replica keeps in memory (the applied
//! state machine, the snapshot it can send, client requests in progress).
//!
//! A crashed node keeps only its disk; a restart rebuilds everything else
//! from it through `RecoveredState`, the path the replica takes.

use super::disk::Disk;
use super::workload::{Kv, PendingRead, PendingWrite};
use kuberaft::multi::MultiRaft;
use kuberaft::raft::{Config, Entry, GroupId, LogIndex, NodeId, ReadContext, SnapshotMeta, Term};
use std::collections::BTreeMap;

/// The log a node has written or is writing, as far as terms go: what the
/// checker compares against (the core keeps its log private).
#[derive(Clone, Debug, Default)]
pub struct Mirror {
    pub snapshot: LogIndex,
    pub snapshot_term: Term,
    /// Terms of the entries after the snapshot.
    pub terms: Vec<Term>,
}

impl Mirror {
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot {
            return Some(self.snapshot_term);
        }
        if index < self.snapshot {
            return None;
        }
        self.terms
            .get((index.0 - self.snapshot.0 - 1) as usize)
            .copied()
    }

    /// `entries` replace everything from their first index on.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        let keep = first.index.0.saturating_sub(self.snapshot.0 + 1) as usize;
        self.terms.truncate(keep);
        self.terms.extend(entries.iter().map(|e| e.term));
    }

    /// A snapshot was installed: it replaces the log.
    pub fn install(&mut self, meta: &SnapshotMeta) {
        self.snapshot = meta.index;
        self.snapshot_term = meta.term;
        self.terms.clear();
    }

    /// The log was compacted up to `meta`.
    pub fn compact(&mut self, meta: &SnapshotMeta) {
        let drop = (meta.index.0 - self.snapshot.0) as usize;
        self.terms.drain(..drop.min(self.terms.len()));
        self.snapshot = meta.index;
        self.snapshot_term = meta.term;
    }

    pub fn restore(snapshot: Option<&SnapshotMeta>, entries: &[Entry]) -> Mirror {
        let mut m = Mirror::default();
        if let Some(s) = snapshot {
            m.install(s);
        }
        m.append(entries);
        m
    }
}

/// One group's application state on a running node (lost in a crash).
#[derive(Clone, Debug, Default)]
pub struct App {
    pub kv: Kv,
    pub applied: LogIndex,
    /// The snapshot the log starts after, with its data: what this node
    /// sends a follower that is behind its log.
    pub snapshot: Option<(SnapshotMeta, Kv)>,
    /// Snapshot data that arrived with an `InstallSnapshot`.
    pub incoming: Option<(SnapshotMeta, Kv)>,
    pub mirror: Mirror,
    /// Writes proposed here, by log index.
    pub writes: BTreeMap<LogIndex, PendingWrite>,
    pub reads: BTreeMap<ReadContext, PendingRead>,
    /// The commit index the checker has seen.
    pub commit_seen: LogIndex,
    /// The last term in which leader completeness was checked.
    pub led_checked: Term,
}

pub struct Node {
    pub id: NodeId,
    /// `None` while the node is down.
    pub multi: Option<MultiRaft>,
    pub disk: Disk,
    pub apps: BTreeMap<GroupId, App>,
    pub next_tick: u64,
    /// How each group's core is configured (the seed changes per start).
    pub config: Config,
}

impl Node {
    pub fn is_up(&self) -> bool {
        self.multi.is_some()
    }

    /// The node stops; what was not durable is gone.
    pub fn crash(&mut self) {
        self.multi = None;
        self.disk.crash();
        self.apps.clear();
    }
}
