//! A deterministic simulation of a kuberaft cluster around the real core and
//! the real `multi` layer: every node is a `MultiRaft` hosting all groups,
//! driven through a simulated network (`network`) and disk (`disk`), with
//! crashes, lost volumes, partitions, membership changes, leader transfers,
//! compaction, client writes and ReadIndex reads (`schedule`, `workload`).
//! The `checker` verifies Raft's safety properties after every step, and
//! after the faults heal the run must make progress within a bounded
//! simulated time (liveness).
//!
//! Time is simulated in milliseconds; one step is one millisecond. Every
//! random choice comes from one seeded generator, so a seed replays exactly.
//!
//! Shared by `tests/simulation.rs` and `benches/raft.rs` (via `#[path]`).

pub mod checker;
pub mod disk;
pub mod measure;
pub mod network;
pub mod node;
pub mod schedule;
pub mod workload;

use checker::{Checker, Stats, Violation};
use disk::{Disk, GroupDisk, GroupWrite, Write};
use kuberaft::multi::{Envelope, MultiRaft};
use kuberaft::raft::{
    Config, GroupId, LogIndex, MessageBody, NodeId, Payload, Raft, RecoveredState, Role,
};
use network::{Faults, Network, Packet, Sent};
use node::{App, Mirror, Node};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use schedule::Schedule;
use std::collections::{BTreeMap, BTreeSet};
use workload::PendingWrite;

/// Milliseconds between two ticks of a node (election timeouts are 10 to 20
/// ticks, as in the replica's defaults).
pub const TICK_MS: u64 = 10;
/// After the faults heal, every group must elect a leader and commit a
/// proposal within this much simulated time.
pub const LIVENESS_MS: u64 = 6_000;

/// The shape of a simulated cluster.
#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    /// The test that runs this configuration (for the replay command).
    pub name: &'static str,
    pub nodes: u64,
    pub groups: u64,
    /// How long faults are injected before everything heals.
    pub chaos_ms: u64,
    /// What happens to the cluster until then.
    pub chaos: Chaos,
}

/// The kind of history a run goes through before everything heals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chaos {
    /// A perfect network and no faults (benchmarks).
    Quiet,
    /// Random faults and operator work of every kind (see `schedule`).
    Random,
    /// Histories like Figure 8 of the Raft paper (see
    /// `Sim::figure8_chaos`): every leader is cut off with a minority or
    /// crashes shortly after its election, so leaders of different terms
    /// alternate over logs that each hold entries the others lack.
    Figure8,
}

/// What a finished run reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    pub stats: Stats,
    /// Simulated ms from healing to every group committing a proposal.
    pub recovery_ms: u64,
    pub crashes: u64,
    pub lost_volumes: u64,
    pub partitions: u64,
    pub conf_changes: u64,
    pub transfers: u64,
    pub compactions: u64,
}

pub struct Sim {
    pub cfg: SimConfig,
    pub seed: u64,
    pub rng: Xoshiro256PlusPlus,
    pub now: u64,
    pub nodes: BTreeMap<NodeId, Node>,
    pub net: Network,
    pub checker: Checker,
    pub schedule: Schedule,
    /// Groups whose post-heal liveness marker was acknowledged.
    pub markers_done: BTreeSet<GroupId>,
    pub outcome: Outcome,
    pub next_value: u64,
    pub next_read: u64,
    trace: bool,
}

