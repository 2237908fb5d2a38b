//! Fuzz target `wal`: write-ahead log segments, replayed by recovery as at
//! startup (in memory, nothing repaired on disk).
//!
//! Input: a mode byte, then
//! - mode 0 (raw): the bytes that follow a valid header in the only segment,
//!   as a disk could hold them;
//! - mode 1 (framed): frames `ctl:u8 len:u16le body`, each given a valid
//!   checksum and the next batch number, so that the fuzzer reaches the
//!   operation decoder and replay instead of stopping at checksums;
//!   `ctl & 1` starts a new segment before the frame;
//! - mode 2 (damaged): `at:u16le kind:u8 value:u8`, then frames as in mode 1,
//!   damaged afterwards in segment `kind >> 2` at offset `at` (modulo its
//!   length): `kind & 3` = 0 zeroes the rest (pages that never reached the
//!   disk), 1 flips bits, 2 cuts the file short, 3 writes garbage.
//!
//! Checked, whatever the bytes:
//! - recovery returns state or an error; it never panics and allocates
//!   nothing on the strength of a length it read;
//! - intact frames are never cut off as a torn tail;
//! - damage in a segment that newer segments follow is refused, never cut;
//! - damage in the last segment loses no frame that lies wholly before it;
//! - every recovered log is contiguous after its snapshot, and a core
//!   restarted from it starts or refuses to, without panicking.

use super::{split_mode, with_mode};
use crate::raft::{
    ConfChange, ConfChangeKind, ConfState, Config, Entry, GroupId, HardState, LogIndex, NodeId,
    Payload, Raft, SnapshotMeta, Term,
};
use crate::storage::{self, HEADER_LEN, Identity, SegmentHeader};
use bytes::Bytes;

const NODE: NodeId = NodeId(1);
/// More segments cost time without reaching new code.
const MAX_SEGMENTS: usize = 8;
/// Zeros after the last frame: the segment's preallocated space.
const PREALLOCATED: usize = 64;

fn identity() -> Identity {
    Identity {
        cluster_id: "fuzz".into(),
        node_id: NODE,
    }
}

fn header(seq: u64, first_batch: u64) -> Vec<u8> {
    SegmentHeader {
        seq,
        digest: identity().digest(),
        node: NODE.0,
        first_batch,
    }
    .encode()
}

/// Segments built by [`framed`], and where each frame ends.
struct Built {
    segments: Vec<(u64, Vec<u8>)>,
    /// (segment index, offset just after the frame) of every frame.
    frame_ends: Vec<(usize, usize)>,
}

fn framed(mut rest: &[u8]) -> Built {
    let mut built = Built {
        segments: vec![(1, header(1, 1))],
        frame_ends: Vec::new(),
    };
    let mut batch = 1u64;
    while rest.len() >= 3 {
        let ctl = rest[0];
        let len = u16::from_le_bytes([rest[1], rest[2]]) as usize;
        let (body, tail) = rest[3..].split_at(len.min(rest.len() - 3));
        rest = tail;
        if ctl & 1 == 1 && built.segments.len() < MAX_SEGMENTS {
            let seq = built.segments.len() as u64 + 1;
            built.segments.push((seq, header(seq, batch)));
        }
        let (h, pad) = storage::frame_header(batch, &[body]);
        let index = built.segments.len() - 1;
        let seg = &mut built.segments[index].1;
        seg.extend_from_slice(&h);
        seg.extend_from_slice(body);
        seg.resize(seg.len() + pad, 0);
        built.frame_ends.push((index, seg.len()));
        batch += 1;
    }
    if let Some((_, last)) = built.segments.last_mut() {
        last.resize(last.len() + PREALLOCATED, 0);
    }
    built
}

/// Damages `built` as the 4 bytes of `damage` say; returns the damaged
/// segment and offset if a byte changed.
fn damage(built: &mut Built, damage: &[u8]) -> Option<(usize, usize)> {
    let [a, b, kind, value] = *damage else {
        return None;
    };
    let index = (kind >> 2) as usize % built.segments.len();
    let seg = &mut built.segments[index].1;
    let span = seg.len().checked_sub(HEADER_LEN as usize)?;
    if span == 0 {
        return None;
    }
    let at = HEADER_LEN as usize + u16::from_le_bytes([a, b]) as usize % span;
    let before = seg.clone();
    match kind & 3 {
        0 => seg[at..].fill(0),
        1 => seg[at] ^= value | 1,
        2 => seg.truncate(at),
        _ => {
            let mut x = u32::from(value) | 1;
            let end = (at + 64).min(seg.len());
            for byte in &mut seg[at..end] {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *byte = x as u8;
            }
        }
    }
    let first_change = before
        .iter()
        .zip(seg.iter())
        .position(|(x, y)| x != y)
        .or((before.len() != seg.len()).then_some(seg.len().min(before.len())))?;
    Some((index, first_change))
}

