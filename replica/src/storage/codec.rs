//! The binary encoding of what the log stores: entries, hard states and
//! snapshot markers of any group, as operations inside a frame.
//!
//! Little-endian, fixed-width integers, versioned by the segment header.
//! Decoding never panics and never allocates more than the bytes it was
//! given can hold: every count is checked against what remains.
//!
//! ```text
//! op       := tag:u8 group:u64 body
//! Entries  (1) := first_index:u64 count:u32 entry*      entry := term:u64 payload
//! HardState(2) := term:u64 flags:u8 vote:u64 commit:u64   flags: 1 has vote, 2 rejoining
//! Install  (3) := snapshot_meta      (the log is replaced by an empty log after it)
//! Compacted(4) := snapshot_meta      (entries up to it are covered; later entries stay)
//! LogEnd   (5) := last:u64           (checkpoint: the log ends there; older segments,
//!                                     possibly deleted, hold the entries)
//! payload  := 0 | 1 len:u32 bytes | 2 transition:u8 count:u32 (kind:u8 node:u64)*
//! snapshot_meta := index:u64 term:u64 conf_state
//! conf_state := voters outgoing learners learners_next (count:u32 node:u64*) auto_leave:u8
//! ```

use crate::raft::{
    ConfChange, ConfChangeKind, ConfChangeSingle, ConfChangeTransition, ConfState, Entry, GroupId,
    HardState, LogIndex, NodeId, Payload, SnapshotMeta, Term,
};
use bytes::Bytes;

const OP_ENTRIES: u8 = 1;
const OP_HARD_STATE: u8 = 2;
const OP_INSTALL: u8 = 3;
const OP_COMPACTED: u8 = 4;
const OP_LOG_END: u8 = 5;

/// One operation of a frame, as recovery replays it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Contiguous entries; a stored entry at or after the first one's index is replaced.
    Entries { group: GroupId, entries: Vec<Entry> },
    HardState {
        group: GroupId,
        hard_state: HardState,
    },
    /// A snapshot installed from the leader: the log restarts after it.
    Install { group: GroupId, meta: SnapshotMeta },
    /// Entries up to `meta.index` are covered by a durable snapshot.
    Compacted { group: GroupId, meta: SnapshotMeta },
    /// Part of the checkpoint at the start of a segment: the group's log
    /// ended at `last` there. Entries up to it are in older segments, which
    /// may have been deleted because a snapshot recorded later covers them.
    LogEnd { group: GroupId, last: LogIndex },
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type DResult<T> = Result<T, DecodeError>;

// ---------------------------------------------------------------- encoding

pub(crate) fn put_u8(buf: &mut Vec<u8>, v: u8) {
    buf.push(v);
}
pub(crate) fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}
pub(crate) fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

/// Encodes contiguous `entries` (the caller checked contiguity).
pub(crate) fn encode_entries(buf: &mut Vec<u8>, group: GroupId, entries: &[Entry]) {
    let Some(first) = entries.first() else { return };
    put_u8(buf, OP_ENTRIES);
    put_u64(buf, group.0);
    put_u64(buf, first.index.0);
    put_u32(buf, entries.len() as u32);
    for e in entries {
        put_u64(buf, e.term.0);
        encode_payload(buf, &e.payload);
    }
}

fn encode_payload(buf: &mut Vec<u8>, payload: &Payload) {
    match payload {
        Payload::Empty => put_u8(buf, 0),
        Payload::Command(data) => {
            put_u8(buf, 1);
            put_u32(buf, data.len() as u32);
            buf.extend_from_slice(data);
        }
        Payload::ConfChange(cc) => {
            put_u8(buf, 2);
            put_u8(
                buf,
                match cc.transition {
                    ConfChangeTransition::Auto => 0,
                    ConfChangeTransition::JointImplicit => 1,
                    ConfChangeTransition::JointExplicit => 2,
                },
            );
            put_u32(buf, cc.changes.len() as u32);
            for c in &cc.changes {
                put_u8(
                    buf,
                    match c.kind {
                        ConfChangeKind::AddVoter => 0,
                        ConfChangeKind::AddLearner => 1,
                        ConfChangeKind::Remove => 2,
                    },
                );
                put_u64(buf, c.node.0);
            }
        }
    }
}

