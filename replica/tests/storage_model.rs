//! The write-ahead log against a simple in-memory model: any sequence of
//! appends (with log conflicts replacing a suffix), hard-state updates,
//! snapshot installs and compactions over several groups, synced now and
//! then and reopened now and then, recovers exactly what was synced.
//!
//! `KUBERAFT_STORAGE_CASES` raises the number of generated cases.

mod storage;

use kuberaft::raft::{
    ConfState, Entry, GroupId, HardState, LogIndex, NodeId, RecoveredState, SnapshotMeta, Term,
};
use kuberaft::storage::{GroupWrite, LogStore, Wal, WalOptions};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use storage::{
    State, apply, check_entry, entry, env_count, last_index, open, small_segments, snapshot_index,
    term_at,
};

const GROUPS: u64 = 4;

/// One step of a generated history. Indexes are relative to the state of the
/// group when the step runs, so that every generated step is a valid write.
#[derive(Clone, Debug)]
enum Step {
    /// Append `count` entries starting `back` entries before the end of the
    /// log (0: plain append; more: a conflict replaces a suffix).
    Append {
        group: u64,
        back: u64,
        count: u64,
        len: usize,
        with_hard_state: bool,
    },
    HardState {
        group: u64,
        vote: Option<u64>,
        commit_back: u64,
        rejoining: bool,
    },
    /// A snapshot from the leader at `ahead` past the end of the log (or,
    /// negative, inside it): the log restarts after it.
    Install {
        group: u64,
        ahead: i64,
    },
    /// A local snapshot of a prefix of the log, `back` entries before its end.
    Compact {
        group: u64,
        back: u64,
    },
    /// Several groups in one submission.
    Multi {
        count: u64,
        len: usize,
    },
    Sync,
    /// `LogStore::recover` on the open log.
    Recover,
    /// Close and open again: what was synced must come back.
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    let group = 0..GROUPS;
    prop_oneof![
        6 => (group.clone(), prop_oneof![4 => Just(0u64), 1 => 1..6u64], 1..8u64,
              prop_oneof![4 => 0..64usize, 1 => 64..3000usize], any::<bool>())
            .prop_map(|(group, back, count, len, with_hard_state)| Step::Append {
                group, back, count, len, with_hard_state
            }),
        2 => (group.clone(), proptest::option::of(1..4u64), 0..4u64, any::<bool>())
            .prop_map(|(group, vote, commit_back, rejoining)| Step::HardState { group, vote, commit_back, rejoining }),
        1 => (group.clone(), -3..20i64).prop_map(|(group, ahead)| Step::Install { group, ahead }),
        2 => (group.clone(), 0..10u64).prop_map(|(group, back)| Step::Compact { group, back }),
        2 => (1..5u64, 0..300usize).prop_map(|(count, len)| Step::Multi { count, len }),
        4 => Just(Step::Sync),
        1 => Just(Step::Recover),
        1 => Just(Step::Reopen),
    ]
}

fn compact(state: &mut State, group: GroupId, meta: &SnapshotMeta) {
    let s = state.entry(group).or_default();
    s.entries.retain(|e| e.index > meta.index);
    s.snapshot = Some(meta.clone());
}

fn meta(index: LogIndex, term: Term, group: GroupId) -> SnapshotMeta {
    SnapshotMeta {
        index,
        term,
        conf_state: ConfState {
            voters: vec![NodeId(1), NodeId(2), NodeId(group.0 + 3)],
            ..ConfState::default()
        },
    }
}

/// The bytes of a snapshot file, different for every group and index.
fn snapshot_data(group: GroupId, index: LogIndex) -> Vec<u8> {
    format!("snapshot of {group:?} at {index:?}")
        .repeat(1 + (index.0 % 7) as usize)
        .into_bytes()
}

