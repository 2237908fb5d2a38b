//! The node's side of snapshots: taking them off the event loop, sending
//! them to followers, installing the ones a leader sends.
//!
//! Files live in storage's [`SnapshotStore`] (temporary file, fsync, rename,
//! directory fsync); the bytes inside are the state machine's snapshot
//! format. Taking a snapshot copies the state machine (its map shares the
//! value buffers, so the copy is cheap) and writes it on a blocking thread,
//! so the event loop keeps serving; the log is compacted only once the file
//! is durable.

use crate::kv::{KvStateMachine, SessionPolicy};
use crate::raft::{GroupId, LogIndex, Message, SnapshotMeta};
use crate::storage::SnapshotStore;
use crate::transport::SnapshotSource;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A snapshot taken in the background, reported to the event loop.
pub(super) struct SnapshotDone {
    pub group: GroupId,
    pub meta: SnapshotMeta,
    /// The bytes written, or why it failed.
    pub result: Result<u64, String>,
    pub duration: Duration,
}

pub(super) struct Snapshots {
    store: SnapshotStore,
    policy: SessionPolicy,
    /// Snapshot data received from leaders, waiting for the core to accept.
    received: HashMap<(GroupId, LogIndex), PathBuf>,
    taking: BTreeSet<GroupId>,
    done: mpsc::UnboundedSender<SnapshotDone>,
}

impl Snapshots {
    pub fn new(
        store: SnapshotStore,
        policy: SessionPolicy,
        done: mpsc::UnboundedSender<SnapshotDone>,
    ) -> Snapshots {
        Snapshots {
            store,
            policy,
            received: HashMap::new(),
            taking: BTreeSet::new(),
            done,
        }
    }

    /// Writes the empty state machine as `group`'s snapshot at `meta`: the
    /// bootstrap snapshot a new group starts from, which a leader later
    /// sends to replicas that join with an empty disk.
    pub fn write_empty(&self, group: GroupId, meta: &SnapshotMeta) -> Result<(), String> {
        let machine = KvStateMachine::empty_at(group, self.policy, meta.index, meta.term);
        write(&self.store, group, meta, &machine).map(|_| ())
    }

    /// The state machine of `group` restored from its snapshot at `meta`.
    pub fn load(&self, group: GroupId, meta: &SnapshotMeta) -> Result<KvStateMachine, String> {
        let reader = self
            .store
            .open_reader(group, meta.index)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "the log refers to the snapshot of group {group} at index {}, but its file is missing from {}: \
                     the data directory is incomplete; restore it from a backup or remove this replica and add it back",
                    meta.index,
                    self.store_dir().display()
                )
            })?;
        let mut machine = KvStateMachine::new(group, self.policy);
        machine.restore_snapshot(reader).map_err(|e| {
            format!(
                "the snapshot of group {group} at index {} is unreadable: {e}",
                meta.index
            )
        })?;
        Ok(machine)
    }

    fn store_dir(&self) -> PathBuf {
        self.store.dir().to_path_buf()
    }

    /// Remembers a snapshot's data that arrived from a leader.
    pub fn received(&mut self, group: GroupId, message: Message, path: PathBuf) {
        if let crate::raft::MessageBody::InstallSnapshot { meta } = &message.body
            && let Some(old) = self.received.insert((group, meta.index), path)
        {
            let _ = std::fs::remove_file(old);
        }
    }

    /// The core accepted the snapshot at `meta`: moves its data into the
    /// store (durably) and returns the restored state machine.
    pub fn install(
        &mut self,
        group: GroupId,
        meta: &SnapshotMeta,
    ) -> Result<KvStateMachine, String> {
        let path = self.received.remove(&(group, meta.index)).ok_or_else(|| {
            format!(
                "no data was received for the snapshot at index {}",
                meta.index
            )
        })?;
        let result = (|| {
            let mut file =
                std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut writer = self.store.create(group, meta).map_err(|e| e.to_string())?;
            std::io::copy(&mut file, &mut writer)
                .map_err(|e| format!("copying the snapshot: {e}"))?;
            writer.finish().map_err(|e| e.to_string())?;
            self.load(group, meta)
        })();
        let _ = std::fs::remove_file(&path);
        // Data received for older snapshots of the group is useless now.
        self.received.retain(|(g, index), path| {
            let keep = *g != group || *index > meta.index;
            if !keep {
                let _ = std::fs::remove_file(path.as_path());
            }
            keep
        });
        result
    }

    /// A reader of `group`'s snapshot at `index` for sending to a follower.
    pub fn source(&self, group: GroupId, index: LogIndex) -> Option<SnapshotSource> {
        match self.store.open_reader(group, index) {
            Ok(Some(reader)) => Some(Box::new(reader)),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(%group, %index, error = %e, "cannot open the snapshot to send");
                None
            }
        }
    }

    pub fn in_progress(&self, group: GroupId) -> bool {
        self.taking.contains(&group)
    }

    /// Takes a snapshot of `machine` (at `meta`) on a blocking thread; the
    /// outcome arrives as a [`SnapshotDone`].
    pub fn take(&mut self, group: GroupId, meta: SnapshotMeta, machine: &KvStateMachine) {
        self.taking.insert(group);
        let copy = machine.clone();
        let store = self.store.clone();
        let done = self.done.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let result = write(&store, group, &meta, &copy);
            let _ = done.send(SnapshotDone {
                group,
                meta,
                result,
                duration: started.elapsed(),
            });
        });
    }

    /// The background snapshot of `group` finished (either way).
    pub fn finished(&mut self, group: GroupId) {
        self.taking.remove(&group);
    }

    /// Deletes leftovers of a previous run: data received but never
    /// installed.
    pub fn clean_incoming(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn write(
    store: &SnapshotStore,
    group: GroupId,
    meta: &SnapshotMeta,
    machine: &KvStateMachine,
) -> Result<u64, String> {
    let mut writer = store.create(group, meta).map_err(|e| e.to_string())?;
    let info = machine
        .write_snapshot(&mut writer)
        .map_err(|e| format!("writing the snapshot of group {group}: {e}"))?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(info.bytes)
}