impl Sim {
    pub fn new(cfg: SimConfig, seed: u64) -> Sim {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(
            seed ^ (cfg.nodes << 56) ^ (cfg.groups << 40) ^ 0x005e_ed0f_5a17,
        );
        let faulty = cfg.chaos != Chaos::Quiet;
        let faults = if faulty {
            Faults::random(&mut rng)
        } else {
            Faults::NONE
        };
        let mut base = Config::new(NodeId(1));
        if faulty {
            // Small windows, so that flow control and its recovery from
            // lost messages are exercised.
            base.max_inflight_msgs = rng.random_range(1..=8);
            base.max_inflight_bytes = rng.random_range(256..=4096);
            base.max_append_bytes = rng.random_range(64..=1024);
            base.pre_vote = rng.random_bool(0.8);
            base.check_quorum = rng.random_bool(0.8);
        }
        if cfg.chaos == Chaos::Figure8 {
            // A few entries per append and few appends in flight: a new
            // leader hands out an older tail before its own first entry, so
            // entries of earlier terms sit on a majority while entries of
            // its term do not yet, which is the moment the commit rule is
            // about.
            base.max_append_bytes = rng.random_range(1..=48);
            base.max_inflight_msgs = rng.random_range(1..=2);
        }
        let ids: Vec<NodeId> = (1..=cfg.nodes).map(NodeId).collect();
        let mut disks: BTreeMap<NodeId, Disk> =
            ids.iter().map(|&id| (id, Disk::default())).collect();
        for g in 0..cfg.groups {
            let group = GroupId(g);
            // Groups of 3, 5 or 7 voters, on different nodes: the other
            // nodes host the group with an empty disk until they are added.
            let sizes: Vec<u64> = [3, 5, 7].into_iter().filter(|&s| s <= cfg.nodes).collect();
            let size = if cfg.chaos == Chaos::Random {
                sizes[rng.random_range(0..sizes.len())]
            } else {
                cfg.nodes
            };
            let mut pool = ids.clone();
            let mut voters = Vec::new();
            while (voters.len() as u64) < size {
                voters.push(pool.swap_remove(rng.random_range(0..pool.len())));
            }
            let boot = RecoveredState::bootstrap(voters.clone());
            for &id in &ids {
                let disk = disks.get_mut(&id).expect("every node has a disk");
                let gd = if voters.contains(&id) {
                    GroupDisk {
                        hard_state: boot.hard_state,
                        snapshot: boot.snapshot.clone().map(|m| (m, Default::default())),
                        entries: Vec::new(),
                    }
                } else {
                    GroupDisk::default()
                };
                disk.groups.insert(group, gd);
            }
        }
        let mut nodes = BTreeMap::new();
        for &id in &ids {
            let mut config = base.clone();
            config.id = id;
            nodes.insert(
                id,
                Node {
                    id,
                    multi: None,
                    disk: disks.remove(&id).unwrap_or_default(),
                    apps: BTreeMap::new(),
                    next_tick: 0,
                    config,
                },
            );
        }
        let mut sim = Sim {
            cfg,
            seed,
            rng,
            now: 0,
            nodes,
            net: Network::new(faults),
            checker: Checker::default(),
            schedule: Schedule::default(),
            markers_done: BTreeSet::new(),
            outcome: Outcome::default(),
            next_value: 1,
            next_read: 1,
            trace: std::env::var_os("RAFT_SIM_TRACE").is_some(),
        };
        for id in ids {
            sim.start(id, false).expect("a bootstrapped node starts");
        }
        sim
    }

