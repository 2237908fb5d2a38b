//! A real crash test: a child process (this test binary, started again in
//! the child role) appends to the log of several groups from several
//! threads, with conflicts and compactions, reporting each submission before
//! it is made and each acknowledgement after it is durable. The parent kills
//! it with SIGKILL at a random moment, reopens the log, and checks for every
//! group that what came back is exactly a prefix of what was submitted that
//! holds everything acknowledged. The next round continues on the recovered
//! log.
//!
//! `KUBERAFT_CRASH_ROUNDS` (default 20) sets the number of rounds.

mod storage;

use kuberaft::raft::{ConfState, GroupId, HardState, LogIndex, NodeId, SnapshotMeta, Term};
use kuberaft::storage::{GroupWrite, Wal, WalOptions};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use storage::{
    State, apply, check_entry, child_role, entry, env_count, kill, last_index, open,
    small_segments, snapshot_index, spawn_child,
};

const CHILD_TEST: &str = "crash_child";
const GROUPS: u64 = 4;
/// The child stops on its own after this long, should nobody kill it.
const CHILD_LIFETIME: Duration = Duration::from_secs(20);

fn opts() -> WalOptions {
    small_segments(32 << 10)
}

fn payload_len(index: LogIndex, term: Term) -> usize {
    40 + ((index.0 * 37 + term.0) % 400) as usize
}

fn snapshot_meta(g: GroupId, index: LogIndex, term: Term) -> SnapshotMeta {
    SnapshotMeta {
        index,
        term,
        conf_state: ConfState::with_voters([NodeId(1), NodeId(g.0 + 2)]),
    }
}

/// One operation of a group, as the child reports it before making it.
#[derive(Clone, Debug)]
enum Op {
    Write {
        from: LogIndex,
        count: u64,
        term: Term,
    },
    Compact {
        index: LogIndex,
        term: Term,
    },
}

impl Op {
    fn parse(words: &[&str]) -> Option<(GroupId, Op)> {
        let n = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
        match *words.first()? {
            "write" => Some((
                GroupId(n(1)?),
                Op::Write {
                    from: LogIndex(n(2)?),
                    count: n(3)?,
                    term: Term(n(4)?),
                },
            )),
            "compact" => Some((
                GroupId(n(1)?),
                Op::Compact {
                    index: LogIndex(n(2)?),
                    term: Term(n(3)?),
                },
            )),
            _ => None,
        }
    }

    /// The write the child submits for this operation.
    fn write(&self, g: GroupId) -> Option<GroupWrite> {
        let Op::Write { from, count, term } = *self else {
            return None;
        };
        Some(GroupWrite {
            group: g,
            snapshot: None,
            entries: (0..count)
                .map(|i| entry(g, from.plus(i), term, payload_len(from.plus(i), term)))
                .collect(),
            hard_state: Some(HardState {
                term,
                vote: Some(NodeId(1)),
                commit: from.prev(),
                rejoining: false,
            }),
        })
    }

    fn apply(&self, state: &mut State, g: GroupId) {
        match *self {
            Op::Write { .. } => apply(state, &self.write(g).expect("a write")),
            Op::Compact { index, term } => {
                let s = state.entry(g).or_default();
                s.entries.retain(|e| e.index > index);
                s.snapshot = Some(snapshot_meta(g, index, term));
            }
        }
    }
}

/// The child: appends until killed.
#[test]
#[ignore = "the child role of the crash test, started by the crash test itself"]
fn crash_child() {
    if child_role().as_deref() != Some("crash") {
        return;
    }
    let dir = PathBuf::from(std::env::var("CRASH_DIR").expect("CRASH_DIR"));
    let round = env_count("CRASH_ROUND", 0);
    // Stop when the parent goes away (stdin closes) or after a while.
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    std::thread::spawn(|| {
        std::thread::sleep(CHILD_LIFETIME);
        std::process::exit(0);
    });
    let mut wal = open(&dir, &opts());
    let recovered = wal.take_recovered();
    let wal = &wal;
    // Each line is written and flushed before the operation it announces is
    // submitted (and an acknowledgement only after it is durable); the lock
    // keeps lines whole.
    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")
            .and_then(|_| out.flush())
            .expect("stdout");
    };
    say("ready".into());
    std::thread::scope(|scope| {
        for g in (0..GROUPS).map(GroupId) {
            let mut state = State::new();
            if let Some(s) = recovered.get(&g) {
                state.insert(g, s.clone());
            }
            scope.spawn(move || {
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(round * 100 + g.0);
                let mut term_counter = 0u64;
                loop {
                    let s = state.get(&g).cloned().unwrap_or_default();
                    let (snap, last) = (snapshot_index(&s), last_index(&s));
                    term_counter += 1;
                    let term = Term(round * 1_000_000 + term_counter);
                    let op = if rng.random_bool(0.05) && last > snap {
                        Op::Compact {
                            index: last,
                            term: s.entries.last().map_or(term, |e| e.term),
                        }
                    } else {
                        // Now and then a conflict replaces the last entries.
                        let back = if rng.random_bool(0.1) {
                            rng.random_range(1..3)
                        } else {
                            0
                        };
                        Op::Write {
                            from: LogIndex((last.0 + 1).saturating_sub(back).max(snap.0 + 1)),
                            count: rng.random_range(1..4),
                            term,
                        }
                    };
                    // Reported before it is made: the parent must know of
                    // every write that may be durable.
                    let line = match &op {
                        Op::Write { from, count, term } => {
                            format!("write {} {} {count} {}", g.0, from.0, term.0)
                        }
                        Op::Compact { index, term } => {
                            format!("compact {} {} {}", g.0, index.0, term.0)
                        }
                    };
                    say(line);
                    let result = match &op {
                        Op::Write { .. } => wal.submit_ticket(vec![op.write(g).expect("write")]),
                        Op::Compact { index, term } => {
                            let meta = snapshot_meta(g, *index, *term);
                            let mut w = wal.snapshots().create(g, &meta).expect("snapshot");
                            w.write_all(format!("state of {g:?} at {index:?}").as_bytes())
                                .expect("snapshot data");
                            w.finish().expect("snapshot durable");
                            wal.compact_to(g, meta)
                        }
                    }
                    .wait();
                    if let Err(e) = result {
                        panic!("child: {g:?}: {e}");
                    }
                    say(format!("ack {}", g.0));
                    op.apply(&mut state, g);
                }
            });
        }
    });
}

