//! One group's log as the core sees it: the snapshot it starts after, every
//! entry since, and four cursors.
//!
//! ```text
//!  snapshot.index   applied      committed     persisted    last
//!        |-----------|-------------|-------------|-----------|
//!        entries in memory, from snapshot.index + 1 to last
//! ```
//! - `persisted`: the prefix that is durable locally (only this prefix is
//!   applied, and a leader counts only this prefix for itself);
//! - `unstable_from`: the first entry not yet handed out for persisting;
//! - `committed`, `applied` (handed out for application).
//!
//! The whole log since the last snapshot stays in memory; compaction after a
//! snapshot bounds it. Storage holds the durable copy and is only read back
//! on restart, so the core never waits for a disk read.

use super::types::{Entry, LogIndex, SnapshotMeta, Term};
use std::collections::VecDeque;

#[derive(Clone, Debug)]
pub struct RaftLog {
    snapshot: SnapshotMeta,
    entries: VecDeque<Entry>,
    pub committed: LogIndex,
    pub applied: LogIndex,
    pub persisted: LogIndex,
    unstable_from: LogIndex,
    /// A snapshot received from the leader and not yet handed out.
    pending_snapshot: Option<SnapshotMeta>,
}

impl RaftLog {
    /// A log restored from durable state: everything given is persisted.
    pub fn restore(snapshot: SnapshotMeta, entries: Vec<Entry>, committed: LogIndex) -> RaftLog {
        let last = entries.last().map_or(snapshot.index, |e| e.index);
        RaftLog {
            committed: committed.min(last).max(snapshot.index),
            applied: snapshot.index,
            persisted: last,
            unstable_from: last.next(),
            entries: entries.into(),
            snapshot,
            pending_snapshot: None,
        }
    }

