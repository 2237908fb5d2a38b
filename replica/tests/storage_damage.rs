//! Damaged logs: a torn tail (files cut at any byte, bits flipped in the last
//! frame, a zeroed or garbled end) is cut off at recovery and everything
//! before it kept; damage anywhere before the tail is refused with an error
//! that names the file and offset and says what to do, and the files are
//! left as they were.
//!
//! The tests know the frame layout documented in `storage/segment.rs`: a
//! 4096-byte header page, then frames `crc:u32 len:u32 batch:u64 body`
//! padded to 8 bytes, then zeros.

mod storage;

use kuberaft::raft::{GroupId, HardState, LogIndex, NodeId, Term};
use kuberaft::storage::{GroupWrite, LogStore, StorageError, Wal, WalOptions};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use storage::{State, apply, entry, identity, last_index, open, small_segments};

const HEADER: u64 = 4096;

/// A frame found in a segment file.
#[derive(Clone, Copy, Debug)]
struct FrameAt {
    offset: u64,
    /// Length including the padding.
    len: u64,
    batch: u64,
}

struct Segment {
    name: String,
    frames: Vec<FrameAt>,
}

/// A log written one submission per frame, and where each frame is.
struct Fixture {
    dir: tempfile::TempDir,
    opts: WalOptions,
    /// Submission `k` is frame (batch) `k + 1`.
    submissions: Vec<Vec<GroupWrite>>,
    segments: Vec<Segment>,
}

impl Fixture {
    fn new(seed: u64) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = small_segments(16 << 10);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let wal = open(dir.path(), &opts);
        let mut state = State::new();
        let mut submissions = Vec::new();
        for k in 0..40u64 {
            let mut writes = Vec::new();
            for g in (0..3).map(GroupId) {
                if rng.random_bool(0.4) {
                    continue;
                }
                let last = state.get(&g).map_or(LogIndex::ZERO, last_index);
                // Now and then a conflict replaces the last two entries.
                let from = if rng.random_bool(0.15) {
                    LogIndex(last.0.saturating_sub(1).max(1))
                } else {
                    last.next()
                };
                let term = Term(1 + k / 4);
                let entries = (0..rng.random_range(1..5))
                    .map(|i| entry(g, from.plus(i), term, rng.random_range(20..1500)))
                    .collect();
                let w = GroupWrite {
                    group: g,
                    snapshot: None,
                    entries,
                    hard_state: Some(HardState {
                        term,
                        vote: Some(NodeId(1)),
                        commit: from.prev(),
                        rejoining: false,
                    }),
                };
                apply(&mut state, &w);
                writes.push(w);
            }
            if writes.is_empty() {
                writes.push(GroupWrite {
                    group: GroupId(0),
                    hard_state: Some(HardState {
                        term: Term(100 + k),
                        ..HardState::default()
                    }),
                    ..GroupWrite::default()
                });
                apply(&mut state, &writes[0]);
            }
            wal.submit_ticket(writes.clone()).wait().expect("write");
            submissions.push(writes);
        }
        drop(wal);
        let segments = scan(&dir.path().join("wal"));
        let frames: Vec<u64> = segments
            .iter()
            .flat_map(|s| s.frames.iter().map(|f| f.batch))
            .collect();
        assert_eq!(
            frames,
            (1..=40).collect::<Vec<_>>(),
            "one frame per submission, in order"
        );
        assert!(segments.len() >= 3, "the fixture needs several segments");
        Fixture {
            dir,
            opts,
            submissions,
            segments,
        }
    }

    /// The state after the first `frames` frames.
    fn expected(&self, frames: usize) -> State {
        let mut state = State::new();
        for writes in &self.submissions[..frames] {
            for w in writes {
                apply(&mut state, w);
            }
        }
        state
    }

    /// A copy of the pristine data directory to damage.
    fn copy(&self) -> tempfile::TempDir {
        let to = tempfile::tempdir().expect("temp dir");
        copy_dir(self.dir.path(), to.path());
        to
    }

    fn last(&self) -> &Segment {
        self.segments.last().expect("segments")
    }

    /// Frames before segment `i`.
    fn frames_before(&self, i: usize) -> usize {
        self.segments[..i].iter().map(|s| s.frames.len()).sum()
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read dir") {
        let e = e.expect("dir entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "LOCK" {
            fs::copy(e.path(), target).expect("copy");
        }
    }
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

