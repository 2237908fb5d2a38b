//! The event loop: the one task that owns every group's Raft state and
//! state machine on this replica. Nothing here is shared or locked; other
//! tasks talk to it through channels (the actor model).
//!
//! One turn: take one input (a peer batch, client requests — all that are
//! waiting, so concurrent proposals aggregate into one append — a tick, a
//! completed fsync, a transport event), then drain the groups' output:
//! send messages, hand writes to the group-commit thread, apply committed
//! entries, answer clients.

use super::directory::Directory;
use super::health::{Check, Heartbeat, Readiness};
use super::request::{NodeError, Query, ReadResult, Reply, Request, Served};
use super::snapshots::{SnapshotDone, Snapshots};
use super::{GroupView, NodeConfig, NodeStatus};
use crate::kv::{self, Applied, KvStateMachine, MEMBERS_GROUP};
use crate::metrics::Metrics;
use crate::multi::{Envelope, GroupMessage, MultiRaft, MultiReady};
use crate::raft::{Entry, GroupId, LogIndex, MessageBody, NodeId, Raft, ReadContext, Role, Term};
use crate::storage::{GroupWrite, StorageError, Wal};
use crate::transport::{Inbound, Transport, TransportEvent};
use std::collections::{BTreeMap, HashMap};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};

/// Live log segments beyond which the group pinning the oldest one is
/// snapshotted (see `release_old_segments`).
const MAX_PINNED_SEGMENTS: u64 = 4;

/// A group-commit write that became durable (or failed): the readies it
/// covered and the messages that waited for it.
pub(super) struct Persisted {
    readies: Vec<(GroupId, u64)>,
    messages: Vec<Envelope>,
    result: Result<(), StorageError>,
    submitted: Instant,
    writes: usize,
}

/// A storage failure: the replica stops rather than acknowledge what may
/// not be durable.
#[derive(Debug)]
pub struct StorageFailed(pub String);

struct PendingWrite {
    term: Term,
    arrived: Instant,
    reply: Reply<(Served, kv::CommandResult)>,
}

struct PendingRead {
    group: GroupId,
    query: Query,
    arrived: Instant,
    linearizable: bool,
    reply: Reply<(Served, ReadResult)>,
}

pub(super) struct EventLoop {
    config: NodeConfig,
    multi: MultiRaft,
    machines: BTreeMap<GroupId, KvStateMachine>,
    directory: Directory,
    transport: Transport,
    wal: Wal,
    persisted_tx: mpsc::UnboundedSender<Persisted>,
    snapshots: Snapshots,
    metrics: Metrics,
    heartbeat: Heartbeat,
    readiness: watch::Sender<Readiness>,
    status: watch::Sender<NodeStatus>,

    writes: HashMap<(GroupId, LogIndex), PendingWrite>,
    /// Linearizable reads waiting for their ReadIndex, by context.
    reads_by_context: HashMap<ReadContext, PendingRead>,
    /// Reads whose ReadIndex is known, waiting for the state machine to
    /// apply it: per group, (index, read) in arrival order.
    reads_waiting_apply: BTreeMap<GroupId, Vec<(LogIndex, PendingRead)>>,
    next_context: ReadContext,
    /// Per group: the leader last seen, to count leader changes.
    leaders: BTreeMap<GroupId, Option<NodeId>>,
    /// Per group: the commit index seen at the previous tick (readiness).
    commit_at_last_tick: BTreeMap<GroupId, LogIndex>,
}

pub(super) struct Channels {
    pub requests: mpsc::Receiver<Request>,
    pub inbox: mpsc::Receiver<Inbound>,
    pub transport_events: mpsc::UnboundedReceiver<TransportEvent>,
    pub persisted: mpsc::UnboundedReceiver<Persisted>,
    pub snapshot_done: mpsc::UnboundedReceiver<SnapshotDone>,
    pub shutdown: oneshot::Receiver<()>,
}

