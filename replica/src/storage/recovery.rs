//! Replay of the write-ahead log at startup: every group's durable state,
//! and the decision between a torn tail (repaired) and damage (refused).
//!
//! The writer fsyncs each frame before it writes the next one, so at a crash
//! at most the last frame of the last segment can be incomplete, in any
//! pattern (pages reach the disk in any order). Hence:
//! - a bad frame in the last segment with no valid later frame anywhere
//!   after it is a torn tail: it was never acknowledged, and it is cut off
//!   (zeroed, so that only zeros ever follow the last frame on disk);
//! - a bad frame followed by a valid one, a bad frame in an older segment,
//!   a frame out of sequence, a missing segment: acknowledged data is
//!   damaged, and recovery stops with an error that says where.

use super::codec::{self, Op, Reader};
use super::dir::{self, Identity};
use super::error::{Result, StorageError};
use super::segment::{self, FRAME_HEADER, Frame, HEADER_LEN, SegmentHeader};
use super::tracker::{Placement, Tracker};
use crate::raft::{GroupId, RecoveredState};
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// What recovery found and did, for the operator's log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub frames: u64,
    /// Bytes of valid frames replayed.
    pub bytes: u64,
    /// A torn tail that was cut off, if any.
    pub truncated: Option<Truncation>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    pub path: PathBuf,
    pub offset: u64,
    /// How many bytes (up to the end of the file) were discarded.
    pub discarded: u64,
    pub reason: String,
}

/// Where the writer continues after recovery.
#[derive(Debug)]
pub(crate) struct Tail {
    pub seq: u64,
    pub path: PathBuf,
    pub offset: u64,
    pub next_batch: u64,
    /// Whether the segment holds any frame (if not, the next frame starts
    /// with the checkpoint of every group's metadata).
    pub has_frames: bool,
}

pub(crate) struct Recovered {
    pub groups: BTreeMap<GroupId, RecoveredState>,
    pub tracker: Tracker,
    pub tail: Option<Tail>,
    pub report: RecoveryReport,
}

/// The segments of `wal_dir`, in order, checked to be contiguous.
pub(crate) fn list_segments(wal_dir: &Path, remove_tmp: bool) -> Result<Vec<(u64, PathBuf)>> {
    let mut segs = Vec::new();
    let rd = fs::read_dir(wal_dir).map_err(StorageError::io(wal_dir, "listing"))?;
    for entry in rd {
        let entry = entry.map_err(StorageError::io(wal_dir, "listing"))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = segment::parse_segment_name(name) {
            segs.push((seq, entry.path()));
        } else if remove_tmp && name.ends_with(".log.tmp") {
            // A segment whose creation did not finish: never used.
            fs::remove_file(entry.path()).map_err(StorageError::io(entry.path(), "removing"))?;
        }
    }
    segs.sort();
    for w in segs.windows(2) {
        if w[1].0 != w[0].0 + 1 {
            return Err(StorageError::Missing {
                dir: wal_dir.to_owned(),
                reason: format!(
                    "segments {} to {} are missing between {} and {}",
                    segment::segment_name(w[0].0 + 1),
                    segment::segment_name(w[1].0 - 1),
                    w[0].1.display(),
                    w[1].1.display()
                ),
            });
        }
    }
    Ok(segs)
}

/// Segments whose reading the kernel is asked to start ahead of the one
/// being read (`POSIX_FADV_WILLNEED`), so that the disk has several large
/// reads queued instead of one read-ahead window at a time.
const READ_AHEAD_SEGMENTS: usize = 2;

/// Replays the log of `wal_dir`. With `repair`, a torn tail is cut off on
/// disk (and stray temporary files removed); without, the files are only read.
pub(crate) fn recover(wal_dir: &Path, id: &Identity, repair: bool) -> Result<Recovered> {
    let segs = list_segments(wal_dir, repair)?;
    // Segments are read on another thread while this one replays, so that
    // replay takes about the longer of reading and decoding, not their sum;
    // the kernel reads the next segments meanwhile (see READ_AHEAD_SEGMENTS).
    // One whole segment may wait in the channel.
    std::thread::scope(|scope| {
        let (full_tx, full) = mpsc::sync_channel::<Result<Bytes>>(1);
        let paths: Vec<PathBuf> = segs.iter().map(|(_, p)| p.clone()).collect();
        scope.spawn(move || {
            let mut opened: VecDeque<Result<fs::File>> = VecDeque::new();
            let mut next = 0;
            for path in &paths {
                while next < paths.len() && opened.len() <= READ_AHEAD_SEGMENTS {
                    opened.push_back(open_segment(&paths[next]));
                    next += 1;
                }
                let read = opened
                    .pop_front()
                    .unwrap_or_else(|| open_segment(path))
                    .and_then(|f| read_segment(path, f));
                let failed = read.is_err();
                // A closed channel: replay stopped early (an error).
                if full_tx.send(read).is_err() || failed {
                    return;
                }
            }
        });
        replay_segments(wal_dir, id, repair, &segs, full)
    })
}