fn write_snapshot(wal: &Wal, group: GroupId, meta: &SnapshotMeta) {
    let mut w = wal
        .snapshots()
        .create(group, meta)
        .expect("create snapshot");
    w.write_all(&snapshot_data(group, meta.index))
        .expect("write snapshot");
    w.finish().expect("finish snapshot");
}

/// The model's history driven against a real log in `dir`.
struct Run {
    opts: WalOptions,
    wal: Option<Wal>,
    /// What is durable: synced writes and compactions.
    durable: State,
    /// `durable` plus what was appended since the last sync.
    staged: State,
    pending: Vec<GroupWrite>,
    /// The term each group writes its next entries with (grows on conflicts).
    terms: BTreeMap<GroupId, Term>,
}

impl Run {
    fn wal(&mut self) -> &mut Wal {
        self.wal.as_mut().expect("the log is open")
    }

    fn staged(&self, g: GroupId) -> RecoveredState {
        self.staged.get(&g).cloned().unwrap_or_default()
    }

    fn append(&mut self, writes: Vec<GroupWrite>) {
        for w in &writes {
            apply(&mut self.staged, w);
        }
        self.wal().append(&writes).expect("append");
        self.pending.extend(writes);
    }

    fn sync(&mut self) {
        self.wal().sync().expect("sync");
        self.durable = self.staged.clone();
        self.pending.clear();
    }

    fn entries(&mut self, g: GroupId, from: LogIndex, count: u64, len: usize) -> Vec<Entry> {
        let term = *self.terms.entry(g).or_insert(Term(1));
        (0..count)
            .map(|i| entry(g, from.plus(i), term, len + (i as usize % 3)))
            .collect()
    }

    fn run(&mut self, dir: &Path, step: &Step) {
        match *step {
            Step::Append {
                group,
                back,
                count,
                len,
                with_hard_state,
            } => {
                let g = GroupId(group);
                let s = self.staged(g);
                let (snap, last) = (snapshot_index(&s), last_index(&s));
                let from = LogIndex((last.0 + 1).saturating_sub(back).max(snap.0 + 1));
                if from <= last {
                    // A conflict: a new leader's entries replace a suffix.
                    let t = self.terms.entry(g).or_insert(Term(1));
                    *t = t.next();
                }
                let entries = self.entries(g, from, count, len);
                let hard_state = with_hard_state.then(|| HardState {
                    term: self.terms[&g],
                    vote: Some(NodeId(1)),
                    commit: from.prev(),
                    rejoining: false,
                });
                self.append(vec![GroupWrite {
                    group: g,
                    snapshot: None,
                    entries,
                    hard_state,
                }]);
            }
            Step::HardState {
                group,
                vote,
                commit_back,
                rejoining,
            } => {
                let g = GroupId(group);
                let s = self.staged(g);
                let term = *self.terms.entry(g).or_insert(Term(1));
                let hs = HardState {
                    term,
                    vote: vote.map(NodeId),
                    commit: LogIndex(last_index(&s).0.saturating_sub(commit_back)),
                    rejoining,
                };
                self.append(vec![GroupWrite {
                    group: g,
                    hard_state: Some(hs),
                    ..GroupWrite::default()
                }]);
            }
            Step::Install { group, ahead } => {
                let g = GroupId(group);
                let s = self.staged(g);
                let index = LogIndex(
                    (last_index(&s).0 as i64 + ahead).max(snapshot_index(&s).0 as i64 + 1) as u64,
                );
                let t = self.terms.entry(g).or_insert(Term(1));
                *t = t.next();
                let t = *t;
                let m = meta(index, t, g);
                // As the node does: the snapshot's data is durable before
                // the log records it.
                write_snapshot(self.wal(), g, &m);
                self.append(vec![GroupWrite {
                    group: g,
                    snapshot: Some(m),
                    entries: Vec::new(),
                    hard_state: Some(HardState {
                        term: t,
                        vote: None,
                        commit: index,
                        rejoining: false,
                    }),
                }]);
            }
            Step::Compact { group, back } => {
                // `LogStore::compact` syncs first.
                self.sync();
                let g = GroupId(group);
                let s = self.staged(g);
                let (snap, last) = (snapshot_index(&s), last_index(&s));
                let index = LogIndex(last.0.saturating_sub(back));
                if index <= snap {
                    return;
                }
                let m = meta(index, term_at(&s, index), g);
                write_snapshot(self.wal(), g, &m);
                self.wal().compact(g, index).expect("compact");
                compact(&mut self.durable, g, &m);
                self.staged = self.durable.clone();
            }
            Step::Multi { count, len } => {
                let mut writes = Vec::new();
                for group in 0..GROUPS {
                    let g = GroupId(group);
                    let s = self.staged(g);
                    let from = last_index(&s).next();
                    let entries = self.entries(g, from, count, len);
                    let commit = last_index(&s);
                    let w = GroupWrite {
                        group: g,
                        snapshot: None,
                        entries,
                        hard_state: Some(HardState {
                            term: self.terms[&g],
                            vote: Some(NodeId(2)),
                            commit,
                            rejoining: false,
                        }),
                    };
                    apply(&mut self.staged, &w);
                    writes.push(w);
                }
                self.wal().append(&writes).expect("append");
                self.pending.extend(writes);
            }
            Step::Sync => self.sync(),
            Step::Recover => {
                let got = self.wal().recover().expect("recover");
                self.durable = self.staged.clone();
                self.pending.clear();
                assert_same(&got, &self.durable, "LogStore::recover");
            }
            Step::Reopen => {
                // Appended but never synced: lost, as in a crash.
                self.wal = None;
                self.staged = self.durable.clone();
                self.pending.clear();
                let mut wal = open(dir, &self.opts);
                let got = wal.take_recovered();
                assert_eq!(wal.is_fresh(), self.durable.is_empty(), "is_fresh");
                self.wal = Some(wal);
                assert_same(&got, &self.durable, "reopen");
                self.check_snapshot_files();
            }
        }
    }

