//! The safety properties the simulation checks after every step, from the
//! outside: it sees only what nodes write, commit, apply and answer.
//!
//! - election safety: at most one leader per term per group;
//! - log matching: an (index, term) names one entry, whose predecessor has
//!   one term, so two logs that share an entry share the prefix before it;
//! - commit safety: every node that commits an index commits the same entry
//!   there (committed entries are never lost or replaced);
//! - leader completeness: a leader of term T holds every entry committed in
//!   a term before T;
//! - state machine safety: no two nodes apply different entries at an index;
//! - linearizable reads: a read returns the latest write acknowledged before
//!   it was issued, or a later one (never an older one), and never a value
//!   older than what a read that finished before it returned.
//!
//! A violation is returned as a message; the simulation panics with it and
//! the command that replays the seed.

use kuberaft::raft::{Entry, GroupId, LogIndex, NodeId, Payload, Term};
use std::collections::{BTreeMap, HashMap};

/// An entry as the checker remembers it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Known {
    payload: Payload,
    prev_term: Term,
}

/// A committed index: the entry's term and the earliest term in which some
/// node knew it committed.
#[derive(Clone, Copy, Debug)]
struct Committed {
    term: Term,
    since: Term,
}

pub struct Checker {
    /// Off only in benchmarks, which measure the core, not the checker
    /// (the statistics are kept either way).
    pub enabled: bool,
    leaders: HashMap<(GroupId, Term), NodeId>,
    entries: HashMap<(GroupId, LogIndex, Term), Known>,
    /// Per group, indexed by `LogIndex - 1`; `None` where only a snapshot
    /// covered the index (its entry was never seen).
    committed: BTreeMap<GroupId, Vec<Option<Committed>>>,
    applied: HashMap<(GroupId, LogIndex), (NodeId, Term, Payload)>,
    /// Per (group, key): the highest log index of a write acknowledged, or
    /// observed by a finished read, so far.
    floors: HashMap<(GroupId, u8), LogIndex>,
    pub stats: Stats,
}

/// What a run exercised (reported by the tests, checked to be non-trivial).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub leaders: u64,
    pub applied: u64,
    pub writes_acked: u64,
    pub reads_checked: u64,
    pub reads_dropped: u64,
}

pub type Violation = String;

impl Default for Checker {
    fn default() -> Checker {
        Checker {
            enabled: true,
            leaders: HashMap::new(),
            entries: HashMap::new(),
            committed: BTreeMap::new(),
            applied: HashMap::new(),
            floors: HashMap::new(),
            stats: Stats::default(),
        }
    }
}

impl Checker {
    pub fn leader(&mut self, group: GroupId, term: Term, node: NodeId) -> Result<(), Violation> {
        match self.leaders.insert((group, term), node) {
            Some(other) if other != node => Err(format!(
                "election safety: {group:?} has two leaders in {term:?}: {other:?} and {node:?}"
            )),
            Some(_) => Ok(()),
            None => {
                self.stats.leaders += 1;
                Ok(())
            }
        }
    }

    /// `node` wrote `entry`, which follows an entry of `prev_term`.
    pub fn entry(
        &mut self,
        group: GroupId,
        node: NodeId,
        entry: &Entry,
        prev_term: Term,
    ) -> Result<(), Violation> {
        if !self.enabled {
            return Ok(());
        }
        let known = Known {
            payload: entry.payload.clone(),
            prev_term,
        };
        match self.entries.get(&(group, entry.index, entry.term)) {
            Some(k) if *k != known => Err(format!(
                "log matching: {node:?} holds {group:?} {:?}@{:?} as {:?} after an entry of {:?}, \
                 another node as {:?} after an entry of {:?}",
                entry.index, entry.term, known.payload, prev_term, k.payload, k.prev_term
            )),
            Some(_) => Ok(()),
            None => {
                self.entries.insert((group, entry.index, entry.term), known);
                Ok(())
            }
        }
    }

