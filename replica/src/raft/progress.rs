//! What a leader knows about each follower's log, and the flow control that
//! bounds what it has in flight to it.
//!
//! A follower is in one of three states:
//! - `Probe`: the leader does not know where the follower's log matches; it
//!   sends one append at a time and waits for the answer;
//! - `Replicate`: the logs match up to `matched`; appends are pipelined
//!   optimistically (`next` moves ahead of `matched`), bounded by the
//!   in-flight window in messages and in bytes;
//! - `Snapshot`: the entries the follower needs are compacted away; a
//!   snapshot is being sent and nothing else until it is acknowledged.

use super::types::LogIndex;
use std::collections::VecDeque;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProgressState {
    Probe,
    Replicate,
    Snapshot,
}

/// Appends sent to one follower and not yet acknowledged, as
/// (last index of the append, its bytes).
#[derive(Clone, Debug)]
pub struct Inflights {
    window: VecDeque<(LogIndex, u64)>,
    bytes: u64,
    max_count: usize,
    max_bytes: u64,
}

impl Inflights {
    pub fn new(max_count: usize, max_bytes: u64) -> Inflights {
        Inflights {
            window: VecDeque::new(),
            bytes: 0,
            max_count,
            max_bytes,
        }
    }

    pub fn add(&mut self, last: LogIndex, bytes: u64) {
        self.window.push_back((last, bytes));
        self.bytes += bytes;
    }

    /// Frees every append whose last index is at or below `index`.
    pub fn free_to(&mut self, index: LogIndex) {
        while let Some(&(last, bytes)) = self.window.front() {
            if last > index {
                break;
            }
            self.window.pop_front();
            self.bytes -= bytes;
        }
    }

    /// Frees the oldest append (its answer may have been lost).
    pub fn free_first(&mut self) {
        if let Some((_, bytes)) = self.window.pop_front() {
            self.bytes -= bytes;
        }
    }

    pub fn full(&self) -> bool {
        self.window.len() >= self.max_count || self.bytes >= self.max_bytes
    }

    pub fn count(&self) -> usize {
        self.window.len()
    }

    pub fn reset(&mut self) {
        self.window.clear();
        self.bytes = 0;
    }
}

#[derive(Clone, Debug)]
pub struct Progress {
    /// The follower's log matches the leader's up to here (durably).
    pub matched: LogIndex,
    /// The next index to send.
    pub next: LogIndex,
    pub state: ProgressState,
    /// In `Snapshot` state: the index of the snapshot being sent.
    pub pending_snapshot: LogIndex,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// In `Probe` state: an append is outstanding; wait for its answer.
    pub probe_sent: bool,
    pub inflights: Inflights,
    /// The highest ReadIndex round the follower has confirmed.
    pub read_round: u64,
    /// The highest commit index sent to the follower that it can use.
    pub sent_commit: LogIndex,
}

impl Progress {
    pub fn new(next: LogIndex, max_count: usize, max_bytes: u64) -> Progress {
        Progress {
            matched: LogIndex::ZERO,
            next,
            state: ProgressState::Probe,
            pending_snapshot: LogIndex::ZERO,
            recent_active: false,
            probe_sent: false,
            inflights: Inflights::new(max_count, max_bytes),
            read_round: 0,
            sent_commit: LogIndex::ZERO,
        }
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.probe_sent = false;
        self.pending_snapshot = LogIndex::ZERO;
        self.state = state;
        self.inflights.reset();
    }

    pub fn become_probe(&mut self) {
        if self.state == ProgressState::Snapshot {
            // The snapshot may have been installed: resume after it.
            let after_snapshot = self.pending_snapshot.next();
            self.reset_state(ProgressState::Probe);
            self.next = self.matched.next().max(after_snapshot);
        } else {
            self.reset_state(ProgressState::Probe);
            self.next = self.matched.next();
        }
    }