/// The frames of every segment in `wal_dir`, read with the documented layout.
fn scan(wal_dir: &Path) -> Vec<Segment> {
    let mut names: Vec<String> = fs::read_dir(wal_dir)
        .expect("read wal dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let b = fs::read(wal_dir.join(&name)).expect("read segment");
            let mut frames = Vec::new();
            let mut off = HEADER as usize;
            while off + 16 <= b.len() && b[off..off + 16] != [0; 16] {
                let len = (16 + u32_at(&b, off + 4) as u64).next_multiple_of(8);
                frames.push(FrameAt {
                    offset: off as u64,
                    len,
                    batch: u64_at(&b, off + 8),
                });
                off += len as usize;
            }
            Segment { name, frames }
        })
        .collect()
}

fn seg_path(dir: &Path, seg: &Segment) -> PathBuf {
    dir.join("wal").join(&seg.name)
}

fn try_open(dir: &Path, opts: &WalOptions) -> Result<Wal, StorageError> {
    Wal::open(dir, identity(), opts.clone())
}

fn flip_bit(path: &Path, offset: u64, bit: u8) {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open segment");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).expect("read byte");
    b[0] ^= 1 << bit;
    f.write_all_at(&b, offset).expect("write byte");
}

fn assert_recovers(wal: &mut Wal, expected: &State, what: &str) {
    let got = wal.take_recovered();
    assert!(
        &got == expected,
        "{what}: recovered {} groups with last indexes {:?}, expected {:?}",
        got.len(),
        got.values().map(last_index).collect::<Vec<_>>(),
        expected.values().map(last_index).collect::<Vec<_>>()
    );
}

/// After a repaired tail the log goes on: a new write lands after what was
/// kept and both come back.
fn assert_continues(dir: &Path, opts: &WalOptions, mut expected: State) {
    let mut wal = try_open(dir, opts).expect("reopen after repair");
    let g = GroupId(1);
    let from = expected.get(&g).map_or(LogIndex::ZERO, last_index).next();
    let w = GroupWrite {
        group: g,
        entries: vec![entry(g, from, Term(99), 100)],
        ..GroupWrite::default()
    };
    wal.append(std::slice::from_ref(&w)).expect("append");
    wal.sync().expect("sync");
    apply(&mut expected, &w);
    drop(wal);
    let mut wal = try_open(dir, opts).expect("reopen");
    assert_recovers(&mut wal, &expected, "after the repaired tail");
}

#[test]
fn a_log_cut_at_any_offset_of_its_tail_keeps_every_frame_before_the_cut() {
    let fx = Fixture::new(1);
    let last = fx.last();
    let before = fx.frames_before(fx.segments.len() - 1);
    let end = last.frames.last().map_or(HEADER, |f| f.offset + f.len);
    let mut cuts: Vec<u64> = Vec::new();
    for f in &last.frames {
        for d in [0, 1, 7, 8, 15, 16, 17, f.len / 2, f.len - 1] {
            cuts.push(f.offset + d);
        }
    }
    cuts.push(end);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    for _ in 0..10 {
        cuts.push(rng.random_range(HEADER..end));
    }
    let pristine = fs::read(seg_path(fx.dir.path(), last)).expect("read");
    for (i, &cut) in cuts.iter().enumerate() {
        // The file cut short (a file system that lost the end), or zeroed
        // from the cut on (preallocated space never written).
        for zeroed in [false, true] {
            // A frame survives if none of its bytes changed: zeroing bytes
            // that were zeros (padding, high bytes of a number) is no damage.
            let intact = |f: &FrameAt| {
                let end = f.offset + f.len;
                end <= cut
                    || (zeroed && pristine[cut as usize..end as usize].iter().all(|&b| b == 0))
            };
            let kept = last.frames.iter().take_while(|f| intact(f)).count();
            let expected = fx.expected(before + kept);
            let dir = fx.copy();
            let path = seg_path(dir.path(), last);
            let f = fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open");
            let len = f.metadata().expect("metadata").len();
            f.set_len(cut).expect("truncate");
            if zeroed {
                f.set_len(len).expect("extend with zeros");
            }
            drop(f);
            let what = format!("cut at {cut} (zeroed after: {zeroed})");
            let mut wal = try_open(dir.path(), &fx.opts)
                .unwrap_or_else(|e| panic!("{what}: a torn tail must be repaired: {e}"));
            assert_recovers(&mut wal, &expected, &what);
            let report = wal.recovery_report().clone();
            // Bytes of a damaged frame remain (else the log simply ends).
            let torn = kept < last.frames.len() && cut > last.frames[kept].offset;
            assert_eq!(report.truncated.is_some(), torn, "{what}: {report:?}");
            if let Some(t) = &report.truncated {
                assert_eq!(t.offset, last.frames[kept].offset, "{what}");
                assert_eq!(t.path, path, "{what}");
            }
            drop(wal);
            if i % 8 == 0 {
                assert_continues(dir.path(), &fx.opts, expected.clone());
            }
        }
    }
}