pub fn run(data: &[u8]) {
    let Some((mode, rest)) = split_mode(data) else {
        return;
    };
    let (segments, intact, damaged, frame_ends) = match mode % 3 {
        0 => {
            let _ = SegmentHeader::decode(rest);
            let mut seg = header(1, 1);
            seg.extend_from_slice(rest);
            (vec![(1, seg)], false, None, Vec::new())
        }
        1 => {
            let built = framed(rest);
            (built.segments, true, None, built.frame_ends)
        }
        _ => {
            let (how, frames) = rest.split_at(rest.len().min(4));
            let mut built = framed(frames);
            let damaged = damage(&mut built, how);
            (built.segments, damaged.is_none(), damaged, built.frame_ends)
        }
    };
    let last_segment = segments.len() - 1;
    let recovered = storage::replay_in_memory(&identity(), segments);
    if let Some((segment, at)) = damaged
        && segment < last_segment
    {
        assert!(
            recovered.is_err(),
            "damage at offset {at} of segment {} followed by newer segments was accepted",
            segment + 1
        );
    }
    let Ok(recovered) = recovered else { return };
    if intact {
        assert_eq!(
            recovered.report.truncated, None,
            "intact frames were cut off as a torn tail"
        );
    }
    if let Some((segment, at)) = damaged {
        let kept = frame_ends
            .iter()
            .filter(|(s, end)| *s < segment || (*s == segment && *end <= at))
            .count() as u64;
        assert!(
            recovered.report.frames >= kept,
            "recovery kept {} frames, but the {kept} frames before the damage at offset {at} \
             of segment {} were intact",
            recovered.report.frames,
            segment + 1
        );
    }
    for (group, state) in recovered.groups {
        let after = state.snapshot.as_ref().map_or(0, |s| s.index.0);
        for (i, e) in state.entries.iter().enumerate() {
            assert_eq!(
                Some(e.index.0),
                after.checked_add(i as u64 + 1),
                "group {group}: recovered log is not contiguous after the snapshot at {after}"
            );
        }
        if let Ok(mut core) = Raft::new(Config::new(NODE), state) {
            for _ in 0..3 {
                core.tick();
                let ready = core.ready();
                core.on_persisted(ready.number);
            }
        }
    }
}

/// A body the replica really writes: metadata of a group, then entries of
/// every payload kind.
fn real_body(group: GroupId, first: u64) -> Vec<u8> {
    let mut body = Vec::new();
    let meta = SnapshotMeta {
        index: LogIndex(first - 1),
        term: Term(1),
        conf_state: ConfState::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
    };
    if first == 2 {
        storage::encode_install(&mut body, group, &meta);
    } else {
        storage::encode_compacted(&mut body, group, &meta);
    }
    storage::encode_hard_state(
        &mut body,
        group,
        &HardState {
            term: Term(2),
            vote: Some(NodeId(1)),
            commit: LogIndex(first),
            rejoining: false,
        },
    );
    let entries = [
        Payload::Empty,
        Payload::Command(Bytes::from_static(b"\x01\x01\x00\x00\x00\x01k\x01v")),
        Payload::ConfChange(ConfChange::single(ConfChangeKind::AddLearner, NodeId(4))),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, payload)| Entry {
        term: Term(2),
        index: LogIndex(first + i as u64),
        payload,
    })
    .collect::<Vec<_>>();
    storage::encode_entries(&mut body, group, &entries);
    storage::encode_log_end(&mut body, group, LogIndex(first + 2));
    body
}

fn frames(bodies: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ctl, body) in bodies {
        out.push(*ctl);
        out.extend_from_slice(&(body.len() as u16).to_le_bytes());
        out.extend_from_slice(body);
    }
    out
}

pub fn seeds() -> Vec<Vec<u8>> {
    let g0 = real_body(GroupId(0), 2);
    let g1 = real_body(GroupId(1), 2);
    let g0_later = real_body(GroupId(0), 5);
    let one = frames(&[(0, g0.clone())]);
    let three = frames(&[(0, g0), (0, g1), (1, g0_later)]);
    // Mode 0 wants what lies on disk after the header: framed bytes.
    let raw = {
        let built = framed(&three);
        let mut seg = Vec::new();
        for (_, s) in built.segments {
            seg.extend_from_slice(&s[HEADER_LEN as usize..]);
        }
        seg
    };
    let mut out = vec![with_mode(0, &raw), with_mode(1, &one), with_mode(1, &three)];
    // Damage of every kind, in the first and the last segment.
    for kind in [0u8, 1, 2, 3, 4 | 1, 4 | 2] {
        let mut input = vec![2, 40, 0, kind, 0x5a];
        input.extend_from_slice(&three);
        out.push(input);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_frames_recover_and_damage_is_seen() {
        let built = framed(&frames(&[(0, real_body(GroupId(0), 2))]));
        let rec = storage::replay_in_memory(&identity(), built.segments).expect("recovers");
        assert_eq!(rec.report.frames, 1);
        let state = &rec.groups[&GroupId(0)];
        assert_eq!(state.entries.len(), 3);
        for seed in seeds() {
            run(&seed);
        }
    }
}
