//! What the log knows about each group without holding its entries: hard
//! state, latest snapshot, last index; and, per segment, which entries of
//! which group are still live there.
//!
//! The writer keeps one to validate writes, to restate every group's
//! metadata at the start of each segment, and to decide which old segments
//! can be deleted. Recovery rebuilds it by replaying the same operations, so
//! both make the same decisions.
//!
//! Invariant: a segment other than the newest is deleted only when, for
//! every group with entries in it, those entries are covered by the group's
//! snapshot (or were overwritten later). Metadata in it is restated at the
//! start of every later segment, so deleting it loses nothing.

use super::codec;
use crate::raft::{GroupId, HardState, LogIndex, SnapshotMeta};
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Debug, Default)]
pub(crate) struct GroupMeta {
    pub hard_state: HardState,
    pub snapshot: Option<SnapshotMeta>,
    /// The last index of the log (the snapshot's index if the log is empty).
    pub last: LogIndex,
}

impl GroupMeta {
    pub(crate) fn snapshot_index(&self) -> LogIndex {
        self.snapshot.as_ref().map_or(LogIndex::ZERO, |s| s.index)
    }
}

#[derive(Default, Debug)]
pub(crate) struct Tracker {
    pub groups: HashMap<GroupId, GroupMeta>,
    /// segment -> group -> highest index of the group's entries in that
    /// segment that may still be live.
    live: BTreeMap<u64, HashMap<GroupId, LogIndex>>,
}

/// Where a run of entries lands in a group's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// All entries are covered by the snapshot: nothing to store.
    Covered,
    /// Store the entries from `skip` on (the first `skip` are covered).
    Store { skip: usize },
}

/// Where entries `first..=last` go in a log whose snapshot ends at
/// `snap` and whose last index is `log_last`, or why they cannot.
pub(crate) fn place(
    snap: LogIndex,
    log_last: LogIndex,
    first: LogIndex,
    last: LogIndex,
) -> Result<Placement, String> {
    if last <= snap {
        return Ok(Placement::Covered);
    }
    let skip = snap.0.saturating_sub(first.0.saturating_sub(1)) as usize;
    let start = first.max(snap.next());
    if start > log_last.next() {
        return Err(format!(
            "entries start at {} but the log ends at {} (a gap)",
            start, log_last
        ));
    }
    Ok(Placement::Store { skip })
}

impl Tracker {
    pub(crate) fn group(&self, g: GroupId) -> Option<&GroupMeta> {
        self.groups.get(&g)
    }

    pub(crate) fn add_segment(&mut self, seq: u64) {
        self.live.entry(seq).or_default();
    }

    /// Entries `first..=last` of `g` were written to segment `seg`.
    pub(crate) fn on_entries(
        &mut self,
        seg: u64,
        g: GroupId,
        first: LogIndex,
        last: LogIndex,
    ) -> Result<Placement, String> {
        let meta = self.groups.entry(g).or_default();
        let placement = place(meta.snapshot_index(), meta.last, first, last)?;
        if let Placement::Store { skip } = placement {
            let start = first.plus(skip as u64);
            let truncates = start <= meta.last;
            meta.last = last;
            // Only a conflict (entries replacing stored ones) lowers what
            // older segments hold; a plain append, the common case during
            // replay, leaves them alone.
            if truncates {
                for groups in self.live.values_mut() {
                    if let Some(m) = groups.get_mut(&g) {
                        *m = (*m).min(start.prev());
                    }
                }
            }
            self.live.entry(seg).or_default().insert(g, last);
        }
        Ok(placement)
    }

    /// A snapshot from the leader replaced the log of `g`.
    pub(crate) fn on_install(&mut self, g: GroupId, meta: &SnapshotMeta) {
        let m = self.groups.entry(g).or_default();
        m.snapshot = Some(meta.clone());
        m.last = meta.index;
        for groups in self.live.values_mut() {
            if let Some(x) = groups.get_mut(&g) {
                *x = (*x).min(meta.index);
            }
        }
    }

    /// `g`'s entries up to `meta.index` are covered by a durable snapshot.
    /// Returns whether this moved the group's snapshot forward.
    pub(crate) fn on_compacted(&mut self, g: GroupId, meta: &SnapshotMeta) -> bool {
        let m = self.groups.entry(g).or_default();
        if meta.index <= m.snapshot_index() {
            return false;
        }
        m.snapshot = Some(meta.clone());
        m.last = m.last.max(meta.index);
        true
    }

    pub(crate) fn on_hard_state(&mut self, g: GroupId, hs: &HardState) {
        self.groups.entry(g).or_default().hard_state = *hs;
    }

