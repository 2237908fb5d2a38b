//! What happens to the cluster and when: faults (crashes, lost volumes,
//! partitions), the operator's work (membership changes, re-admitting a
//! node that lost its volume, leaving explicit joint configurations, leader
//! transfers), compaction, and client traffic. Every choice is drawn from
//! the simulation's seeded generator.
//!
//! The operator acts only through the core's public API on the node it
//! believes leads a group, as the admin API does, and derives every step
//! from what it observes, so a lost proposal is simply retried.

use super::network::Faults;
use super::{Chaos, Sim, Violation};
use kuberaft::raft::{
    ConfChange, ConfChangeKind, ConfChangeSingle, ConfChangeTransition, GroupId, LogIndex, NodeId,
    Term,
};
use rand::Rng;
use rand::seq::IndexedRandom;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::{BTreeMap, BTreeSet};

/// Re-admitting a node that lost its volume, in one group: remove it, add
/// it back as a learner, then let it vote again once it applied that
/// addition (`Raft::readmit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejoin {
    Remove,
    /// The add-learner entry proposed after the loss, if any.
    AddLearner(Option<(LogIndex, Term)>),
    /// Our add-learner entry at this index is committed.
    Readmit(LogIndex),
}

#[derive(Debug, Default)]
pub struct Schedule {
    /// Down nodes: when they restart, and whether their volume is lost.
    pub restarts: BTreeMap<NodeId, (u64, bool)>,
    pub partition_until: Option<u64>,
    pub rejoins: BTreeMap<(NodeId, GroupId), Rejoin>,
    pub last_conf_op: u64,
    /// Figure 8 histories: the leaderships already seen (each gets one
    /// fate), and the leaders due to crash, with when.
    pub led: BTreeSet<(GroupId, Term)>,
    pub doomed: BTreeMap<NodeId, u64>,
}

impl Schedule {
    pub fn restarts_due(&self, now: u64) -> Vec<NodeId> {
        self.restarts
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(&id, _)| id)
            .collect()
    }
}

/// `n` distinct elements of `from`, chosen at random.
fn pick(rng: &mut Xoshiro256PlusPlus, from: &[NodeId], n: usize) -> Vec<NodeId> {
    let mut pool = from.to_vec();
    let mut out = Vec::new();
    while out.len() < n && !pool.is_empty() {
        out.push(pool.swap_remove(rng.random_range(0..pool.len())));
    }
    out
}

/// Per-millisecond probabilities of the fault phase.
const CRASH: f64 = 1.0 / 700.0;
const LOSE_VOLUME: f64 = 1.0 / 2500.0;
const PARTITION: f64 = 1.0 / 700.0;
const CONF_CHANGE: f64 = 1.0 / 80.0;
const TRANSFER: f64 = 1.0 / 300.0;
const COMPACT: f64 = 1.0 / 25.0;
const WRITE: f64 = 1.0 / 4.0;
const READ: f64 = 1.0 / 8.0;