pub(crate) fn encode_hard_state(buf: &mut Vec<u8>, group: GroupId, hs: &HardState) {
    put_u8(buf, OP_HARD_STATE);
    put_u64(buf, group.0);
    put_u64(buf, hs.term.0);
    put_u8(
        buf,
        u8::from(hs.vote.is_some()) | (u8::from(hs.rejoining) << 1),
    );
    put_u64(buf, hs.vote.map_or(0, |n| n.0));
    put_u64(buf, hs.commit.0);
}

pub(crate) fn encode_install(buf: &mut Vec<u8>, group: GroupId, meta: &SnapshotMeta) {
    put_u8(buf, OP_INSTALL);
    put_u64(buf, group.0);
    encode_snapshot_meta(buf, meta);
}

pub(crate) fn encode_compacted(buf: &mut Vec<u8>, group: GroupId, meta: &SnapshotMeta) {
    put_u8(buf, OP_COMPACTED);
    put_u64(buf, group.0);
    encode_snapshot_meta(buf, meta);
}

pub(crate) fn encode_log_end(buf: &mut Vec<u8>, group: GroupId, last: LogIndex) {
    put_u8(buf, OP_LOG_END);
    put_u64(buf, group.0);
    put_u64(buf, last.0);
}

pub(crate) fn encode_snapshot_meta(buf: &mut Vec<u8>, meta: &SnapshotMeta) {
    put_u64(buf, meta.index.0);
    put_u64(buf, meta.term.0);
    let cs = &meta.conf_state;
    for list in [
        &cs.voters,
        &cs.voters_outgoing,
        &cs.learners,
        &cs.learners_next,
    ] {
        put_u32(buf, list.len() as u32);
        for n in list {
            put_u64(buf, n.0);
        }
    }
    put_u8(buf, cs.auto_leave as u8);
}

// ---------------------------------------------------------------- decoding

/// A cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// When the bytes are a shared buffer, commands are decoded as slices
    /// of it instead of copies.
    shared: Option<&'a Bytes>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            shared: None,
        }
    }

    /// A reader whose decoded commands share `buf`'s memory (no copy, no
    /// allocation per command); they keep all of `buf` alive.
    pub(crate) fn shared(buf: &'a Bytes) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            shared: Some(buf),
        }
    }

    /// The next `n` bytes as an owned buffer: a slice of the shared buffer,
    /// or a copy.
    fn owned_bytes(&mut self, n: usize, what: &str) -> DResult<Bytes> {
        let start = self.pos;
        let b = self.bytes(n, what)?;
        Ok(match self.shared {
            Some(shared) => shared.slice(start..start + n),
            None => Bytes::copy_from_slice(b),
        })
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &str) -> DResult<&'a [u8]> {
        if n > self.remaining() {
            return Err(DecodeError(format!(
                "{what}: needs {n} bytes at offset {} but only {} remain",
                self.pos,
                self.remaining()
            )));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &str) -> DResult<u8> {
        Ok(self.bytes(1, what)?[0])
    }

    pub(crate) fn u32(&mut self, what: &str) -> DResult<u32> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self, what: &str) -> DResult<u64> {
        let b = self.bytes(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A term, refused above [`Term::MAX_VALID`].
    fn term(&mut self, what: &str) -> DResult<Term> {
        let v = self.u64(what)?;
        if v > Term::MAX_VALID.0 {
            return Err(DecodeError(format!(
                "{what} {v} is larger than any term a node reaches"
            )));
        }
        Ok(Term(v))
    }

    /// A log index, refused above [`LogIndex::MAX_VALID`].
    fn index(&mut self, what: &str) -> DResult<LogIndex> {
        let v = self.u64(what)?;
        if v > LogIndex::MAX_VALID.0 {
            return Err(DecodeError(format!(
                "{what} {v} is larger than any log index a node reaches"
            )));
        }
        Ok(LogIndex(v))
    }

    /// A count of items of at least `min_size` bytes each, checked against
    /// the bytes that remain so that garbage never causes a huge allocation.
    fn count(&mut self, min_size: usize, what: &str) -> DResult<usize> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_size) > self.remaining() {
            return Err(DecodeError(format!(
                "{what}: count {n} cannot fit in the {} bytes that remain",
                self.remaining()
            )));
        }
        Ok(n)
    }
}