    /// After a reopen, each group has exactly the snapshot file its
    /// recovered state names, and it reads back (streaming) intact.
    fn check_snapshot_files(&mut self) {
        let wal = self.wal.as_ref().expect("open");
        for g in (0..GROUPS).map(GroupId) {
            let expected = self.durable.get(&g).and_then(|s| s.snapshot.clone());
            let files: Vec<LogIndex> = wal
                .snapshots()
                .list(g)
                .expect("list snapshots")
                .into_iter()
                .map(|(i, _, _)| i)
                .collect();
            match &expected {
                None => assert!(files.is_empty(), "{g:?}: stray snapshots {files:?}"),
                Some(m) => {
                    assert_eq!(files, vec![m.index], "{g:?}: snapshot files");
                    let mut r = wal
                        .snapshots()
                        .open_reader(g, m.index)
                        .expect("open snapshot")
                        .expect("snapshot file exists");
                    assert_eq!(r.meta(), m);
                    let mut data = Vec::new();
                    r.read_to_end(&mut data).expect("snapshot reads back");
                    assert_eq!(data, snapshot_data(g, m.index));
                }
            }
        }
    }
}

fn assert_same(got: &State, expected: &State, when: &str) {
    for (g, s) in got {
        for e in &s.entries {
            if let Err(e) = check_entry(*g, e) {
                panic!("{when}: damaged entry: {e}");
            }
        }
    }
    let summary = |s: &State| -> Vec<(GroupId, LogIndex, LogIndex, usize)> {
        s.iter()
            .map(|(g, s)| (*g, snapshot_index(s), last_index(s), s.entries.len()))
            .collect()
    };
    assert_eq!(
        summary(got),
        summary(expected),
        "{when}: (group, snapshot, last, entries)"
    );
    assert!(
        got == expected,
        "{when}: recovered state differs from the model"
    );
}