impl Sim {
    fn up_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.is_up())
            .map(|n| n.id)
            .collect()
    }

    fn random_group(&mut self) -> GroupId {
        GroupId(self.rng.random_range(0..self.cfg.groups))
    }

    /// One millisecond of the fault phase.
    pub fn chaos(&mut self) {
        match self.cfg.chaos {
            Chaos::Quiet => return,
            Chaos::Figure8 => return self.figure8_chaos(),
            Chaos::Random => {}
        }
        if self.rng.random_bool(CRASH) {
            let up = self.up_nodes();
            if let Some(&x) = up.choose(&mut self.rng) {
                let back = self.now + self.rng.random_range(20..500);
                self.crash(x, back, false);
            }
        }
        if self.rng.random_bool(LOSE_VOLUME)
            && self.schedule.rejoins.is_empty()
            && !self.schedule.restarts.values().any(|(_, lost)| *lost)
            && self.now > self.schedule.last_conf_op + 500
        {
            let up = self.up_nodes();
            if let Some(&x) = up.choose(&mut self.rng)
                && self.may_lose_volume(x)
            {
                let back = self.now + self.rng.random_range(20..300);
                self.crash(x, back, true);
                for g in 0..self.cfg.groups {
                    self.schedule
                        .rejoins
                        .insert((x, GroupId(g)), Rejoin::Remove);
                }
                self.outcome.lost_volumes += 1;
            }
        }
        match self.schedule.partition_until {
            Some(until) if until <= self.now => {
                self.net.heal();
                self.schedule.partition_until = None;
                self.trace(|| "partition healed".into());
            }
            None if self.rng.random_bool(PARTITION) => self.partition(),
            _ => {}
        }
        if self.schedule.rejoins.is_empty() && self.rng.random_bool(CONF_CHANGE) {
            self.random_conf_change();
        }
        if self.rng.random_bool(TRANSFER) {
            let g = self.random_group();
            if let Some(l) = self.leader_of(g) {
                let voters = self.raft(l, g).map(|r| r.conf_state().voters.clone());
                if let Some(&to) = voters.unwrap_or_default().choose(&mut self.rng)
                    && let Some(raft) = self.raft_mut(l, g)
                    && raft.transfer_leader(to).is_ok()
                {
                    self.outcome.transfers += 1;
                    self.trace(|| format!("{g:?}: transfer {l:?} -> {to:?}"));
                }
            }
        }
    }

    fn crash(&mut self, x: NodeId, back: u64, lost: bool) {
        if let Some(node) = self.nodes.get_mut(&x) {
            node.crash();
        }
        self.schedule.restarts.insert(x, (back, lost));
        self.outcome.crashes += 1;
        self.trace(|| {
            format!(
                "{x:?} crashes{}",
                if lost { " and loses its volume" } else { "" }
            )
        });
    }

    /// Losing `x`'s volume must leave every group a quorum of voters with
    /// their vote history (otherwise no Raft can recover without an
    /// operator forcing a new membership, which is out of scope).
    fn may_lose_volume(&self, x: NodeId) -> bool {
        (0..self.cfg.groups).map(GroupId).all(|g| {
            let Some(conf) = self
                .leader_of(g)
                .and_then(|l| self.raft(l, g))
                .map(|r| r.conf_state().clone())
            else {
                return false;
            };
            !conf.is_joint() && (!conf.voters.contains(&x) || conf.voters.len() >= 3)
        })
    }

    fn partition(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let kind = self.rng.random_range(0..3);
        match kind {
            // A symmetric split into a minority and a majority.
            0 => {
                let size = self.rng.random_range(1..=(ids.len() / 2).max(1));
                let minority = pick(&mut self.rng, &ids, size);
                let rest: Vec<NodeId> = ids
                    .iter()
                    .filter(|id| !minority.contains(id))
                    .copied()
                    .collect();
                self.net.split(&minority, &rest);
                self.trace(|| format!("partition {minority:?} | {rest:?}"));
            }
            // Asymmetric: one node hears nobody, or nobody hears it.
            1 => {
                let x = ids[self.rng.random_range(0..ids.len())];
                let outgoing = self.rng.random_bool(0.5);
                for &y in &ids {
                    if y != x {
                        self.net
                            .blocked
                            .insert(if outgoing { (x, y) } else { (y, x) });
                    }
                }
                self.trace(|| {
                    format!(
                        "{x:?} {}",
                        if outgoing {
                            "cannot send"
                        } else {
                            "cannot receive"
                        }
                    )
                });
            }
            // Isolate the leader of a group.
            _ => {
                let g = self.random_group();
                let Some(l) = self.leader_of(g) else { return };
                let rest: Vec<NodeId> = ids.iter().filter(|&&id| id != l).copied().collect();
                self.net.split(&[l], &rest);
                self.trace(|| format!("isolate {l:?}, leader of {g:?}"));
            }
        }
        let until = self.now + self.rng.random_range(50..800);
        self.schedule.partition_until = Some(until);
        self.outcome.partitions += 1;
    }

    fn random_conf_change(&mut self) {
        let g = self.random_group();
        let Some(l) = self.leader_of(g) else { return };
        let Some(conf) = self.raft(l, g).map(|r| r.conf_state().clone()) else {
            return;
        };
        if conf.is_joint() {
            return;
        }
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let members = conf.members();
        let outsiders: Vec<NodeId> = ids
            .iter()
            .filter(|id| !members.contains(id))
            .copied()
            .collect();
        let non_voters: Vec<NodeId> = ids
            .iter()
            .filter(|id| !conf.voters.contains(id))
            .copied()
            .collect();
        let min_voters = if self.cfg.nodes <= 3 { 2 } else { 3 };
        let can_shrink = conf.voters.len() > min_voters;
        use ConfChangeKind::*;
        let one = |kind, node| ConfChangeSingle { kind, node };
        let rng = &mut self.rng;
        let mut transition = ConfChangeTransition::Auto;
        let changes: Vec<ConfChangeSingle> = match rng.random_range(0..7) {
            0 => outsiders.choose(rng).map(|&n| vec![one(AddLearner, n)]),
            1 => conf.learners.choose(rng).map(|&n| vec![one(AddVoter, n)]),
            2 if can_shrink => {
                // Often the leader itself.
                let n = if rng.random_bool(0.3) && conf.voters.contains(&l) {
                    Some(l)
                } else {
                    conf.voters.choose(rng).copied()
                };
                n.map(|n| vec![one(Remove, n)])
            }
            3 => conf.learners.choose(rng).map(|&n| vec![one(Remove, n)]),
            4 => {
                // Replace a voter (maybe the leader): joint consensus.
                transition = *[
                    ConfChangeTransition::Auto,
                    ConfChangeTransition::JointImplicit,
                    ConfChangeTransition::JointExplicit,
                ]
                .choose(rng)
                .unwrap_or(&ConfChangeTransition::Auto);
                match (conf.voters.choose(rng), non_voters.choose(rng)) {
                    (Some(&out), Some(&inn)) => Some(vec![one(Remove, out), one(AddVoter, inn)]),
                    _ => None,
                }
            }
            5 if can_shrink => conf.voters.choose(rng).map(|&n| vec![one(AddLearner, n)]),
            6 if non_voters.len() >= 2 => {
                transition = ConfChangeTransition::JointImplicit;
                Some(
                    pick(rng, &non_voters, 2)
                        .into_iter()
                        .map(|n| one(AddVoter, n))
                        .collect(),
                )
            }
            _ => None,
        }
        .unwrap_or_default();
        if changes.is_empty() {
            return;
        }
        let cc = ConfChange {
            transition,
            changes,
        };
        let text = format!("{cc:?}");
        if let Some(raft) = self.raft_mut(l, g)
            && raft.propose_conf_change(cc).is_ok()
        {
            self.outcome.conf_changes += 1;
            self.schedule.last_conf_op = self.now;
            self.trace(|| format!("{g:?}: {l:?} proposes {text}"));
        }
    }

    /// One millisecond of a Figure 8 history (the Raft paper, section
    /// 5.4.2): leaders of successive terms each get entries onto only part
    /// of the cluster, so that a later leader finds entries of an earlier
    /// term on a majority while its own are not there yet. Counting those
    /// replicas would commit an entry that a leader of an intermediate term,
    /// elected next, overwrites; the checker sees that as a committed entry
    /// lost (or a leader without it). Random seeds rarely line this up.
    ///
    /// Every leader, as soon as it is seen, gets one fate: with even odds
    /// it is cut off together with a minority (its entries reach fewer
    /// than a quorum), or it keeps its links (it hands out its log, one
    /// small append at a time); either way it crashes 0 to 20 ms later,
    /// its links are restored, and it restarts 20 to 300 ms after that,
    /// its log intact, to compete with the leaders elected meanwhile.
    /// Membership stays fixed; client traffic and compaction go on.
    pub fn figure8_chaos(&mut self) {
        let due: Vec<NodeId> = self
            .schedule
            .doomed
            .iter()
            .filter(|(_, at)| **at <= self.now)
            .map(|(&id, _)| id)
            .collect();
        for id in due {
            self.schedule.doomed.remove(&id);
            self.net.heal();
            if self.nodes.get(&id).is_some_and(|n| n.is_up()) {
                let back = self.now + self.rng.random_range(20..300);
                self.crash(id, back, false);
            }
        }
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let quorum = ids.len() / 2 + 1;
        for g in (0..self.cfg.groups).map(GroupId) {
            let Some(l) = self.leader_of(g) else { continue };
            let Some(term) = self.raft(l, g).map(|r| r.term()) else {
                continue;
            };
            if !self.schedule.led.insert((g, term)) || self.schedule.doomed.contains_key(&l) {
                continue;
            }
            if self.rng.random_bool(0.5) {
                let others: Vec<NodeId> = ids.iter().filter(|&&id| id != l).copied().collect();
                let size = self.rng.random_range(0..=quorum - 2);
                let mut side = pick(&mut self.rng, &others, size);
                side.push(l);
                let rest: Vec<NodeId> = ids
                    .iter()
                    .filter(|id| !side.contains(id))
                    .copied()
                    .collect();
                // Appends already on their way to the majority are lost too.
                self.net.split(&side, &rest);
                self.outcome.partitions += 1;
                self.trace(|| format!("{g:?}: leader {l:?} of {term:?} cut off with {side:?}"));
            }
            let at = self.now + self.rng.random_range(0..=20);
            self.schedule.doomed.insert(l, at);
        }
    }

    /// Everything the faults leave behind heals: nodes restart, links
    /// reconnect, the network stops losing messages.
    pub fn heal(&mut self) -> Result<(), Violation> {
        self.net.heal();
        self.net.faults = Faults {
            max_delay: self.net.faults.max_delay.min(5),
            ..Faults::NONE
        };
        self.schedule.partition_until = None;
        self.schedule.doomed.clear();
        for (id, (_, lost)) in std::mem::take(&mut self.schedule.restarts) {
            self.start(id, lost)?;
        }
        self.trace(|| "every fault healed".into());
        Ok(())
    }

    /// The operator's and the storage's background work, in every phase.
    pub fn housekeeping(&mut self) -> Result<(), Violation> {
        if self.now.is_multiple_of(5) {
            self.rejoin_steps();
            for g in (0..self.cfg.groups).map(GroupId) {
                if let Some(l) = self.leader_of(g)
                    && let Some(raft) = self.raft_mut(l, g)
                    && raft.conf_state().is_joint()
                    && !raft.conf_state().auto_leave
                {
                    let _ = raft.propose_conf_change(ConfChange::leave_joint());
                }
            }
        }
        if self.cfg.chaos != Chaos::Quiet && self.rng.random_bool(COMPACT) {
            let up = self.up_nodes();
            if let Some(&x) = up.choose(&mut self.rng) {
                let g = self.random_group();
                self.compact(x, g);
            }
        }
        if self.now >= self.cfg.chaos_ms && self.now.is_multiple_of(25) {
            for g in (0..self.cfg.groups).map(GroupId) {
                if !self.markers_done.contains(&g)
                    && let Some(l) = self.leader_of(g)
                {
                    self.propose_write(l, g, 0, true);
                }
            }
        }
        Ok(())
    }

    /// Takes a snapshot of `x`'s applied state of `g` (durable at once, as
    /// the replica writes it before compacting) and compacts the log.
    pub fn compact(&mut self, x: NodeId, g: GroupId) {
        let Some(node) = self.nodes.get_mut(&x) else {
            return;
        };
        let (Some(raft), Some(app)) = (
            node.multi.as_mut().and_then(|m| m.group_mut(g)),
            node.apps.get_mut(&g),
        ) else {
            return;
        };
        let meta = raft.applied_snapshot_meta();
        let current = raft.snapshot_meta().map_or(LogIndex::ZERO, |s| s.index);
        if meta.index.0 < current.0 + 3 || app.applied != meta.index {
            return;
        }
        let kv = app.kv.clone();
        if let Some(disk) = node.disk.groups.get_mut(&g) {
            disk.compact(meta.clone(), kv.clone());
        }
        raft.compact(meta.clone());
        app.mirror.compact(&meta);
        app.snapshot = Some((meta, kv));
        self.outcome.compactions += 1;
    }

    fn rejoin_steps(&mut self) {
        let tasks: Vec<((NodeId, GroupId), Rejoin)> = self
            .schedule
            .rejoins
            .iter()
            .map(|(&k, &v)| (k, v))
            .collect();
        for ((x, g), state) in tasks {
            let leader = self.leader_of(g);
            let conf = leader
                .and_then(|l| self.raft(l, g))
                .map(|r| r.conf_state().clone());
            let mut next = state;
            match state {
                Rejoin::Remove => {
                    let (Some(l), Some(conf)) = (leader, conf) else {
                        continue;
                    };
                    if !conf.members().contains(&x) {
                        next = Rejoin::AddLearner(None);
                    } else if !conf.is_joint()
                        && let Some(raft) = self.raft_mut(l, g)
                    {
                        let _ =
                            raft.propose_conf_change(ConfChange::single(ConfChangeKind::Remove, x));
                    }
                }
                Rejoin::AddLearner(proposal) => {
                    if let Some((index, term)) = proposal {
                        match self.checker.applied_term(g, index) {
                            Some(t) if t == term => next = Rejoin::Readmit(index),
                            Some(_) => next = Rejoin::AddLearner(None),
                            None => {}
                        }
                    }
                    if next == Rejoin::AddLearner(None) {
                        let (Some(l), Some(conf)) = (leader, conf) else {
                            continue;
                        };
                        if conf.members().contains(&x) {
                            next = Rejoin::Remove;
                        } else if !conf.is_joint()
                            && let Some(raft) = self.raft_mut(l, g)
                            && let Ok(p) = raft.propose_conf_change(ConfChange::single(
                                ConfChangeKind::AddLearner,
                                x,
                            ))
                        {
                            next = Rejoin::AddLearner(Some(p));
                        }
                    }
                }
                Rejoin::Readmit(index) => {
                    if let Some(raft) = self.raft_mut(x, g)
                        && (!raft.rejoining() || (raft.applied() >= index && raft.readmit()))
                    {
                        self.schedule.rejoins.remove(&(x, g));
                        self.schedule.last_conf_op = self.now;
                        self.trace(|| format!("{g:?}: {x:?} re-admitted"));
                        continue;
                    }
                }
            }
            if next != state {
                self.trace(|| format!("{g:?}: rejoin of {x:?}: {next:?}"));
                self.schedule.rejoins.insert((x, g), next);
            }
        }
    }

    /// Client writes (mostly to the node that believes it leads) and reads
    /// (anywhere; followers forward them).
    pub fn client_traffic(&mut self) {
        if self.rng.random_bool(WRITE) {
            let g = self.random_group();
            let key = self.rng.random_range(0..super::workload::KEYS);
            let up = self.up_nodes();
            let target = match self.leader_of(g) {
                Some(l) if self.rng.random_bool(0.9) => Some(l),
                _ => up.choose(&mut self.rng).copied(),
            };
            if let Some(n) = target {
                self.propose_write(n, g, key, false);
            }
        }
        if self.rng.random_bool(READ) {
            let g = self.random_group();
            let key = self.rng.random_range(0..super::workload::KEYS);
            let up = self.up_nodes();
            if let Some(&n) = up.choose(&mut self.rng) {
                self.read(n, g, key);
            }
        }
    }
}
