//! A node's simulated disk: what survives a crash.
//!
//! Writes are handed to the disk in the order of the readies and become
//! durable in that order, each after a random latency; only then does the
//! node learn of it (`on_persisted`) and send what waited for durability. A
//! crash keeps exactly the writes that completed. A lost volume keeps
//! nothing.

use super::workload::Kv;
use kuberaft::multi::Envelope;
use kuberaft::raft::{Entry, GroupId, HardState, RecoveredState, SnapshotMeta};
use std::collections::{BTreeMap, VecDeque};

/// The durable state of one group on one node.
#[derive(Clone, Debug, Default)]
pub struct GroupDisk {
    pub hard_state: HardState,
    /// The snapshot the log continues after, with the state machine it holds.
    pub snapshot: Option<(SnapshotMeta, Kv)>,
    /// Every durable entry after the snapshot, contiguous.
    pub entries: Vec<Entry>,
}

impl GroupDisk {
    /// What a replica's storage hands the core on restart.
    pub fn recovered(&self) -> RecoveredState {
        RecoveredState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.as_ref().map(|(meta, _)| meta.clone()),
            entries: self.entries.clone(),
        }
    }

    /// Stores a snapshot the application took of its applied state: the
    /// entries it covers go, the rest of the log stays.
    pub fn compact(&mut self, meta: SnapshotMeta, kv: Kv) {
        self.entries.retain(|e| e.index > meta.index);
        self.snapshot = Some((meta, kv));
    }

    /// Stores a snapshot received from the leader: it replaces the whole log.
    pub fn install(&mut self, meta: SnapshotMeta, kv: Kv) {
        self.entries.clear();
        self.snapshot = Some((meta, kv));
    }

    /// Appends entries, replacing any stored from `entries[0].index` on.
    pub fn store_entries(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        self.entries.retain(|e| e.index < first.index);
        self.entries.extend(entries.iter().cloned());
    }
}

/// What one group wrote in one ready.
#[derive(Clone, Debug)]
pub struct GroupWrite {
    pub group: GroupId,
    pub snapshot: Option<(SnapshotMeta, Kv)>,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
}

/// One `MultiReady`'s writes, in flight until `due`.
#[derive(Clone, Debug)]
pub struct Write {
    pub due: u64,
    pub groups: Vec<GroupWrite>,
    /// For `MultiRaft::on_persisted`.
    pub persisted: Vec<(GroupId, u64)>,
    /// Messages that may leave only once the write is durable.
    pub then_send: Vec<Envelope>,
}

#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub groups: BTreeMap<GroupId, GroupDisk>,
    /// Writes handed to the disk and not durable yet, oldest first.
    pub in_flight: VecDeque<Write>,
}

impl Disk {
    /// Queues a write; it completes after every earlier one.
    pub fn submit(&mut self, mut write: Write) {
        if let Some(last) = self.in_flight.back() {
            write.due = write.due.max(last.due);
        }
        self.in_flight.push_back(write);
    }

    /// Makes the writes due by `now` durable and returns them, oldest first.
    pub fn complete(&mut self, now: u64) -> Vec<Write> {
        let mut done = Vec::new();
        while self.in_flight.front().is_some_and(|w| w.due <= now) {
            let Some(write) = self.in_flight.pop_front() else {
                break;
            };
            for gw in &write.groups {
                let disk = self.groups.entry(gw.group).or_default();
                if let Some((meta, kv)) = &gw.snapshot {
                    disk.install(meta.clone(), kv.clone());
                }
                disk.store_entries(&gw.entries);
                if let Some(hs) = gw.hard_state {
                    disk.hard_state = hs;
                }
            }
            done.push(write);
        }
        done
    }

    /// A crash: everything in flight is lost.
    pub fn crash(&mut self) {
        self.in_flight.clear();
    }
}