    pub fn trace(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[{:>6}ms] {}", self.now, what());
        }
    }

    /// Runs the whole scenario: faults, healing, liveness. A violation
    /// ends with the command that replays the run.
    pub fn run(&mut self) -> Result<Outcome, Violation> {
        self.run_to_end().map_err(|v| {
            format!(
                "{v}\nat {} ms; replay with: {}",
                self.now,
                replay_command(self.cfg.name, self.seed)
            )
        })
    }

    fn run_to_end(&mut self) -> Result<Outcome, Violation> {
        let heal_at = self.cfg.chaos_ms;
        while self.now < heal_at + LIVENESS_MS {
            self.now += 1;
            if self.now < heal_at {
                self.chaos();
            } else if self.now == heal_at {
                self.heal()?;
            }
            self.housekeeping()?;
            self.client_traffic();
            self.step()?;
            if self.now >= heal_at && self.markers_done.len() as u64 == self.cfg.groups {
                self.outcome.recovery_ms = self.now - heal_at;
                self.outcome.stats = self.checker.stats;
                return Ok(self.outcome);
            }
        }
        let missing: Vec<String> = (0..self.cfg.groups)
            .map(GroupId)
            .filter(|g| !self.markers_done.contains(g))
            .map(|g| format!("{g:?}: {}", self.describe_group(g)))
            .collect();
        Err(format!(
            "liveness: {} ms after every fault healed, these groups have not committed a proposal:\n  {}",
            LIVENESS_MS,
            missing.join("\n  ")
        ))
    }

    /// One millisecond: restarts, disk completions, arrivals, ticks, then
    /// every node handles its readies, and the checker looks at the result.
    pub fn step(&mut self) -> Result<(), Violation> {
        for id in self.schedule.restarts_due(self.now) {
            let (_, lost) = self.schedule.restarts.remove(&id).unwrap_or_default();
            self.start(id, lost)?;
        }
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for &id in &ids {
            let node = self.nodes.get_mut(&id).expect("known node");
            if !node.is_up() {
                continue;
            }
            for write in node.disk.complete(self.now) {
                if let Some(multi) = node.multi.as_mut() {
                    multi.on_persisted(&write.persisted);
                }
                for env in write.then_send {
                    send(node, &mut self.net, &mut self.rng, self.now, env);
                }
            }
        }
        for packet in self.net.arrivals(self.now) {
            self.deliver(packet);
        }
        for &id in &ids {
            let node = self.nodes.get_mut(&id).expect("known node");
            if let Some(multi) = node.multi.as_mut()
                && node.next_tick <= self.now
            {
                multi.tick();
                node.next_tick += TICK_MS;
            }
        }
        for &id in &ids {
            self.process(id)?;
        }
        Ok(())
    }

    fn deliver(&mut self, packet: Packet) {
        let Some(node) = self.nodes.get_mut(&packet.envelope.to) else {
            return;
        };
        let Some(multi) = node.multi.as_mut() else {
            return; // recipient down: lost
        };
        for (group, meta, kv) in packet.snapshots {
            if let Some(app) = node.apps.get_mut(&group) {
                app.incoming = Some((meta, kv));
            }
        }
        let undelivered = multi.step(packet.envelope);
        debug_assert!(undelivered.is_empty(), "every node hosts every group");
    }

    /// Starts (or restarts) a node from its disk; `lost`: its volume is gone.
    pub fn start(&mut self, id: NodeId, lost: bool) -> Result<(), Violation> {
        let seed: u64 = self.rng.random();
        let phase = self.rng.random_range(0..TICK_MS);
        let now = self.now;
        let node = self.nodes.get_mut(&id).expect("known node");
        node.config.seed = seed;
        if lost {
            // The replica finds an empty data directory in a running cluster:
            // it records that it is rejoining before anything else.
            for disk in node.disk.groups.values_mut() {
                let state = RecoveredState::rejoining();
                *disk = GroupDisk {
                    hard_state: state.hard_state,
                    ..GroupDisk::default()
                };
            }
        }
        let mut multi = MultiRaft::new(id);
        node.apps.clear();
        for (&group, disk) in &node.disk.groups {
            let state = if lost {
                RecoveredState::rejoining()
            } else {
                disk.recovered()
            };
            let mut config = node.config.clone();
            config.seed = seed ^ group.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let raft = Raft::new(config, state)
                .map_err(|e| format!("{id:?} {group:?} cannot restart from its disk: {e}"))?;
            let app = App {
                kv: disk
                    .snapshot
                    .as_ref()
                    .map(|(_, kv)| kv.clone())
                    .unwrap_or_default(),
                applied: disk
                    .snapshot
                    .as_ref()
                    .map_or(LogIndex::ZERO, |(m, _)| m.index),
                snapshot: disk.snapshot.clone(),
                mirror: Mirror::restore(disk.snapshot.as_ref().map(|(m, _)| m), &disk.entries),
                commit_seen: raft.commit(),
                ..App::default()
            };
            node.apps.insert(group, app);
            multi.add_group(group, raft);
        }
        node.multi = Some(multi);
        node.next_tick = now + phase;
        self.trace(|| {
            format!(
                "{id:?} starts{}",
                if lost { " with an empty disk" } else { "" }
            )
        });
        self.process(id)
    }

    /// The caller's loop of `MultiReady`: check, apply, send, persist.
    pub fn process(&mut self, id: NodeId) -> Result<(), Violation> {
        let now = self.now;
        let node = self.nodes.get_mut(&id).expect("known node");
        loop {
            let Some(multi) = node.multi.as_mut() else {
                return Ok(());
            };
            if !multi.has_ready() {
                return Ok(());
            }
            let mr = multi.ready();
            let persisted = mr.persisted();
            let mut writes = Vec::new();
            for (group, rd) in mr.groups {
                let app = node.apps.get_mut(&group).expect("an app per group");
                let checker = &mut self.checker;
                let mut installed = None;
                if let Some(meta) = rd.snapshot.clone() {
                    let Some((m, kv)) = app.incoming.take().filter(|(m, _)| *m == meta) else {
                        return Err(format!(
                            "harness: {id:?} {group:?} installs snapshot {:?} without its data",
                            meta.index
                        ));
                    };
                    app.kv = kv.clone();
                    app.applied = m.index;
                    app.snapshot = Some((m.clone(), kv.clone()));
                    app.mirror.install(&m);
                    app.writes.retain(|i, _| *i > m.index);
                    installed = Some((m, kv));
                }
                for (k, e) in rd.entries.iter().enumerate() {
                    let prev = if k == 0 {
                        app.mirror.term(e.index.prev())
                    } else {
                        Some(rd.entries[k - 1].term)
                    };
                    if let Some(prev) = prev {
                        checker.entry(group, id, e, prev)?;
                    }
                }
                app.mirror.append(&rd.entries);
                if let Some(hs) = rd.hard_state {
                    let mut i = app.commit_seen.next();
                    while i <= hs.commit {
                        checker.committed(group, id, hs.term, i, app.mirror.term(i))?;
                        i = i.next();
                    }
                    app.commit_seen = app.commit_seen.max(hs.commit);
                }
                for e in &rd.committed_entries {
                    if e.index != app.applied.next() {
                        return Err(format!(
                            "harness: {id:?} {group:?} applies {:?} right after {:?}",
                            e.index, app.applied
                        ));
                    }
                    checker.applied(group, id, e)?;
                    app.applied = e.index;
                    if let Payload::Command(data) = &e.payload {
                        let w = workload::Write::decode(data)
                            .ok_or_else(|| format!("harness: undecodable command {data:?}"))?;
                        workload::apply(&mut app.kv, w, e.index);
                    }
                    if let Some(pw) = app.writes.remove(&e.index)
                        && pw.term == e.term
                    {
                        checker.write_acked(group, pw.write.key, e.index);
                        if pw.marker {
                            self.markers_done.insert(group);
                        }
                    }
                }
                for rs in &rd.read_states {
                    if let Some(r) = app.reads.get_mut(&rs.context) {
                        r.index = Some(rs.index);
                    }
                }
                for d in &rd.dropped_reads {
                    if app.reads.remove(&d.context).is_some() {
                        checker.stats.reads_dropped += 1;
                    }
                }
                let applied = app.applied;
                let ready: Vec<_> = app
                    .reads
                    .iter()
                    .filter(|(_, r)| r.index.is_some_and(|i| i <= applied))
                    .map(|(&c, &r)| (c, r))
                    .collect();
                for (context, read) in ready {
                    app.reads.remove(&context);
                    let seen = workload::observed(&app.kv, read.key);
                    checker.read_done(group, id, read.key, read.floor, seen)?;
                }
                let raft = node
                    .multi
                    .as_ref()
                    .and_then(|m| m.group(group))
                    .expect("the group is hosted");
                if raft.role() == Role::Leader {
                    let term = raft.term();
                    checker.leader(group, term, id)?;
                    if app.led_checked != term {
                        app.led_checked = term;
                        let mirror = &app.mirror;
                        checker.leader_complete(group, id, term, mirror.snapshot, |i| {
                            mirror.term(i)
                        })?;
                    }
                }
                if rd.must_persist() {
                    writes.push(GroupWrite {
                        group,
                        snapshot: installed,
                        entries: rd.entries,
                        hard_state: rd.hard_state,
                    });
                }
            }
            for env in mr.messages {
                send(node, &mut self.net, &mut self.rng, now, env);
            }
            if !writes.is_empty() || !mr.persisted_messages.is_empty() {
                let latency = self.rng.random_range(0..=3);
                node.disk.submit(Write {
                    due: now + latency,
                    groups: writes,
                    persisted,
                    then_send: mr.persisted_messages,
                });
            }
        }
    }

    /// The live node that leads `group` in the highest term, if any.
    pub fn leader_of(&self, group: GroupId) -> Option<NodeId> {
        self.nodes
            .values()
            .filter_map(|n| {
                let raft = n.multi.as_ref()?.group(group)?;
                (raft.role() == Role::Leader).then_some((raft.term(), n.id))
            })
            .max()
            .map(|(_, id)| id)
    }

    pub fn raft(&self, node: NodeId, group: GroupId) -> Option<&Raft> {
        self.nodes.get(&node)?.multi.as_ref()?.group(group)
    }

    pub fn raft_mut(&mut self, node: NodeId, group: GroupId) -> Option<&mut Raft> {
        self.nodes.get_mut(&node)?.multi.as_mut()?.group_mut(group)
    }

    /// Proposes a client write on `node`; remembered until it is applied.
    pub fn propose_write(&mut self, node: NodeId, group: GroupId, key: u8, marker: bool) -> bool {
        let write = workload::Write {
            key,
            value: self.next_value,
        };
        self.next_value += 1;
        let Some(n) = self.nodes.get_mut(&node) else {
            return false;
        };
        let Some(raft) = n.multi.as_mut().and_then(|m| m.group_mut(group)) else {
            return false;
        };
        match raft.propose(write.encode()) {
            Ok((index, term)) => {
                if let Some(app) = n.apps.get_mut(&group) {
                    app.writes.insert(
                        index,
                        PendingWrite {
                            term,
                            write,
                            marker,
                        },
                    );
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Asks `node` for a linearizable read of `key`.
    pub fn read(&mut self, node: NodeId, group: GroupId, key: u8) {
        let context = self.next_read;
        self.next_read += 1;
        let floor = self.checker.floor(group, key);
        let Some(n) = self.nodes.get_mut(&node) else {
            return;
        };
        let (Some(raft), Some(app)) = (
            n.multi.as_mut().and_then(|m| m.group_mut(group)),
            n.apps.get_mut(&group),
        ) else {
            return;
        };
        app.reads.insert(
            context,
            workload::PendingRead {
                key,
                floor,
                index: None,
            },
        );
        raft.read_index(context);
    }

    /// One line per node about `group`, for liveness failures.
    pub fn describe_group(&self, group: GroupId) -> String {
        let mut out = Vec::new();
        for n in self.nodes.values() {
            match n.multi.as_ref().and_then(|m| m.group(group)) {
                None => out.push(format!("{:?} down", n.id)),
                Some(r) => {
                    let s = r.status();
                    out.push(format!(
                        "{:?} {:?} t{} leader={:?} commit={} applied={} last={} voters={:?} out={:?} learners={:?}{}",
                        n.id,
                        s.role,
                        s.term.0,
                        s.leader,
                        s.commit.0,
                        s.applied.0,
                        s.last_index.0,
                        s.conf_state.voters,
                        s.conf_state.voters_outgoing,
                        s.conf_state.learners,
                        if s.rejoining { " rejoining" } else { "" }
                    ));
                }
            }
        }
        out.join("; ")
    }
}

/// Hands an envelope to the network, with the data of any snapshot in it,
/// and tells the sender's cores what the transport would report.
fn send(
    node: &mut Node,
    net: &mut Network,
    rng: &mut Xoshiro256PlusPlus,
    now: u64,
    envelope: Envelope,
) {
    let mut snapshots = Vec::new();
    for gm in &envelope.messages {
        if let MessageBody::InstallSnapshot { meta } = &gm.message.body {
            let data = node
                .apps
                .get(&gm.group)
                .and_then(|a| a.snapshot.as_ref())
                .filter(|(m, _)| m == meta)
                .map(|(_, kv)| kv.clone())
                .unwrap_or_else(|| {
                    panic!(
                        "harness: {:?} sends snapshot {:?} of {:?} it does not hold",
                        node.id, meta.index, gm.group
                    )
                });
            snapshots.push((gm.group, meta.clone(), data));
        }
    }
    let to = envelope.to;
    let groups: Vec<GroupId> = snapshots.iter().map(|(g, _, _)| *g).collect();
    let sent = net.send(
        Packet {
            envelope,
            snapshots,
        },
        now,
        rng,
    );
    let Some(multi) = node.multi.as_mut() else {
        return;
    };
    if sent == Sent::Blocked {
        multi.report_unreachable(to);
    }
    for g in groups {
        if let Some(raft) = multi.group_mut(g) {
            raft.report_snapshot(to, sent == Sent::OnItsWay);
        }
    }
}

/// The one-line command that replays `seed` of the test `name`.
pub fn replay_command(name: &str, seed: u64) -> String {
    format!(
        "RAFT_SIM_SEED={seed} cargo test -p kuberaft-replica --release --test simulation {name} -- --nocapture"
    )
}