/// What the parent learnt from one child: per group, the operations
/// submitted in order and how many of them were acknowledged.
#[derive(Default)]
struct Round {
    ops: BTreeMap<GroupId, Vec<Op>>,
    acked: BTreeMap<GroupId, usize>,
}

fn parse_output(lines: &[String]) -> Round {
    let mut r = Round::default();
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some((g, op)) = Op::parse(&words) {
            r.ops.entry(g).or_default().push(op);
        } else if let ["ack", g] = words[..]
            && let Ok(g) = g.parse()
        {
            *r.acked.entry(GroupId(g)).or_default() += 1;
        }
    }
    r
}

/// The recovered state of each group is `base` plus a prefix of the
/// submitted operations at least as long as what was acknowledged.
fn check_round(base: &State, round: &Round, got: &State, n: u64) {
    for g in (0..GROUPS).map(GroupId) {
        let ops = round.ops.get(&g).map_or(&[][..], |v| &v[..]);
        let acked = round.acked.get(&g).copied().unwrap_or(0);
        assert!(
            acked <= ops.len(),
            "round {n}: {g:?} acked more than submitted"
        );
        let mut model = State::new();
        if let Some(s) = base.get(&g) {
            model.insert(g, s.clone());
        }
        let target = got.get(&g);
        if let Some(s) = target {
            for e in &s.entries {
                check_entry(g, e).unwrap_or_else(|e| panic!("round {n}: {e}"));
            }
        }
        let mut matched = None;
        for k in 0..=ops.len() {
            if k >= acked && model.get(&g) == target {
                matched = Some(k);
                break;
            }
            if let Some(op) = ops.get(k) {
                op.apply(&mut model, g);
            }
        }
        assert!(
            matched.is_some(),
            "round {n}: {g:?} recovered {:?} (snapshot {:?}), which is no prefix of the {} \
             operations submitted holding the {acked} acknowledged",
            target.map(last_index),
            target.map(snapshot_index),
            ops.len()
        );
    }
}

fn check_snapshots(wal: &Wal, got: &State, n: u64) {
    for (g, s) in got {
        if let Some(meta) = &s.snapshot {
            let mut r = wal
                .snapshots()
                .open_reader(*g, meta.index)
                .expect("open snapshot")
                .unwrap_or_else(|| panic!("round {n}: {g:?}: the snapshot file is missing"));
            let mut data = String::new();
            r.read_to_string(&mut data).expect("snapshot reads back");
            assert_eq!(data, format!("state of {g:?} at {:?}", meta.index));
        }
    }
}

#[test]
fn acknowledged_writes_survive_sigkill_at_any_moment() {
    let rounds = env_count("KUBERAFT_CRASH_ROUNDS", 20);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(env_count("KUBERAFT_CRASH_SEED", 42));
    let mut base = State::new();
    let mut total_acked = 0;
    for n in 1..=rounds {
        let mut child = spawn_child(
            CHILD_TEST,
            "crash",
            &[
                ("CRASH_DIR", dir.path().display().to_string()),
                ("CRASH_ROUND", n.to_string()),
            ],
        );
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until the child has recovered, then let it run a random while.
        let started = Instant::now();
        let mut lines = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                // libtest's "test crash_child ... " precedes it on the line.
                Ok(l) if l.ends_with("ready") => break,
                Ok(l) => lines.push(l),
                Err(_) => {
                    kill(&mut child);
                    panic!("round {n}: the child did not start within 30 s");
                }
            }
        }
        let run_for = Duration::from_millis(rng.random_range(20..500));
        std::thread::sleep(run_for);
        kill(&mut child);
        let _ = reader.join();
        lines.extend(rx.try_iter());
        let round = parse_output(&lines);
        let acked: usize = round.acked.values().sum();
        total_acked += acked;

        let mut wal = open(dir.path(), &opts());
        let got = wal.take_recovered();
        check_round(&base, &round, &got, n);
        check_snapshots(&wal, &got, n);
        eprintln!(
            "round {n}: killed after {:?}, {acked} acknowledged, recovered {:?}, {:?}",
            started.elapsed(),
            got.values().map(last_index).collect::<Vec<_>>(),
            wal.recovery_report()
        );
        base = got;
    }
    assert!(
        total_acked > 0,
        "the children acknowledged nothing; the test checked nothing"
    );
}