/// Replays segments held in memory, given in order with their sequence
/// numbers, exactly as [`recover`] replays files, but without repairing
/// anything: the entry point of the write-ahead log's fuzz target.
pub(crate) fn replay_in_memory(id: &Identity, segments: Vec<(u64, Vec<u8>)>) -> Result<Recovered> {
    let wal_dir = Path::new("(in memory)");
    let segs: Vec<(u64, PathBuf)> = segments
        .iter()
        .map(|(seq, _)| (*seq, wal_dir.join(segment::segment_name(*seq))))
        .collect();
    let (full_tx, full) = mpsc::channel();
    for (_, buf) in segments {
        let _ = full_tx.send(Ok(Bytes::from(buf)));
    }
    drop(full_tx);
    replay_segments(wal_dir, id, false, &segs, full)
}

/// Opens a segment for reading and tells the kernel to read all of it,
/// in order, soon.
fn open_segment(path: &Path) -> Result<fs::File> {
    let f = fs::File::open(path).map_err(StorageError::io(path, "reading segment"))?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: advisory syscalls on an open descriptor.
        unsafe {
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED);
        }
    }
    Ok(f)
}

/// Reads a whole segment into one buffer.
fn read_segment(path: &Path, mut f: fs::File) -> Result<Bytes> {
    let len = f
        .metadata()
        .map_err(StorageError::io(path, "reading segment"))?
        .len();
    let mut buf = Vec::with_capacity(len as usize);
    f.read_to_end(&mut buf)
        .map_err(StorageError::io(path, "reading segment"))?;
    Ok(Bytes::from(buf))
}

/// Replays `segs`, whose contents arrive in order on `full`.
///
/// The commands of entries recovered from a segment other than the last are
/// slices of the segment's buffer (no copy, no allocation per entry), so a
/// buffer lives as long as any of its entries; such segments are full. The
/// last segment is usually mostly preallocated zeros: its commands are
/// copied so that its buffer is freed at once.
fn replay_segments(
    wal_dir: &Path,
    id: &Identity,
    repair: bool,
    segs: &[(u64, PathBuf)],
    full: mpsc::Receiver<Result<Bytes>>,
) -> Result<Recovered> {
    let mut out = Recovered {
        groups: BTreeMap::new(),
        tracker: Tracker::default(),
        tail: None,
        report: RecoveryReport {
            segments: segs.len(),
            ..RecoveryReport::default()
        },
    };
    let mut expected_batch: Option<u64> = None;
    for (i, (seq, path)) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        let buf = full.recv().map_err(|_| StorageError::Missing {
            dir: wal_dir.to_owned(),
            reason: format!("{} could not be read (the reader stopped)", path.display()),
        })??;
        let header = check_header(path, &buf, *seq, id)?;
        if let Some(b) = expected_batch
            && b != header.first_batch
        {
            return Err(corrupt(
                path,
                0,
                format!(
                    "segment starts at batch {} but the previous segment ended before batch {b}",
                    header.first_batch
                ),
                "a segment was replaced or frames are missing".into(),
            ));
        }
        out.tracker.add_segment(*seq);
        let mut batch = header.first_batch;
        let mut off = HEADER_LEN as usize;
        let mut has_frames = false;
        loop {
            match segment::read_frame(&buf, off) {
                Frame::Valid {
                    batch: b,
                    body,
                    next,
                } => {
                    if b != batch {
                        return Err(corrupt(
                            path,
                            off as u64,
                            format!("frame of batch {b} where batch {batch} was expected"),
                            "the frame checksum is valid, so frames are missing or repeated".into(),
                        ));
                    }
                    let shared;
                    let mut reader = if last {
                        Reader::new(body)
                    } else {
                        shared = buf.slice(off + FRAME_HEADER..off + FRAME_HEADER + body.len());
                        Reader::shared(&shared)
                    };
                    replay(&mut out, *seq, &mut reader).map_err(|reason| {
                        corrupt(
                            path,
                            off as u64,
                            reason,
                            "the frame checksum is valid, so it was written like this \
                             (by an incompatible version, or a bug)"
                                .into(),
                        )
                    })?;
                    out.report.frames += 1;
                    out.report.bytes += (next - off) as u64;
                    has_frames = true;
                    batch += 1;
                    off = next;
                }
                Frame::End if segment::zeros_from(&buf, off) => break,
                found => {
                    // Zeros where a frame header should be, followed by
                    // something else, are a torn frame too: its first page
                    // did not reach the disk but a later one did.
                    let reason = match found {
                        Frame::Bad(reason) => reason,
                        _ => "a zeroed frame header with data after it".into(),
                    };
                    if !last {
                        return Err(corrupt(
                            path,
                            off as u64,
                            reason,
                            "newer segments follow this one, so it was complete and synced".into(),
                        ));
                    }
                    if let Some((at, b)) =
                        segment::find_valid_frame(&buf, off + 8, batch.saturating_sub(1))
                    {
                        return Err(corrupt(
                            path,
                            off as u64,
                            reason,
                            format!("a valid frame of batch {b} follows at offset {at}"),
                        ));
                    }
                    let discarded = (buf.len() - off) as u64;
                    tracing::warn!(
                        path = %path.display(),
                        offset = off,
                        discarded,
                        %reason,
                        "write-ahead log: cutting off a torn tail left by a crash \
                         (it was never acknowledged)"
                    );
                    if repair {
                        cut_tail(path, off as u64, buf.len() as u64)?;
                    }
                    out.report.truncated = Some(Truncation {
                        path: path.clone(),
                        offset: off as u64,
                        discarded,
                        reason,
                    });
                    break;
                }
            }
        }
        expected_batch = Some(batch);
        if last {
            check_complete(wal_dir, &out)?;
            out.tail = Some(Tail {
                seq: *seq,
                path: path.clone(),
                offset: off as u64,
                next_batch: batch,
                has_frames,
            });
        }
    }
    Ok(out)
}