    pub fn snapshot(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    pub fn first_index(&self) -> LogIndex {
        self.snapshot.index.next()
    }

    pub fn last_index(&self) -> LogIndex {
        self.entries.back().map_or(self.snapshot.index, |e| e.index)
    }

    pub fn last_term(&self) -> Term {
        self.entries.back().map_or(self.snapshot.term, |e| e.term)
    }

    /// The term of the entry at `index`, if it is known (not compacted, not
    /// beyond the end).
    pub fn term(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        self.entry(index).map(|e| e.term)
    }

    fn entry(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.snapshot.index {
            return None;
        }
        self.entries
            .get((index.0 - self.snapshot.index.0 - 1) as usize)
    }

    pub fn matches(&self, index: LogIndex, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// Whether a candidate whose log ends at (`index`, `term`) is at least as
    /// up to date as this log (section 5.4.1 of the paper).
    pub fn is_up_to_date(&self, index: LogIndex, term: Term) -> bool {
        term > self.last_term() || (term == self.last_term() && index >= self.last_index())
    }

    /// Entries from `from` on, at most `max_bytes` of them but at least one.
    /// `None` if `from` is compacted away.
    pub fn entries_from(&self, from: LogIndex, max_bytes: u64) -> Option<Vec<Entry>> {
        if from <= self.snapshot.index {
            return None;
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut index = from;
        while let Some(e) = self.entry(index) {
            bytes += e.size();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
            index = index.next();
        }
        Some(out)
    }

    /// Appends `entries` after (`prev_index`, `prev_term`) as a follower
    /// does: entries already present are skipped, a conflicting suffix is
    /// replaced. Returns the index the log now matches the leader's up to,
    /// or `None` if (`prev_index`, `prev_term`) does not match.
    pub fn append_after(
        &mut self,
        prev_index: LogIndex,
        prev_term: Term,
        entries: &[Entry],
    ) -> Option<LogIndex> {
        if !self.matches(prev_index, prev_term) {
            return None;
        }
        let last_new = prev_index.plus(entries.len() as u64);
        let conflict = entries.iter().position(|e| !self.matches(e.index, e.term));
        if let Some(pos) = conflict {
            self.append(entries[pos..].to_vec());
        }
        Some(last_new)
    }

    /// Appends entries that follow on from `entries[0].index - 1`,
    /// discarding anything stored from `entries[0].index` on.
    pub fn append(&mut self, entries: Vec<Entry>) {
        let Some(first) = entries.first() else {
            return;
        };
        let first = first.index;
        debug_assert!(first > self.committed, "never overwrite committed entries");
        let keep = (first.0 - self.snapshot.index.0 - 1) as usize;
        self.entries.truncate(keep);
        self.entries.extend(entries);
        self.persisted = self.persisted.min(first.prev());
        self.unstable_from = self.unstable_from.min(first);
    }

    /// The last index at or below `index` whose term is at most `term`: where
    /// a leader's log and this one may still match. Lets a leader skip a
    /// whole term of conflicting entries per round trip.
    pub fn find_conflict_by_term(&self, index: LogIndex, term: Term) -> (LogIndex, Term) {
        let mut index = index.min(self.last_index());
        loop {
            match self.term(index) {
                Some(t) if t > term => index = index.prev(),
                Some(t) => return (index, t),
                None => return (index, Term::ZERO),
            }
        }
    }

    pub fn commit_to(&mut self, index: LogIndex) {
        if index > self.committed {
            self.committed = index.min(self.last_index());
        }
    }

    /// Entries ready to be applied: committed and durable locally.
    pub fn has_next_committed(&self) -> bool {
        self.committed.min(self.persisted) > self.applied
    }

    pub fn take_next_committed(&mut self, max_bytes: u64) -> Vec<Entry> {
        let upto = self.committed.min(self.persisted);
        let mut out = Vec::new();
        let mut bytes = 0;
        while self.applied < upto {
            let Some(e) = self.entry(self.applied.next()) else {
                break;
            };
            bytes += e.size();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
            self.applied = self.applied.next();
        }
        out
    }

    /// Committed entries not handed out yet (without handing them out).
    pub fn unapplied_committed(&self) -> impl Iterator<Item = &Entry> {
        let (from, to) = (self.applied.next(), self.committed);
        self.entries
            .iter()
            .filter(move |e| e.index >= from && e.index <= to)
    }

    pub fn has_unstable(&self) -> bool {
        self.unstable_from <= self.last_index() || self.pending_snapshot.is_some()
    }

    /// Hands out the entries to persist next.
    pub fn take_unstable(&mut self) -> (Option<SnapshotMeta>, Vec<Entry>) {
        let snapshot = self.pending_snapshot.take();
        let mut out = Vec::new();
        let mut index = self.unstable_from;
        while let Some(e) = self.entry(index) {
            out.push(e.clone());
            index = index.next();
        }
        self.unstable_from = index;
        (snapshot, out)
    }

    /// A write ending at (`index`, `term`) is durable.
    pub fn persisted_to(&mut self, index: LogIndex, term: Term) {
        if index > self.persisted && index < self.unstable_from && self.matches(index, term) {
            self.persisted = index;
        }
    }

    /// A snapshot at `index` is durable.
    pub fn snapshot_persisted(&mut self, index: LogIndex) {
        if index == self.snapshot.index && index > self.persisted {
            self.persisted = index;
        }
    }

    /// Replaces the log with a snapshot received from the leader.
    pub fn install_snapshot(&mut self, meta: SnapshotMeta) {
        self.entries.clear();
        self.committed = meta.index;
        self.applied = meta.index;
        self.persisted = self.persisted.min(meta.index.prev());
        self.unstable_from = meta.index.next();
        self.snapshot = meta.clone();
        self.pending_snapshot = Some(meta);
    }

    /// Drops the entries covered by a snapshot the application has taken.
    pub fn compact(&mut self, meta: SnapshotMeta) {
        let drop = (meta.index.0 - self.snapshot.index.0) as usize;
        self.entries.drain(..drop.min(self.entries.len()));
        self.snapshot = meta;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::Payload;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            payload: Payload::Empty,
        }
    }

    fn log_of(terms: &[u64]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| entry(i as u64 + 1, t))
            .collect();
        RaftLog::restore(SnapshotMeta::default(), entries, LogIndex(0))
    }

    #[test]
    fn append_skips_duplicates_and_replaces_conflicts() {
        let mut log = log_of(&[1, 1, 2, 2]);
        // Duplicates of what is there change nothing.
        assert_eq!(
            log.append_after(LogIndex(1), Term(1), &[entry(2, 1), entry(3, 2)]),
            Some(LogIndex(3))
        );
        assert_eq!(log.last_index(), LogIndex(4));
        assert!(!log.has_unstable());
        // A conflict at index 3 replaces the suffix.
        assert_eq!(
            log.append_after(LogIndex(2), Term(1), &[entry(3, 3)]),
            Some(LogIndex(3))
        );
        assert_eq!(log.last_index(), LogIndex(3));
        assert_eq!(log.term(LogIndex(3)), Some(Term(3)));
        assert_eq!(log.persisted, LogIndex(2));
        let (_, unstable) = log.take_unstable();
        assert_eq!(unstable, vec![entry(3, 3)]);
        // A mismatching previous entry is refused.
        assert_eq!(log.append_after(LogIndex(3), Term(2), &[entry(4, 3)]), None);
    }

    #[test]
    fn conflict_search_skips_whole_terms() {
        let log = log_of(&[1, 1, 2, 2, 2, 5, 5]);
        assert_eq!(
            log.find_conflict_by_term(LogIndex(7), Term(3)),
            (LogIndex(5), Term(2))
        );
        assert_eq!(
            log.find_conflict_by_term(LogIndex(9), Term(9)),
            (LogIndex(7), Term(5))
        );
        assert_eq!(
            log.find_conflict_by_term(LogIndex(4), Term(1)),
            (LogIndex(2), Term(1))
        );
    }

    #[test]
    fn only_durable_committed_entries_are_applied() {
        let mut log = log_of(&[1]);
        log.append(vec![entry(2, 1), entry(3, 1)]);
        log.commit_to(LogIndex(3));
        assert_eq!(log.take_next_committed(u64::MAX), vec![entry(1, 1)]);
        let (_, unstable) = log.take_unstable();
        assert_eq!(unstable.len(), 2);
        log.persisted_to(LogIndex(3), Term(1));
        assert_eq!(
            log.take_next_committed(u64::MAX),
            vec![entry(2, 1), entry(3, 1)]
        );
    }

    #[test]
    fn compaction_keeps_the_suffix() {
        let mut log = log_of(&[1, 1, 2, 2]);
        log.commit_to(LogIndex(4));
        log.take_next_committed(u64::MAX);
        log.compact(SnapshotMeta {
            index: LogIndex(3),
            term: Term(2),
            ..SnapshotMeta::default()
        });
        assert_eq!(log.first_index(), LogIndex(4));
        assert_eq!(log.term(LogIndex(3)), Some(Term(2)));
        assert_eq!(log.term(LogIndex(2)), None);
        assert_eq!(log.entries_from(LogIndex(2), u64::MAX), None);
        assert_eq!(
            log.entries_from(LogIndex(4), u64::MAX),
            Some(vec![entry(4, 2)])
        );
    }
}