#[test]
fn a_garbled_last_frame_is_cut_off_and_the_log_goes_on() {
    let fx = Fixture::new(3);
    let last = fx.last();
    let frame = *last.frames.last().expect("a frame");
    let total: usize = fx.segments.iter().map(|s| s.frames.len()).sum();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(4);
    for trial in 0..24 {
        let dir = fx.copy();
        let path = seg_path(dir.path(), last);
        let what = match trial % 3 {
            // One bit of the frame (header, body or padding) flipped.
            0 => {
                let at = frame.offset + rng.random_range(0..frame.len);
                flip_bit(&path, at, rng.random_range(0..8));
                format!("bit flipped at {at}")
            }
            // The first page never reached the disk, a later one did.
            1 => {
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .expect("open");
                f.write_all_at(&[0; 16], frame.offset).expect("zero header");
                "zeroed frame header".to_string()
            }
            // Garbage from some point of the frame on.
            _ => {
                let from = frame.offset + rng.random_range(0..frame.len);
                let garbage: Vec<u8> = (0..rng.random_range(1..3000))
                    .map(|_| rng.random())
                    .collect();
                let f = fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .expect("open");
                f.write_all_at(&garbage, from).expect("garbage");
                format!("{} bytes of garbage at {from}", garbage.len())
            }
        };
        let mut wal = try_open(dir.path(), &fx.opts)
            .unwrap_or_else(|e| panic!("{what}: a torn tail must be repaired: {e}"));
        assert_recovers(&mut wal, &fx.expected(total - 1), &what);
        let t = wal.recovery_report().truncated.clone();
        assert_eq!(t.map(|t| t.offset), Some(frame.offset), "{what}");
        drop(wal);
        // Only zeros follow the kept frames on disk now.
        let b = fs::read(&path).expect("read");
        assert!(
            b[frame.offset as usize..].iter().all(|&x| x == 0),
            "{what}: the torn tail is zeroed on disk"
        );
        if trial % 4 == 0 {
            assert_continues(dir.path(), &fx.opts, fx.expected(total - 1));
        }
    }
}

#[test]
fn bits_flipped_after_the_last_frame_lose_nothing() {
    let fx = Fixture::new(5);
    let last = fx.last();
    let end = last.frames.last().map_or(HEADER, |f| f.offset + f.len);
    let total: usize = fx.segments.iter().map(|s| s.frames.len()).sum();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(6);
    for _ in 0..8 {
        let dir = fx.copy();
        let path = seg_path(dir.path(), last);
        let len = fs::metadata(&path).expect("metadata").len();
        let at = rng.random_range(end..len);
        flip_bit(&path, at, rng.random_range(0..8));
        let mut wal = try_open(dir.path(), &fx.opts).expect("open");
        assert_recovers(&mut wal, &fx.expected(total), &format!("flip at {at}"));
        drop(wal);
        assert_continues(dir.path(), &fx.opts, fx.expected(total));
    }
}