/// Every group's log holds every entry after its snapshot up to its last
/// index: entries that were in deleted segments must be covered by the
/// snapshot recorded after them.
fn check_complete(wal_dir: &Path, out: &Recovered) -> Result<()> {
    for (g, meta) in &out.tracker.groups {
        let entries = out.groups.get(g).map_or(&[][..], |s| &s.entries[..]);
        let from = meta.snapshot_index().next();
        let first = entries.first().map_or(meta.last.next(), |e| e.index);
        let last = entries.last().map_or(meta.snapshot_index(), |e| e.index);
        if first != from || last != meta.last {
            return Err(StorageError::Missing {
                dir: wal_dir.to_owned(),
                reason: format!(
                    "group {g} has a snapshot at {} and a log up to {}, but only entries {first}                      to {last} are in the segments: a segment that held the others is gone",
                    meta.snapshot_index(),
                    meta.last
                ),
            });
        }
    }
    Ok(())
}

fn check_header(path: &Path, buf: &[u8], seq: u64, id: &Identity) -> Result<SegmentHeader> {
    let header = SegmentHeader::decode(buf).map_err(|reason| StorageError::Unrecognized {
        path: path.to_owned(),
        reason,
    })?;
    if header.digest != id.digest() || header.node != id.node_id.0 {
        return Err(StorageError::Unrecognized {
            path: path.to_owned(),
            reason: format!(
                "the segment was written by node {} of another cluster or node, not by node {} \
                 of cluster {:?} (was it copied from another volume?)",
                header.node, id.node_id, id.cluster_id
            ),
        });
    }
    if header.seq != seq {
        return Err(StorageError::Unrecognized {
            path: path.to_owned(),
            reason: format!(
                "the header says segment {} (the file was renamed)",
                header.seq
            ),
        });
    }
    Ok(header)
}

/// Applies one frame's operations (the body `r` reads) to the recovered state.
fn replay(out: &mut Recovered, seg: u64, r: &mut Reader<'_>) -> std::result::Result<(), String> {
    while !r.is_empty() {
        let op = codec::decode_op(r).map_err(|e| e.to_string())?;
        match op {
            Op::Entries { group, mut entries } => {
                let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                    continue;
                };
                let (first, last) = (first.index, last.index);
                let placement = out
                    .tracker
                    .on_entries(seg, group, first, last)
                    .map_err(|e| format!("group {group}: {e}"))?;
                if let Placement::Store { skip } = placement {
                    let state = out.groups.entry(group).or_default();
                    let start = first.plus(skip as u64);
                    let keep = state.entries.partition_point(|e| e.index < start);
                    state.entries.truncate(keep);
                    state.entries.extend(entries.drain(skip..));
                }
            }
            Op::HardState { group, hard_state } => {
                out.tracker.on_hard_state(group, &hard_state);
                out.groups.entry(group).or_default().hard_state = hard_state;
            }
            Op::Install { group, meta } => {
                out.tracker.on_install(group, &meta);
                let state = out.groups.entry(group).or_default();
                state.entries.clear();
                state.snapshot = Some(meta);
            }
            Op::LogEnd { group, last } => {
                out.tracker
                    .on_log_end(group, last)
                    .map_err(|e| format!("group {group}: {e}"))?;
            }
            Op::Compacted { group, meta } => {
                if out.tracker.on_compacted(group, &meta) {
                    let state = out.groups.entry(group).or_default();
                    let covered = state.entries.partition_point(|e| e.index <= meta.index);
                    state.entries.drain(..covered);
                    state.snapshot = Some(meta);
                }
            }
        }
    }
    Ok(())
}

/// Zeroes a torn tail on disk, keeping the file's preallocated size.
fn cut_tail(path: &Path, offset: u64, len: u64) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(StorageError::io(path, "opening to cut a torn tail"))?;
    f.set_len(offset)
        .and_then(|_| dir::preallocate(&f, len))
        .and_then(|_| f.sync_all())
        .map_err(StorageError::io(path, "cutting a torn tail"))
}

fn corrupt(path: &Path, offset: u64, reason: String, detail: String) -> StorageError {
    StorageError::Corrupt {
        path: path.to_owned(),
        offset,
        reason,
        detail,
    }
}