/// Decodes the next operation of a frame body.
pub(crate) fn decode_op(r: &mut Reader<'_>) -> DResult<Op> {
    let tag = r.u8("operation tag")?;
    let group = GroupId(r.u64("group id")?);
    match tag {
        OP_ENTRIES => {
            let first = r.index("first index")?.0;
            let n = r.count(9, "entry count")?;
            if first == 0 || first + n as u64 > LogIndex::MAX_VALID.0 {
                return Err(DecodeError(format!(
                    "entry indexes {first}+{n} out of range"
                )));
            }
            let mut entries = Vec::with_capacity(n);
            for i in 0..n as u64 {
                let term = r.term("entry term")?;
                let payload = decode_payload(r)?;
                entries.push(Entry {
                    term,
                    index: LogIndex(first + i),
                    payload,
                });
            }
            Ok(Op::Entries { group, entries })
        }
        OP_HARD_STATE => {
            let term = r.term("hard state term")?;
            let flags = r.u8("hard state flags")?;
            let vote = r.u64("vote")?;
            let commit = r.index("commit")?;
            if flags & !0b11 != 0 {
                return Err(DecodeError(format!(
                    "hard state flags {flags:#04x} have unknown bits set"
                )));
            }
            let vote = (flags & 1 != 0).then_some(NodeId(vote));
            Ok(Op::HardState {
                group,
                hard_state: HardState {
                    term,
                    vote,
                    commit,
                    rejoining: flags & 2 != 0,
                },
            })
        }
        OP_INSTALL => Ok(Op::Install {
            group,
            meta: decode_snapshot_meta(r)?,
        }),
        OP_COMPACTED => Ok(Op::Compacted {
            group,
            meta: decode_snapshot_meta(r)?,
        }),
        OP_LOG_END => Ok(Op::LogEnd {
            group,
            last: r.index("log end")?,
        }),
        t => Err(DecodeError(format!("unknown operation tag {t}"))),
    }
}

fn decode_payload(r: &mut Reader<'_>) -> DResult<Payload> {
    match r.u8("payload tag")? {
        0 => Ok(Payload::Empty),
        1 => {
            let n = r.u32("command length")? as usize;
            Ok(Payload::Command(r.owned_bytes(n, "command")?))
        }
        2 => {
            let transition = match r.u8("conf change transition")? {
                0 => ConfChangeTransition::Auto,
                1 => ConfChangeTransition::JointImplicit,
                2 => ConfChangeTransition::JointExplicit,
                t => return Err(DecodeError(format!("unknown conf change transition {t}"))),
            };
            let n = r.count(9, "conf change count")?;
            let mut changes = Vec::with_capacity(n);
            for _ in 0..n {
                let kind = match r.u8("conf change kind")? {
                    0 => ConfChangeKind::AddVoter,
                    1 => ConfChangeKind::AddLearner,
                    2 => ConfChangeKind::Remove,
                    k => return Err(DecodeError(format!("unknown conf change kind {k}"))),
                };
                changes.push(ConfChangeSingle {
                    kind,
                    node: NodeId(r.u64("conf change node")?),
                });
            }
            Ok(Payload::ConfChange(ConfChange {
                transition,
                changes,
            }))
        }
        t => Err(DecodeError(format!("unknown payload tag {t}"))),
    }
}