fn run_history(steps: &[Step], segment_size: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = small_segments(segment_size);
    let wal = open(dir.path(), &opts);
    assert!(wal.is_fresh());
    let mut run = Run {
        opts,
        wal: Some(wal),
        durable: State::new(),
        staged: State::new(),
        pending: Vec::new(),
        terms: BTreeMap::new(),
    };
    for s in steps {
        run.run(dir.path(), s);
    }
    run.sync();
    run.run(dir.path(), &Step::Reopen);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: env_count("KUBERAFT_STORAGE_CASES", 24) as u32,
        ..ProptestConfig::default()
    })]

    #[test]
    fn what_was_synced_comes_back_and_nothing_overwritten(
        steps in proptest::collection::vec(step(), 1..60),
        segment_kib in prop_oneof![Just(8u64), Just(16), Just(64)],
    ) {
        run_history(&steps, segment_kib << 10);
    }
}

/// Old segments go once every group with entries in them is covered by a
/// snapshot, and not before; what remains recovers intact.
#[test]
fn old_segments_are_removed_once_every_group_has_passed_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = small_segments(8 << 10);
    let (a, b) = (GroupId(1), GroupId(2));
    let mut wal = open(dir.path(), &opts);
    let write = |wal: &mut Wal, g: GroupId, from: u64, count: u64| {
        let entries = (from..from + count)
            .map(|i| entry(g, LogIndex(i), Term(1), 500))
            .collect();
        wal.append(&[GroupWrite {
            group: g,
            entries,
            ..GroupWrite::default()
        }])
        .expect("append");
        wal.sync().expect("sync");
    };
    write(&mut wal, b, 1, 3);
    for i in 0..10 {
        write(&mut wal, a, 1 + i * 10, 10);
    }
    let segments = |wal: &Wal| {
        std::fs::read_dir(wal.wal_dir())
            .expect("list")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".log"))
            })
            .count()
    };
    assert_eq!(wal.stats().oldest_segment_pinned_by, Some(b));
    // a's snapshot passes all its entries but the last; b still pins segment 1.
    let m = meta(LogIndex(99), Term(1), a);
    write_snapshot(&wal, a, &m);
    wal.compact(a, LogIndex(99)).expect("compact a");
    wal.sync().expect("sync");
    let before = segments(&wal);
    assert!(before > 5, "the test needs several segments, got {before}");
    assert_eq!(
        wal.stats().segments_deleted,
        0,
        "b's entries pin the oldest segment"
    );
    assert_eq!(wal.stats().oldest_segment_pinned_by, Some(b));
    assert_eq!(wal.stats().live_segments, before as u64);

    let m = meta(LogIndex(3), Term(1), b);
    write_snapshot(&wal, b, &m);
    wal.compact(b, LogIndex(3)).expect("compact b");
    // Old segments are deleted right after the compaction is acknowledged,
    // before the writer takes the next submission.
    wal.sync().expect("sync");
    let after = segments(&wal);
    assert!(
        after <= 3,
        "{after} of {before} segments left after every group's snapshot passed them"
    );
    assert!(wal.stats().segments_deleted >= (before - after) as u64);
    assert_eq!(wal.stats().live_segments, after as u64);
    assert_eq!(
        wal.stats().oldest_segment_pinned_by,
        Some(a),
        "a's last entry is not covered by its snapshot"
    );
    drop(wal);

    let mut wal = open(dir.path(), &opts);
    let got = wal.take_recovered();
    assert_eq!(
        got[&a].snapshot.as_ref().map(|s| s.index),
        Some(LogIndex(99))
    );
    assert_eq!(got[&a].entries.len(), 1);
    check_entry(a, &got[&a].entries[0]).expect("a's last entry intact");
    assert_eq!(
        got[&b].snapshot.as_ref().map(|s| s.index),
        Some(LogIndex(3))
    );
    assert!(got[&b].entries.is_empty());
}