    /// Encodes every group's snapshot marker, hard state and log end: the
    /// first operations of each segment, so that older segments can go.
    pub(crate) fn encode_checkpoint(&self, buf: &mut Vec<u8>) {
        let mut groups: Vec<_> = self.groups.iter().collect();
        groups.sort_by_key(|(g, _)| **g);
        for (g, m) in groups {
            if let Some(s) = &m.snapshot {
                codec::encode_compacted(buf, *g, s);
            }
            codec::encode_hard_state(buf, *g, &m.hard_state);
            if m.last > m.snapshot_index() {
                codec::encode_log_end(buf, *g, m.last);
            }
        }
    }

    /// A checkpoint says `g`'s log ended at `last`. Replayed from older
    /// segments, the log ends exactly there; if they were deleted, the
    /// entries up to `last` are gone and a snapshot recorded later must
    /// cover them (checked at the end of recovery).
    pub(crate) fn on_log_end(&mut self, g: GroupId, last: LogIndex) -> Result<(), String> {
        let m = self.groups.entry(g).or_default();
        if m.last > last {
            return Err(format!(
                "the segment's checkpoint says the log ends at {last}, but older segments hold                  entries up to {}",
                m.last
            ));
        }
        m.last = last;
        Ok(())
    }

    /// Segments known (on disk).
    pub(crate) fn segments(&self) -> usize {
        self.live.len()
    }

    /// A group with live entries in the oldest segment before `current`:
    /// what keeps that segment (and so every later one) on disk.
    pub(crate) fn oldest_pin(&self, current: u64) -> Option<GroupId> {
        let (&seq, groups) = self.live.first_key_value()?;
        if seq >= current {
            return None;
        }
        let mut pins: Vec<GroupId> = groups
            .iter()
            .filter(|(g, m)| {
                self.groups
                    .get(g)
                    .is_none_or(|meta| **m > meta.snapshot_index())
            })
            .map(|(g, _)| *g)
            .collect();
        pins.sort();
        pins.first().copied()
    }

    /// The oldest segments, before `current`, that hold nothing live any
    /// more, in order; they are forgotten here, the caller deletes them.
    pub(crate) fn take_deletable(&mut self, current: u64) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some((&seq, groups)) = self.live.first_key_value() {
            if seq >= current {
                break;
            }
            let covered = groups.iter().all(|(g, &m)| {
                self.groups
                    .get(g)
                    .is_some_and(|meta| m <= meta.snapshot_index())
            });
            if !covered {
                break;
            }
            self.live.pop_first();
            out.push(seq);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Term;

    fn snap(i: u64) -> SnapshotMeta {
        SnapshotMeta {
            index: LogIndex(i),
            term: Term(1),
            ..SnapshotMeta::default()
        }
    }

    #[test]
    fn placement_skips_covered_entries_and_rejects_gaps() {
        let (s, l) = (LogIndex(10), LogIndex(12));
        assert_eq!(
            place(s, l, LogIndex(5), LogIndex(9)),
            Ok(Placement::Covered)
        );
        assert_eq!(
            place(s, l, LogIndex(9), LogIndex(11)),
            Ok(Placement::Store { skip: 2 })
        );
        assert_eq!(
            place(s, l, LogIndex(13), LogIndex(13)),
            Ok(Placement::Store { skip: 0 })
        );
        assert_eq!(
            place(s, l, LogIndex(12), LogIndex(13)),
            Ok(Placement::Store { skip: 0 })
        );
        assert!(place(s, l, LogIndex(14), LogIndex(15)).is_err());
    }

    #[test]
    fn a_segment_goes_once_every_group_in_it_is_covered() {
        let (a, b) = (GroupId(1), GroupId(2));
        let mut t = Tracker::default();
        t.add_segment(1);
        t.on_entries(1, a, LogIndex(1), LogIndex(10)).unwrap();
        t.on_entries(1, b, LogIndex(1), LogIndex(5)).unwrap();
        t.add_segment(2);
        t.on_entries(2, a, LogIndex(11), LogIndex(20)).unwrap();
        assert!(t.take_deletable(2).is_empty());
        t.on_compacted(a, &snap(10));
        assert!(t.take_deletable(2).is_empty(), "b still lives in segment 1");
        // b's log is replaced by a snapshot at 3: its entries 4..5 are dead.
        assert_eq!(t.oldest_pin(2), Some(b));
        t.on_install(b, &snap(3));
        assert_eq!(t.take_deletable(2), vec![1]);
        assert_eq!(t.oldest_pin(2), None, "segment 2 is the current one");
        assert!(t.take_deletable(3).is_empty(), "a's 11..20 live in 2");
    }

    #[test]
    fn overwritten_entries_do_not_pin_old_segments() {
        let a = GroupId(1);
        let mut t = Tracker::default();
        t.add_segment(1);
        t.on_entries(1, a, LogIndex(1), LogIndex(10)).unwrap();
        t.add_segment(2);
        t.on_entries(2, a, LogIndex(4), LogIndex(6)).unwrap();
        t.on_compacted(a, &snap(3));
        assert_eq!(t.take_deletable(2), vec![1]);
    }
}
