//! Snapshot files: written and read as streams (a snapshot larger than what
//! memory may hold twice goes through in bounded memory), visible only once
//! complete and durable, and damage reported instead of wrong bytes handed
//! out.

use kuberaft::raft::{ConfState, GroupId, LogIndex, NodeId, SnapshotMeta, Term};
use kuberaft::storage::{SnapshotStore, StorageError};
use std::io::{ErrorKind, Read, Write};

fn meta(index: u64) -> SnapshotMeta {
    SnapshotMeta {
        index: LogIndex(index),
        term: Term(2),
        conf_state: ConfState::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
    }
}

/// Deterministic bytes of chunk `i`.
fn chunk(i: u64, buf: &mut [u8]) {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

/// Peak resident memory of this process so far, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

#[test]
fn a_large_snapshot_streams_through_in_bounded_memory() {
    const CHUNK: usize = 64 << 10;
    const CHUNKS: u64 = 1024; // 64 MiB
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SnapshotStore::open(dir.path()).expect("store");
    let g = GroupId(5);
    let before = peak_rss();
    let mut buf = vec![0u8; CHUNK];
    let mut w = store.create(g, &meta(1000)).expect("create");
    for i in 0..CHUNKS {
        chunk(i, &mut buf);
        w.write_all(&buf).expect("write");
    }
    assert!(
        store.list(g).expect("list").is_empty(),
        "nothing is visible before finish"
    );
    w.finish().expect("finish");

    let mut r = store
        .open_reader(g, LogIndex(1000))
        .expect("open")
        .expect("exists");
    assert_eq!(r.meta(), &meta(1000));
    assert_eq!(r.len(), CHUNK as u64 * CHUNKS);
    let mut expected = vec![0u8; CHUNK];
    for i in 0..CHUNKS {
        r.read_exact(&mut buf).expect("read");
        chunk(i, &mut expected);
        assert!(buf == expected, "chunk {i} differs");
    }
    assert_eq!(r.read(&mut buf).expect("end"), 0);
    let grown = peak_rss().saturating_sub(before);
    assert!(
        grown < 24 << 20,
        "writing and reading a 64 MiB snapshot grew the peak memory by {} MiB",
        grown >> 20
    );
}

#[test]
fn damaged_data_is_an_error_at_the_end_not_wrong_bytes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SnapshotStore::open(dir.path()).expect("store");
    let g = GroupId(1);
    let mut w = store.create(g, &meta(10)).expect("create");
    w.write_all(&[7u8; 100_000]).expect("write");
    w.finish().expect("finish");
    let (_, _, path) = store.list(g).expect("list").pop().expect("a snapshot");

    // A bit flipped in the data.
    let mut bytes = std::fs::read(&path).expect("read");
    let pristine = bytes.clone();
    bytes[50_000] ^= 4;
    std::fs::write(&path, &bytes).expect("write");
    let mut r = store
        .open_reader(g, LogIndex(10))
        .expect("the header is intact")
        .expect("exists");
    let e = r
        .read_to_end(&mut Vec::new())
        .expect_err("damage is reported");
    assert_eq!(e.kind(), ErrorKind::InvalidData);
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");

    // Cut short (a copy that did not finish).
    std::fs::write(&path, &pristine[..60_000]).expect("write");
    let e = store.open_reader(g, LogIndex(10)).err().expect("refused");
    assert!(matches!(e, StorageError::CorruptSnapshot { .. }), "{e}");
    assert!(
        e.to_string().contains("the leader will send a new one"),
        "{e}"
    );

    // Its header damaged.
    let mut bytes = pristine.clone();
    bytes[30] ^= 1;
    std::fs::write(&path, &bytes).expect("write");
    let e = store.open_reader(g, LogIndex(10)).err().expect("refused");
    assert!(matches!(e, StorageError::CorruptSnapshot { .. }), "{e}");
}

#[test]
fn an_unfinished_snapshot_is_never_visible_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SnapshotStore::open(dir.path()).expect("store");
    let g = GroupId(2);
    let mut w = store.create(g, &meta(3)).expect("create");
    w.write_all(b"half").expect("write");
    drop(w);
    assert!(store.list(g).expect("list").is_empty());
    assert!(store.open_reader(g, LogIndex(3)).expect("open").is_none());
    let files: Vec<_> = std::fs::read_dir(store.dir().join(format!("{:016x}", g.0)))
        .expect("group dir")
        .collect();
    assert!(files.is_empty(), "the temporary file is removed: {files:?}");

    // A crash in the middle leaves a temporary file: never listed, and
    // removed when the log is opened (see `Wal::open`).
    let mut w = store.create(g, &meta(4)).expect("create");
    w.write_all(b"half").expect("write");
    std::mem::forget(w);
    assert!(store.list(g).expect("list").is_empty());
    store.retain_only(g, LogIndex::ZERO).expect("clean");
    let left = std::fs::read_dir(store.dir().join(format!("{:016x}", g.0)))
        .expect("group dir")
        .count();
    assert_eq!(left, 0);
}