    pub fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next = self.matched.next();
    }

    pub fn become_snapshot(&mut self, index: LogIndex) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = index;
    }

    /// Records that the follower matches up to `index`. False if stale.
    pub fn maybe_update(&mut self, index: LogIndex) -> bool {
        let updated = index > self.matched;
        if updated {
            self.matched = index;
            self.probe_sent = false;
        }
        self.next = self.next.max(index.next());
        updated
    }

    /// The follower rejected an append after `rejected`; `hint` is the
    /// highest index that may still match. False if the rejection is stale.
    ///
    /// A probe rejected at or below `matched` means the follower no longer
    /// has entries it acknowledged: it lost its disk (a rejoining replica)
    /// or the answer is a duplicate of an old one. Either way the match
    /// point is forgotten and learnt again, or the leader would probe just
    /// after it forever. Lowering it never un-commits anything: the commit
    /// index only moves up.
    pub fn maybe_decrease_to(&mut self, rejected: LogIndex, hint: LogIndex) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.next = self.matched.next();
            return true;
        }
        if self.next.prev() != rejected {
            return false;
        }
        if rejected <= self.matched {
            self.matched = LogIndex::ZERO;
        }
        self.next = rejected.min(hint.next()).max(self.matched.next());
        self.probe_sent = false;
        true
    }

    /// Whether the leader must not send this follower more appends now.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot => true,
        }
    }

    /// An append ending at `last` (with `bytes` of entries) was sent.
    pub fn sent(&mut self, last: Option<LogIndex>, bytes: u64) {
        match self.state {
            ProgressState::Replicate => {
                if let Some(last) = last {
                    self.next = last.next();
                    self.inflights.add(last, bytes);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflight_window_is_bounded_by_count_and_bytes() {
        let mut w = Inflights::new(3, 100);
        w.add(LogIndex(1), 10);
        w.add(LogIndex(2), 10);
        assert!(!w.full());
        w.add(LogIndex(3), 10);
        assert!(w.full(), "three messages fill a window of three");
        w.free_to(LogIndex(2));
        assert_eq!(w.count(), 1);
        assert!(!w.full());
        w.add(LogIndex(9), 95);
        assert!(w.full(), "105 bytes fill a window of 100");
    }

    #[test]
    fn probe_waits_for_an_answer_and_backs_off_to_the_hint() {
        let mut p = Progress::new(LogIndex(11), 8, 1 << 20);
        assert!(!p.is_paused());
        p.sent(Some(LogIndex(12)), 10);
        assert!(p.is_paused(), "a probe is one message at a time");
        // Rejected at prev index 10, follower hints its log may match up to 4.
        assert!(p.maybe_decrease_to(LogIndex(10), LogIndex(4)));
        assert_eq!(p.next, LogIndex(5));
        assert!(!p.is_paused());
        // A stale rejection (for prev index 10 again) is ignored.
        assert!(!p.maybe_decrease_to(LogIndex(10), LogIndex(2)));
        assert_eq!(p.next, LogIndex(5));
    }

    #[test]
    fn a_follower_that_lost_what_it_acknowledged_is_probed_from_its_hint() {
        let mut p = Progress::new(LogIndex(1), 8, 1 << 20);
        p.maybe_update(LogIndex(9));
        p.become_probe();
        assert_eq!(p.next, LogIndex(10));
        p.sent(None, 0);
        // The probe after 9, which it acknowledged, is rejected: its log is
        // empty now. Backing off stops at nothing but its hint.
        assert!(p.maybe_decrease_to(LogIndex(9), LogIndex(0)));
        assert_eq!((p.matched, p.next), (LogIndex(0), LogIndex(1)));
    }

    #[test]
    fn replicate_pipelines_until_the_window_is_full() {
        let mut p = Progress::new(LogIndex(1), 2, 1 << 20);
        p.maybe_update(LogIndex(5));
        p.become_replicate();
        p.sent(Some(LogIndex(7)), 10);
        assert_eq!(p.next, LogIndex(8));
        assert!(!p.is_paused());
        p.sent(Some(LogIndex(9)), 10);
        assert!(p.is_paused());
        assert!(p.maybe_update(LogIndex(7)));
        p.inflights.free_to(LogIndex(7));
        assert!(!p.is_paused());
        // A rejection above the match point falls back to just after it.
        assert!(p.maybe_decrease_to(LogIndex(8), LogIndex(3)));
        assert_eq!(p.next, LogIndex(8));
    }
}