    /// `node`, in `node_term`, knows `index` committed, holding an entry of
    /// `term` there (`None`: the index is inside a snapshot it installed).
    pub fn committed(
        &mut self,
        group: GroupId,
        node: NodeId,
        node_term: Term,
        index: LogIndex,
        term: Option<Term>,
    ) -> Result<(), Violation> {
        if !self.enabled {
            return Ok(());
        }
        let log = self.committed.entry(group).or_default();
        let pos = (index.0 - 1) as usize;
        if log.len() <= pos {
            log.resize(pos + 1, None);
        }
        let Some(term) = term else { return Ok(()) };
        match &mut log[pos] {
            Some(c) if c.term != term => Err(format!(
                "commit safety: {node:?} commits {group:?} index {} with an entry of {term:?}, \
                 but an entry of {:?} was committed there in {:?}",
                index.0, c.term, c.since
            )),
            Some(c) => {
                c.since = c.since.min(node_term);
                Ok(())
            }
            slot @ None => {
                *slot = Some(Committed {
                    term,
                    since: node_term,
                });
                Ok(())
            }
        }
    }

    /// A new leader of `term` whose log is `log` (`log(i)` is the term of its
    /// entry at `i`, `None` if it has none; indexes up to `snapshot` are in
    /// its snapshot) must hold every entry committed in an earlier term.
    pub fn leader_complete(
        &self,
        group: GroupId,
        node: NodeId,
        term: Term,
        snapshot: LogIndex,
        log: impl Fn(LogIndex) -> Option<Term>,
    ) -> Result<(), Violation> {
        let Some(committed) = self.committed.get(&group) else {
            return Ok(());
        };
        for (pos, c) in committed.iter().enumerate() {
            let index = LogIndex(pos as u64 + 1);
            let Some(c) = c else { continue };
            if index <= snapshot || c.since >= term {
                continue;
            }
            let has = log(index);
            if has != Some(c.term) {
                return Err(format!(
                    "leader completeness: {node:?} leads {group:?} in {term:?} with {:?} at index {} \
                     but an entry of {:?} was committed there in {:?}",
                    has, index.0, c.term, c.since
                ));
            }
        }
        Ok(())
    }

    pub fn applied(
        &mut self,
        group: GroupId,
        node: NodeId,
        entry: &Entry,
    ) -> Result<(), Violation> {
        self.stats.applied += 1;
        if !self.enabled {
            return Ok(());
        }
        match self.applied.get(&(group, entry.index)) {
            Some((other, term, payload)) if *term != entry.term || *payload != entry.payload => {
                Err(format!(
                    "state machine safety: {node:?} applies {group:?} index {} = {:?}@{:?}, \
                     {other:?} applied {:?}@{:?} there",
                    entry.index.0, entry.payload, entry.term, payload, term
                ))
            }
            Some(_) => Ok(()),
            None => {
                self.applied.insert(
                    (group, entry.index),
                    (node, entry.term, entry.payload.clone()),
                );
                Ok(())
            }
        }
    }

    /// The term of the entry applied at `index`, if anyone applied it.
    pub fn applied_term(&self, group: GroupId, index: LogIndex) -> Option<Term> {
        self.applied.get(&(group, index)).map(|(_, t, _)| *t)
    }

    /// The index a read of `key` issued now must observe at least.
    pub fn floor(&self, group: GroupId, key: u8) -> LogIndex {
        self.floors
            .get(&(group, key))
            .copied()
            .unwrap_or(LogIndex::ZERO)
    }

    /// A client learned that its write to `key` at `index` is done.
    pub fn write_acked(&mut self, group: GroupId, key: u8, index: LogIndex) {
        self.stats.writes_acked += 1;
        let floor = self.floors.entry((group, key)).or_default();
        *floor = (*floor).max(index);
    }

    /// A read of `key` issued with `floor` returned the write at `observed`.
    pub fn read_done(
        &mut self,
        group: GroupId,
        node: NodeId,
        key: u8,
        floor: LogIndex,
        observed: LogIndex,
    ) -> Result<(), Violation> {
        self.stats.reads_checked += 1;
        if observed < floor {
            return Err(format!(
                "linearizability: a read of key {key} in {group:?} on {node:?} returned the write at \
                 index {}, but the write at index {} was done (acknowledged or read) before the read began",
                observed.0, floor.0
            ));
        }
        let f = self.floors.entry((group, key)).or_default();
        *f = (*f).max(observed);
        Ok(())
    }
}
