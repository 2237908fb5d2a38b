//! Helpers shared by the storage integration tests: identities, entries whose
//! payload proves where they belong, and child processes of the test binary.
//!
//! Not every test file uses every helper.
#![allow(dead_code)]

use bytes::Bytes;
use kuberaft::raft::{Entry, GroupId, LogIndex, Payload, RecoveredState, Term};
use kuberaft::storage::GroupWrite;
use kuberaft::storage::{Identity, Wal, WalOptions};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub fn identity() -> Identity {
    Identity {
        cluster_id: "test-cluster".into(),
        node_id: kuberaft::raft::NodeId(1),
    }
}

/// Small segments, so that a test rotates and deletes segments often.
pub fn small_segments(segment_size: u64) -> WalOptions {
    WalOptions {
        segment_size,
        ..WalOptions::default()
    }
}

pub fn open(dir: &Path, opts: &WalOptions) -> Wal {
    match Wal::open(dir, identity(), opts.clone()) {
        Ok(wal) => wal,
        Err(e) => panic!("opening {}: {e}", dir.display()),
    }
}

/// An entry whose payload names its group, index and term and is `len`
/// bytes long (at least the header): a payload found under another index,
/// term or group, or damaged, is recognised by [`check_entry`].
pub fn entry(group: GroupId, index: LogIndex, term: Term, len: usize) -> Entry {
    let mut data = format!("g{} i{} t{} |", group.0, index.0, term.0).into_bytes();
    let mut x = group.0 ^ index.0.rotate_left(20) ^ term.0.rotate_left(40);
    while data.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        data.push(b'a' + (x >> 59) as u8);
    }
    Entry {
        term,
        index,
        payload: Payload::Command(Bytes::from(data)),
    }
}

/// Whether `e` is exactly what [`entry`] makes for its group, index and term.
pub fn check_entry(group: GroupId, e: &Entry) -> Result<(), String> {
    let Payload::Command(data) = &e.payload else {
        return Err(format!("{group:?} {:?}: not a command", e.index));
    };
    let expected = entry(group, e.index, e.term, data.len());
    if expected.payload != e.payload {
        return Err(format!(
            "{group:?} {:?} {:?}: payload {:?} is not the one written there",
            e.index,
            e.term,
            String::from_utf8_lossy(&data[..data.len().min(40)])
        ));
    }
    Ok(())
}

/// Environment variable naming the child role a re-executed test binary plays.
pub const ROLE_VAR: &str = "KUBERAFT_STORAGE_CHILD";

/// Starts this test binary again, running only the (ignored) test
/// `role_test`, with `ROLE_VAR` set to `role` and `envs` added. Its stdout is
/// piped; stdin is piped so the child can notice the parent going away.
pub fn spawn_child(role_test: &str, role: &str, envs: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--ignored",
        "--exact",
        role_test,
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE_VAR, role)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.spawn().expect("starting a child test process")
}

/// The role this process was started for, if it is a child.
pub fn child_role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

/// A count from the environment (for longer runs), or `default`.
pub fn env_count(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Kills `child` by its pid and reaps it.
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The log as the model sees it: the state of every group.
pub type State = BTreeMap<GroupId, RecoveredState>;

pub fn last_index(s: &RecoveredState) -> LogIndex {
    s.entries.last().map(|e| e.index).unwrap_or_else(|| {
        s.snapshot
            .as_ref()
            .map_or(LogIndex::ZERO, |snap| snap.index)
    })
}

pub fn snapshot_index(s: &RecoveredState) -> LogIndex {
    s.snapshot
        .as_ref()
        .map_or(LogIndex::ZERO, |snap| snap.index)
}

pub fn term_at(s: &RecoveredState, index: LogIndex) -> Term {
    match s.entries.iter().find(|e| e.index == index) {
        Some(e) => e.term,
        None => s.snapshot.as_ref().map_or(Term::ZERO, |snap| snap.term),
    }
}

/// What the log does with one write, applied to the model: snapshot, then
/// entries (replacing any stored suffix), then hard state.
pub fn apply(state: &mut State, w: &GroupWrite) {
    let s = state.entry(w.group).or_default();
    if let Some(meta) = &w.snapshot {
        s.entries.clear();
        s.snapshot = Some(meta.clone());
    }
    if let Some(first) = w.entries.first() {
        let snap = snapshot_index(s);
        let keep = s.entries.partition_point(|e| e.index < first.index);
        s.entries.truncate(keep);
        s.entries
            .extend(w.entries.iter().filter(|e| e.index > snap).cloned());
    }
    if let Some(hs) = w.hard_state {
        s.hard_state = hs;
    }
}