impl EventLoop {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        config: NodeConfig,
        multi: MultiRaft,
        machines: BTreeMap<GroupId, KvStateMachine>,
        directory: Directory,
        transport: Transport,
        wal: Wal,
        persisted_tx: mpsc::UnboundedSender<Persisted>,
        snapshots: Snapshots,
        metrics: Metrics,
        heartbeat: Heartbeat,
        readiness: watch::Sender<Readiness>,
        status: watch::Sender<NodeStatus>,
    ) -> EventLoop {
        EventLoop {
            config,
            multi,
            machines,
            directory,
            transport,
            wal,
            persisted_tx,
            snapshots,
            metrics,
            heartbeat,
            readiness,
            status,
            writes: HashMap::new(),
            reads_by_context: HashMap::new(),
            reads_waiting_apply: BTreeMap::new(),
            next_context: 1,
            leaders: BTreeMap::new(),
            commit_at_last_tick: BTreeMap::new(),
        }
    }

    /// Runs until shutdown or a storage failure.
    pub(super) async fn run(mut self, mut ch: Channels) -> Result<(), StorageFailed> {
        let mut ticker = tokio::time::interval(self.config.tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = &mut ch.shutdown => break,
                Some(done) = ch.persisted.recv() => self.on_persisted(done)?,
                Some(inbound) = ch.inbox.recv() => self.on_inbound(inbound),
                Some(request) = ch.requests.recv() => {
                    self.on_request(request);
                    if self.config.aggregate {
                        // Everything that queued up meanwhile goes into
                        // the same turn, hence the same append.
                        for _ in 0..self.config.max_requests_per_turn {
                            match ch.requests.try_recv() {
                                Ok(r) => self.on_request(r),
                                Err(_) => break,
                            }
                        }
                    }
                }
                _ = ticker.tick() => self.on_tick(),
                Some(event) = ch.transport_events.recv() => self.on_transport_event(event),
                Some(done) = ch.snapshot_done.recv() => self.on_snapshot_done(done),
            }
            self.process_ready()?;
            self.heartbeat.beat();
            self.metrics.event_loop_turns.inc();
        }
        // Dropping the log finishes what is queued and stops its thread.
        drop(self.wal);
        Ok(())
    }

    // ----- inputs -----

    fn on_inbound(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::Batch { from, messages } => {
                self.metrics
                    .peer_messages_received
                    .with_label_values(&[&from.to_string()])
                    .inc_by(messages.len() as u64);
                let envelope = Envelope {
                    from,
                    to: self.config.id,
                    messages: messages
                        .into_iter()
                        .map(|(group, message)| GroupMessage { group, message })
                        .collect(),
                };
                let undelivered = self.multi.step(envelope);
                for gm in undelivered.unknown_group {
                    tracing::warn!(
                        group = %gm.group, from = %from,
                        "message for a group this replica does not host: are the replicas configured with the same number of groups?"
                    );
                }
            }
            Inbound::Snapshot(received) => {
                // The data is on disk; remember it until the core decides
                // whether to install it (then `process_ready` adopts it).
                self.metrics
                    .snapshots
                    .with_label_values(&["received"])
                    .inc();
                let group = received.group;
                if self.multi.group(group).is_none() {
                    let _ = std::fs::remove_file(&received.path);
                    return;
                }
                self.snapshots
                    .received(group, received.message.clone(), received.path);
                self.multi.step(Envelope {
                    from: received.from,
                    to: self.config.id,
                    messages: vec![GroupMessage {
                        group,
                        message: received.message,
                    }],
                });
            }
        }
    }

    fn on_request(&mut self, request: Request) {
        match request {
            Request::Propose {
                group,
                command,
                arrived,
                reply,
            } => {
                let Some(raft) = self.multi.group_mut(group) else {
                    let _ = reply.send(Err(NodeError::UnknownGroup(group)));
                    return;
                };
                match raft.propose(command) {
                    Ok((index, term)) => {
                        self.writes.insert(
                            (group, index),
                            PendingWrite {
                                term,
                                arrived,
                                reply,
                            },
                        );
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NodeError::from_propose(group, e)));
                    }
                }
            }
            Request::Read {
                group,
                query,
                linearizable,
                arrived,
                reply,
            } => {
                let read = PendingRead {
                    group,
                    query,
                    arrived,
                    linearizable,
                    reply,
                };
                let Some(raft) = self.multi.group_mut(group) else {
                    let _ = read.reply.send(Err(NodeError::UnknownGroup(group)));
                    return;
                };
                if !linearizable {
                    self.answer_read(read);
                    return;
                }
                let context = self.next_context;
                self.next_context += 1;
                raft.read_index(context);
                self.reads_by_context.insert(context, read);
            }
            Request::ConfChange {
                group,
                change,
                reply,
            } => {
                let Some(raft) = self.multi.group_mut(group) else {
                    let _ = reply.send(Err(NodeError::UnknownGroup(group)));
                    return;
                };
                let leader = raft.leader();
                let result = raft
                    .propose_conf_change(change)
                    .map(|(index, term)| Served {
                        group,
                        term,
                        index,
                        leader,
                    })
                    .map_err(|e| NodeError::from_propose(group, e));
                // Answered at proposal; the admin layer waits for the
                // commit by watching the applied index in the status.
                let _ = reply.send(result);
            }
            Request::TransferLeader { group, to, reply } => {
                let Some(raft) = self.multi.group_mut(group) else {
                    let _ = reply.send(Err(NodeError::UnknownGroup(group)));
                    return;
                };
                let target = to.or_else(|| most_up_to_date_voter(raft));
                let result = match target {
                    None => Err(NodeError::Invalid(format!(
                        "group {group} has no other voter to transfer leadership to"
                    ))),
                    Some(target) => raft
                        .transfer_leader(target)
                        .map(|()| target)
                        .map_err(|e| NodeError::from_propose(group, e)),
                };
                let _ = reply.send(result);
            }
            Request::Snapshot { group, reply } => {
                let result = self.take_snapshot(group);
                let _ = reply.send(result);
            }
            Request::Status { reply } => {
                let _ = reply.send(self.multi.groups().map(|(g, r)| (g, r.status())).collect());
            }
        }
    }

    fn on_tick(&mut self) {
        self.multi.tick();
        let stats = self.wal.stats();
        self.metrics
            .wal_bytes
            .inc_by(stats.bytes.saturating_sub(self.metrics.wal_bytes.get()));
        self.release_old_segments(stats.live_segments, stats.oldest_segment_pinned_by);
        self.readmit();
        self.publish_status();
    }

    /// A replica that came back with an empty data directory in a running
    /// cluster does not vote (see `HardState::rejoining`) until the cluster
    /// has added this very incarnation of it back: group 0's member
    /// directory names the incarnation of its data directory (recorded by
    /// the admin API when it was added as a learner), and the group has
    /// caught up to its leader's commit with this replica a learner in it.
    fn readmit(&mut self) {
        let admitted = self
            .machines
            .get(&MEMBERS_GROUP)
            .and_then(|m| m.members().get(&self.config.id.0))
            .is_some_and(|r| !r.is_removed() && r.incarnation == self.wal.incarnation());
        if !admitted {
            return;
        }
        let groups: Vec<GroupId> = self.multi.group_ids().collect();
        for group in groups {
            let Some(raft) = self.multi.group_mut(group) else {
                continue;
            };
            let status = raft.status();
            let caught_up = status.leader.is_some() && status.applied >= status.commit;
            if raft.rejoining() && caught_up && raft.readmit() {
                tracing::info!(
                    %group,
                    incarnation = format!("{:016x}", self.wal.incarnation()),
                    "re-admitted as a learner after losing the data directory: votes again"
                );
            }
        }
    }

    /// A group that applies little never reaches its snapshot threshold,
    /// and its entries in the oldest segment keep every newer segment on
    /// disk. Once more than [`MAX_PINNED_SEGMENTS`] are live, the group
    /// holding the oldest one gets a snapshot now.
    fn release_old_segments(&mut self, live: u64, pinned_by: Option<GroupId>) {
        let Some(group) = pinned_by else { return };
        if live <= MAX_PINNED_SEGMENTS || self.snapshots.in_progress(group) {
            return;
        }
        if let Ok(index) = self.take_snapshot(group) {
            tracing::debug!(%group, %index, live, "snapshot to release old log segments");
        }
    }

    fn on_transport_event(&mut self, event: TransportEvent) {
        match event {
            TransportEvent::Unreachable(peer) => {
                self.metrics
                    .peer_unreachable
                    .with_label_values(&[&peer.to_string()])
                    .inc();
                self.multi.report_unreachable(peer);
            }
            TransportEvent::SnapshotSent { to, group, ok } => {
                let kind = if ok { "sent" } else { "failed" };
                self.metrics.snapshots.with_label_values(&[kind]).inc();
                if let Some(raft) = self.multi.group_mut(group) {
                    raft.report_snapshot(to, ok);
                }
            }
        }
    }

    fn on_persisted(&mut self, done: Persisted) -> Result<(), StorageFailed> {
        if let Err(e) = done.result {
            tracing::error!(error = %e, "the write-ahead log failed; stopping");
            return Err(StorageFailed(format!(
                "the write-ahead log failed: {e}; the replica stopped so that it never acknowledges \
                 what may not be durable. Check the volume, then restart the replica"
            )));
        }
        if done.writes > 0 {
            self.metrics
                .wal_fsync_duration
                .observe(done.submitted.elapsed().as_secs_f64());
            self.metrics.wal_writes_per_sync.observe(done.writes as f64);
        }
        self.multi.on_persisted(&done.readies);
        for envelope in done.messages {
            self.send_envelope(envelope);
        }
        Ok(())
    }

    fn on_snapshot_done(&mut self, done: SnapshotDone) {
        self.snapshots.finished(done.group);
        match done.result {
            Ok(bytes) => {
                self.metrics.snapshots.with_label_values(&["taken"]).inc();
                self.metrics
                    .snapshot_bytes
                    .with_label_values(&["taken"])
                    .inc_by(bytes);
                self.metrics
                    .snapshot_duration
                    .with_label_values(&["taken"])
                    .observe(done.duration.as_secs_f64());
                if let Some(raft) = self.multi.group_mut(done.group) {
                    raft.compact(done.meta.clone());
                }
                // The log forgets entries the snapshot covers (and deletes
                // older snapshot files) once this is recorded. A failure
                // poisons the log, which stops the loop at its next write.
                let group = done.group;
                let recorded = self.wal.compact_to(group, done.meta);
                tokio::spawn(async move {
                    if let Err(e) = recorded.await {
                        tracing::error!(%group, error = %e, "recording a snapshot in the log failed");
                    }
                });
            }
            Err(e) => {
                self.metrics.snapshots.with_label_values(&["failed"]).inc();
                tracing::error!(group = %done.group, error = %e, "taking a snapshot failed; the log keeps growing until one succeeds");
            }
        }
    }

    // ----- outputs -----

    fn process_ready(&mut self) -> Result<(), StorageFailed> {
        if !self.multi.has_ready() {
            return Ok(());
        }
        let ready: MultiReady = self.multi.ready();
        let readies = ready.persisted();
        for envelope in ready.messages {
            self.send_envelope(envelope);
        }
        let mut writes = Vec::new();
        let mut groups = ready.groups;
        for (group, rd) in groups.iter_mut() {
            if let Some(meta) = &rd.snapshot {
                // Install a snapshot from the leader: adopt its file, then
                // restore the state machine before anything after it applies.
                match self.snapshots.install(*group, meta) {
                    Ok(machine) => {
                        self.machines.insert(*group, machine);
                        self.metrics
                            .snapshots
                            .with_label_values(&["installed"])
                            .inc();
                    }
                    Err(e) => {
                        // The core has moved past the snapshot; without its
                        // data this replica cannot continue safely. On
                        // restart it recovers what is durable and the
                        // leader sends the snapshot again.
                        tracing::error!(%group, index = %meta.index, error = %e, "cannot install a snapshot; stopping");
                        return Err(StorageFailed(format!(
                            "cannot install the snapshot of group {group} at index {}: {e}; the replica stopped \
                             (check the volume: space, permissions), then restart it",
                            meta.index
                        )));
                    }
                }
            }
            if rd.must_persist() {
                writes.push(GroupWrite {
                    group: *group,
                    snapshot: rd.snapshot.clone(),
                    entries: std::mem::take(&mut rd.entries),
                    hard_state: rd.hard_state,
                });
            }
        }
        // Messages that promise durability leave once this write (and every
        // one before it) is durable: the completion carries them back.
        let done = self.persisted_tx.clone();
        let mut persisted = Persisted {
            readies,
            messages: ready.persisted_messages,
            result: Ok(()),
            submitted: Instant::now(),
            writes: writes.len(),
        };
        self.wal.submit(writes, move |result| {
            persisted.result = result;
            let _ = done.send(persisted);
        });
        for (group, rd) in groups {
            if let Some(soft) = rd.soft_state {
                self.on_leader_change(group, soft.leader, soft.role);
            }
            let installed = rd.snapshot.is_some();
            let applied = !rd.committed_entries.is_empty();
            self.apply(group, rd.committed_entries);
            if group == MEMBERS_GROUP && (installed || applied) {
                self.refresh_directory();
            }
            for read_state in rd.read_states {
                if let Some(read) = self.reads_by_context.remove(&read_state.context) {
                    self.reads_waiting_apply
                        .entry(group)
                        .or_default()
                        .push((read_state.index, read));
                }
            }
            for dropped in rd.dropped_reads {
                if let Some(read) = self.reads_by_context.remove(&dropped.context) {
                    let leader = self.multi.group(group).and_then(Raft::leader);
                    let error = match leader {
                        Some(_) => NodeError::Aborted { group },
                        None => NodeError::NoLeader { group },
                    };
                    let _ = read.reply.send(Err(error));
                }
            }
            self.serve_waiting_reads(group);
            self.maybe_snapshot(group);
        }
        Ok(())
    }

    fn send_envelope(&mut self, envelope: Envelope) {
        let to = envelope.to;
        let mut batch = Vec::with_capacity(envelope.messages.len());
        for gm in envelope.messages {
            if let MessageBody::InstallSnapshot { meta } = &gm.message.body {
                match self.snapshots.source(gm.group, meta.index) {
                    Some(source) => {
                        self.transport
                            .send_snapshot(to, gm.group, gm.message, source);
                    }
                    None => {
                        tracing::error!(group = %gm.group, index = %meta.index, "the snapshot to send is missing");
                        if let Some(raft) = self.multi.group_mut(gm.group) {
                            raft.report_snapshot(to, false);
                        }
                    }
                }
                continue;
            }
            batch.push((gm.group, gm.message));
        }
        if !batch.is_empty() {
            self.metrics
                .peer_batches_sent
                .with_label_values(&[&to.to_string()])
                .inc();
            self.transport.send(to, batch);
        }
    }

    fn apply(&mut self, group: GroupId, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        let leader = self.multi.group(group).and_then(Raft::leader);
        let Some(machine) = self.machines.get_mut(&group) else {
            return;
        };
        for entry in entries {
            let result = match machine.apply(&entry) {
                Ok(Applied::Command(result)) => Some(result),
                Ok(Applied::Nothing | Applied::Skipped) => None,
                Err(e) => {
                    // Entries come from the core in order; anything else is
                    // a bug that must not silently corrupt the state.
                    panic!("{e}");
                }
            };
            if let Some(pending) = self.writes.remove(&(group, entry.index)) {
                let outcome = match result {
                    Some(result) if pending.term == entry.term => {
                        self.metrics
                            .proposals
                            .with_label_values(&[&group.to_string(), "committed"])
                            .inc();
                        self.metrics
                            .proposal_duration
                            .observe(pending.arrived.elapsed().as_secs_f64());
                        Ok((
                            Served {
                                group,
                                term: entry.term,
                                index: entry.index,
                                leader,
                            },
                            result,
                        ))
                    }
                    _ => {
                        // Another leader's entry took the index: ours was lost.
                        self.metrics
                            .proposals
                            .with_label_values(&[&group.to_string(), "failed"])
                            .inc();
                        Err(NodeError::Aborted { group })
                    }
                };
                let _ = pending.reply.send(outcome);
            }
        }
    }

    fn serve_waiting_reads(&mut self, group: GroupId) {
        let applied = self
            .machines
            .get(&group)
            .map_or(LogIndex::ZERO, KvStateMachine::applied_index);
        let Some(waiting) = self.reads_waiting_apply.get_mut(&group) else {
            return;
        };
        let (ready, still): (Vec<_>, Vec<_>) = std::mem::take(waiting)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        *waiting = still;
        for (_, read) in ready {
            self.answer_read(read);
        }
    }

    fn answer_read(&mut self, read: PendingRead) {
        let group = read.group;
        let (term, leader) = self
            .multi
            .group(group)
            .map_or((Term::ZERO, None), |r| (r.term(), r.leader()));
        let Some(machine) = self.machines.get(&group) else {
            let _ = read.reply.send(Err(NodeError::UnknownGroup(group)));
            return;
        };
        let result = match &read.query {
            Query::Get { key } => ReadResult::Value(machine.get(key).cloned()),
            Query::Scan {
                prefix,
                start_after,
                limit,
            } => ReadResult::Page(scan_after(machine, prefix, start_after, *limit)),
        };
        let served = Served {
            group,
            term,
            index: machine.applied_index(),
            leader,
        };
        let consistency = if read.linearizable {
            "linearizable"
        } else {
            "serializable"
        };
        self.metrics
            .read_duration
            .with_label_values(&[consistency])
            .observe(read.arrived.elapsed().as_secs_f64());
        let _ = read.reply.send(Ok((served, result)));
    }

    fn on_leader_change(&mut self, group: GroupId, leader: Option<NodeId>, role: Role) {
        let label = group.to_string();
        let previous = self.leaders.insert(group, leader);
        if previous.flatten() != leader && leader.is_some() {
            self.metrics
                .leader_changes
                .with_label_values(&[&label])
                .inc();
        }
        self.metrics
            .is_leader
            .with_label_values(&[&label])
            .set(i64::from(role == Role::Leader));
        self.metrics
            .has_leader
            .with_label_values(&[&label])
            .set(i64::from(leader.is_some()));
        if leader.is_some() {
            tracing::info!(%group, leader = ?leader, ?role, "leader known");
        }
    }

    /// Group 0 applied entries (or a snapshot): the member directory may
    /// have changed; if so, peers are (re)addressed and the status shows it.
    fn refresh_directory(&mut self) {
        let Some(machine) = self.machines.get(&MEMBERS_GROUP) else {
            return;
        };
        if !self.directory.refresh(machine.members()) {
            return;
        }
        let members = self.directory.members().to_vec();
        let gone: Vec<NodeId> = self
            .transport
            .peers()
            .map(|(id, _)| id)
            .filter(|id| !members.iter().any(|m| m.id == *id))
            .collect();
        for id in gone {
            self.transport.remove_peer(id);
        }
        for m in &members {
            self.transport.set_peer(m.id, m.address.clone());
        }
        tracing::info!(
            members = ?members.iter().map(|m| format!("{}={}@{}", m.id, m.name, m.address)).collect::<Vec<_>>(),
            "member directory changed"
        );
        self.status.send_modify(|s| s.members = members);
    }

    // ----- snapshots -----

    fn maybe_snapshot(&mut self, group: GroupId) {
        let Some(raft) = self.multi.group(group) else {
            return;
        };
        let since = raft
            .applied()
            .0
            .saturating_sub(raft.snapshot_meta().map_or(0, |m| m.index.0));
        if since >= self.config.snapshot_threshold && !self.snapshots.in_progress(group) {
            let _ = self.take_snapshot(group);
        }
    }

    fn take_snapshot(&mut self, group: GroupId) -> Result<LogIndex, NodeError> {
        let raft = self
            .multi
            .group(group)
            .ok_or(NodeError::UnknownGroup(group))?;
        let machine = self
            .machines
            .get(&group)
            .ok_or(NodeError::UnknownGroup(group))?;
        let meta = raft.applied_snapshot_meta();
        if raft.snapshot_meta().is_some_and(|m| m.index >= meta.index) {
            return Ok(meta.index);
        }
        let index = meta.index;
        self.snapshots.take(group, meta, machine);
        Ok(index)
    }

    // ----- status -----

    fn publish_status(&mut self) {
        let mut checks = Vec::new();
        let mut groups = Vec::new();
        let mut not_member = Vec::new();
        let mut leaderless = Vec::new();
        let mut behind = Vec::new();
        for (group, raft) in self.multi.groups() {
            let status = raft.status();
            let label = group.to_string();
            self.metrics
                .term
                .with_label_values(&[&label])
                .set(status.term.0 as i64);
            self.metrics
                .commit_index
                .with_label_values(&[&label])
                .set(status.commit.0 as i64);
            self.metrics
                .applied_index
                .with_label_values(&[&label])
                .set(status.applied.0 as i64);
            self.metrics
                .last_index
                .with_label_values(&[&label])
                .set(status.last_index.0 as i64);
            let snapshot_index = raft.snapshot_meta().map_or(LogIndex::ZERO, |m| m.index);
            self.metrics
                .snapshot_index
                .with_label_values(&[&label])
                .set(snapshot_index.0 as i64);
            for (peer, p) in &status.progress {
                self.metrics
                    .follower_lag
                    .with_label_values(&[&label, &peer.to_string()])
                    .set(status.last_index.0.saturating_sub(p.matched.0) as i64);
            }
            if status.rejoining || !status.conf_state.members().contains(&self.config.id) {
                not_member.push(group);
            }
            if status.leader.is_none() {
                leaderless.push(group);
            }
            let previous_commit = self
                .commit_at_last_tick
                .insert(group, status.commit)
                .unwrap_or_default();
            let machine = self.machines.get(&group);
            let applied = machine.map_or(LogIndex::ZERO, KvStateMachine::applied_index);
            if applied < previous_commit {
                behind.push(group);
            }
            let digest = machine.map_or(0, |m| m.digest().combined());
            groups.push(GroupView {
                group,
                status,
                snapshot_index,
                digest,
            });
        }
        checks.push(check("member", &not_member, "not a member of group(s)"));
        checks.push(check("leader", &leaderless, "no known leader in group(s)"));
        checks.push(check(
            "caught-up",
            &behind,
            "has not applied what it knows committed in group(s)",
        ));
        let readiness = Readiness::from_checks(checks);
        self.metrics.ready.set(i64::from(readiness.ready));
        let _ = self.readiness.send_if_modified(|old| {
            let changed = *old != readiness;
            *old = readiness.clone();
            changed
        });
        self.status.send_modify(|s| {
            s.groups = groups;
            s.readiness = readiness;
        });
    }
}