/// The error a damaged log must give: which file, which offset, and what
/// the operator can do; and the files are left untouched for inspection.
fn assert_refused(dir: &Path, opts: &WalOptions, path: &Path, offset: u64, what: &str) {
    let before = fs::read(path).expect("read");
    match try_open(dir, opts) {
        Ok(_) => panic!("{what}: damage before the tail must be refused"),
        Err(e @ StorageError::Corrupt { .. }) => {
            let msg = e.to_string();
            let StorageError::Corrupt {
                path: p, offset: o, ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!((p.as_path(), *o), (path, offset), "{what}: {msg}");
            assert!(msg.contains(&path.display().to_string()), "{what}: {msg}");
            assert!(
                msg.contains(&format!("byte offset {offset}")),
                "{what}: {msg}"
            );
            assert!(
                msg.contains("Keep a copy of the data directory")
                    && msg.contains("add it back to the cluster"),
                "{what}: the message says what to do: {msg}"
            );
        }
        Err(e) => panic!("{what}: expected a corruption error, got: {e}"),
    }
    assert_eq!(
        fs::read(path).expect("read"),
        before,
        "{what}: a refused log is not modified"
    );
}

#[test]
fn a_flipped_bit_in_any_frame_before_the_tail_is_refused() {
    let fx = Fixture::new(7);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(8);
    let n = fx.segments.len();
    for (i, seg) in fx.segments.iter().enumerate() {
        // Every frame, except the very last one of the log (that is the tail).
        let frames = if i + 1 == n {
            &seg.frames[..seg.frames.len() - 1]
        } else {
            &seg.frames[..]
        };
        for f in frames {
            let dir = fx.copy();
            let path = seg_path(dir.path(), seg);
            let at = f.offset + rng.random_range(0..f.len);
            flip_bit(&path, at, rng.random_range(0..8));
            let what = format!("{}: bit flipped at {at} in batch {}", seg.name, f.batch);
            assert_refused(dir.path(), &fx.opts, &path, f.offset, &what);
        }
    }
}

#[test]
fn a_zeroed_or_cut_frame_before_the_tail_is_refused() {
    // A fixture whose last segment has two frames or more.
    let fx = (9..)
        .map(Fixture::new)
        .find(|fx| fx.last().frames.len() >= 2)
        .expect("a fixture");
    // A frame in the middle of the last segment zeroed (a lost write).
    let last = fx.last();
    let f = last.frames[last.frames.len() - 2];
    let dir = fx.copy();
    let path = seg_path(dir.path(), last);
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    file.write_all_at(&vec![0; f.len as usize], f.offset)
        .expect("zero");
    drop(file);
    assert_refused(dir.path(), &fx.opts, &path, f.offset, "a zeroed frame");

    // An older segment cut short inside its last frame.
    let seg = &fx.segments[0];
    let f = *seg.frames.last().expect("frame");
    let dir = fx.copy();
    let path = seg_path(dir.path(), seg);
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    file.set_len(f.offset + f.len / 2).expect("cut");
    drop(file);
    assert_refused(
        dir.path(),
        &fx.opts,
        &path,
        f.offset,
        "an older segment cut short",
    );
}

#[test]
fn a_missing_or_foreign_segment_is_refused_by_name() {
    let fx = Fixture::new(11);
    let dir = fx.copy();
    let middle = seg_path(dir.path(), &fx.segments[1]);
    fs::remove_file(&middle).expect("remove");
    let e = try_open(dir.path(), &fx.opts).err().expect("refused");
    let msg = e.to_string();
    assert!(matches!(e, StorageError::Missing { .. }), "{msg}");
    assert!(
        msg.contains(&fx.segments[1].name.replace(".log", "")),
        "{msg}"
    );

    // A damaged segment header.
    let dir = fx.copy();
    let path = seg_path(dir.path(), &fx.segments[0]);
    flip_bit(&path, 20, 3);
    let e = try_open(dir.path(), &fx.opts).err().expect("refused");
    let msg = e.to_string();
    assert!(matches!(e, StorageError::Unrecognized { .. }), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");

    // A segment from another node's volume, renamed into place.
    let other = tempfile::tempdir().expect("temp dir");
    let mut other_id = identity();
    other_id.node_id = NodeId(2);
    let wal = Wal::open(other.path(), other_id, fx.opts.clone()).expect("open other");
    wal.submit_ticket(fx.submissions[0].clone())
        .wait()
        .expect("write");
    drop(wal);
    let dir = fx.copy();
    let next = fx.segments.len() as u64 + 1;
    let target = dir.path().join("wal").join(format!("{next:016x}.log"));
    fs::copy(other.path().join("wal/0000000000000001.log"), &target).expect("copy");
    let e = try_open(dir.path(), &fx.opts).err().expect("refused");
    let msg = e.to_string();
    assert!(
        msg.contains("node 2") && msg.contains(&target.display().to_string()),
        "{msg}"
    );
}