pub(crate) fn decode_snapshot_meta(r: &mut Reader<'_>) -> DResult<SnapshotMeta> {
    let index = r.index("snapshot index")?;
    let term = r.term("snapshot term")?;
    let mut lists: [Vec<NodeId>; 4] = Default::default();
    for list in lists.iter_mut() {
        let n = r.count(8, "membership list length")?;
        list.reserve(n);
        for _ in 0..n {
            list.push(NodeId(r.u64("member")?));
        }
    }
    let auto_leave = match r.u8("auto leave flag")? {
        0 => false,
        1 => true,
        x => {
            return Err(DecodeError(format!(
                "auto leave flag {x} is neither 0 nor 1"
            )));
        }
    };
    let [voters, voters_outgoing, learners, learners_next] = lists;
    Ok(SnapshotMeta {
        index,
        term,
        conf_state: ConfState {
            voters,
            voters_outgoing,
            learners,
            learners_next,
            auto_leave,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            index: LogIndex(7),
            term: Term(3),
            conf_state: ConfState {
                voters: vec![NodeId(1), NodeId(2)],
                voters_outgoing: vec![NodeId(3)],
                learners: vec![NodeId(4)],
                learners_next: vec![],
                auto_leave: true,
            },
        }
    }

    fn sample() -> (Vec<u8>, Vec<Op>) {
        let g = GroupId(9);
        let entries = vec![
            Entry {
                term: Term(2),
                index: LogIndex(5),
                payload: Payload::Empty,
            },
            Entry {
                term: Term(2),
                index: LogIndex(6),
                payload: Payload::Command(Bytes::from_static(b"hello")),
            },
            Entry {
                term: Term(3),
                index: LogIndex(7),
                payload: Payload::ConfChange(ConfChange {
                    transition: ConfChangeTransition::JointExplicit,
                    changes: vec![ConfChangeSingle {
                        kind: ConfChangeKind::AddLearner,
                        node: NodeId(4),
                    }],
                }),
            },
        ];
        let hs = HardState {
            term: Term(3),
            vote: Some(NodeId(2)),
            commit: LogIndex(6),
            rejoining: true,
        };
        let mut buf = Vec::new();
        encode_install(&mut buf, g, &meta());
        encode_entries(&mut buf, g, &entries);
        encode_hard_state(&mut buf, g, &hs);
        encode_compacted(&mut buf, g, &meta());
        encode_log_end(&mut buf, g, LogIndex(12));
        let ops = vec![
            Op::Install {
                group: g,
                meta: meta(),
            },
            Op::Entries { group: g, entries },
            Op::HardState {
                group: g,
                hard_state: hs,
            },
            Op::Compacted {
                group: g,
                meta: meta(),
            },
            Op::LogEnd {
                group: g,
                last: LogIndex(12),
            },
        ];
        (buf, ops)
    }

    fn decode_all(buf: &[u8]) -> DResult<Vec<Op>> {
        let mut r = Reader::new(buf);
        let mut ops = Vec::new();
        while !r.is_empty() {
            ops.push(decode_op(&mut r)?);
        }
        Ok(ops)
    }

    #[test]
    fn every_operation_round_trips() {
        let (buf, ops) = sample();
        assert_eq!(decode_all(&buf).unwrap(), ops);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let (buf, _) = sample();
        for cut in 0..buf.len() {
            // A cut at an operation boundary decodes the ops before it.
            if let Ok(ops) = decode_all(&buf[..cut]) {
                assert!(ops.len() < 5);
            }
        }
    }

    /// Fuzzing regression (`fuzz/regressions/wal/snapshot-index-max`): a
    /// checksummed frame recording a snapshot at index 2^64-1 made recovery
    /// overflow computing the index after it. Terms and indexes a node can
    /// never reach are refused when decoded.
    #[test]
    fn terms_and_indexes_no_node_reaches_are_refused() {
        let huge = SnapshotMeta {
            index: LogIndex(u64::MAX),
            ..meta()
        };
        let mut buf = Vec::new();
        encode_compacted(&mut buf, GroupId(1), &huge);
        let err = decode_all(&buf).unwrap_err();
        assert!(err.0.contains("snapshot index"), "{err}");
        let mut buf = Vec::new();
        encode_log_end(&mut buf, GroupId(1), LogIndex(LogIndex::MAX_VALID.0 + 1));
        assert!(decode_all(&buf).is_err());
        let mut buf = Vec::new();
        let hs = HardState {
            term: Term(u64::MAX),
            ..HardState::default()
        };
        encode_hard_state(&mut buf, GroupId(1), &hs);
        assert!(decode_all(&buf).unwrap_err().0.contains("term"));
        let mut buf = Vec::new();
        encode_install(&mut buf, GroupId(1), &meta());
        assert!(decode_all(&buf).is_ok(), "ordinary values still decode");
    }

    #[test]
    fn garbage_never_panics_nor_allocates_wildly() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
        let (base, _) = sample();
        for _ in 0..20_000 {
            let mut buf = base.clone();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..buf.len());
                buf[i] = rng.random();
            }
            let _ = decode_all(&buf);
        }
    }
}