fn check(name: &'static str, failing: &[GroupId], what: &str) -> Check {
    Check {
        name,
        ok: failing.is_empty(),
        detail: if failing.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = failing.iter().map(ToString::to_string).collect();
            format!("{what} {}", list.join(","))
        },
    }
}

/// A page of keys with `prefix` that come strictly after `start_after`.
fn scan_after(
    machine: &KvStateMachine,
    prefix: &[u8],
    start_after: &[u8],
    limit: usize,
) -> kv::ScanPage {
    if start_after.is_empty() {
        return machine.scan(prefix, None, limit);
    }
    // The machine's scan starts *at* a key: fetch one more and drop it.
    let mut page = machine.scan(prefix, Some(start_after), limit.saturating_add(1));
    if page
        .entries
        .first()
        .is_some_and(|(k, _)| k.as_ref() == start_after)
    {
        page.entries.remove(0);
    } else if page.entries.len() > limit {
        let (next, _) = page.entries.pop().expect("longer than limit");
        page.next = Some(next);
    }
    page
}

fn most_up_to_date_voter(raft: &Raft) -> Option<NodeId> {
    let status = raft.status();
    status
        .progress
        .iter()
        .filter(|(id, _)| status.conf_state.voters.contains(id))
        .max_by_key(|(_, p)| p.matched)
        .map(|(id, _)| *id)
}
