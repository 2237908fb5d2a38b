//! [`Raft`]: one group's replica of the Raft algorithm.
//!
//! Invariants this file maintains (the simulation checks them from outside):
//! - a node votes at most once per term, and only after the vote is durable
//!   does anyone learn of it (granted votes go out as persisted messages; a
//!   candidate counts its own vote only once it is durable);
//! - a follower acknowledges entries only once they are durable;
//! - a leader counts an entry toward commit only if it is of its own term
//!   (earlier entries commit indirectly), and counts itself only up to its
//!   own durable prefix;
//! - a membership change takes effect when applied, and a new one is accepted
//!   only once the previous one is applied.

use super::confchange;
use super::config::{Config, ConfigError, ReadOnlyOption};
use super::log::RaftLog;
use super::message::{Message, MessageBody, ReadContext, RejectHint};
use super::progress::{Progress, ProgressState};
use super::quorum::{self, VoteResult};
use super::read_only::ReadOnly;
use super::ready::{DroppedRead, ReadState, Ready, Role, SoftState};
use super::types::{
    ConfChange, ConfState, Entry, HardState, LogIndex, NodeId, Payload, RecoveredState,
    SnapshotMeta, Term,
};
use bytes::Bytes;
use rand::Rng;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::{BTreeMap, VecDeque};
use thiserror::Error;

/// Why a proposal (or a transfer request) was refused. Nothing was appended.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProposeError {
    #[error("not the leader{}", .leader.map(|l| format!(" (the leader is node {l})")).unwrap_or_else(|| " (no leader known)".into()))]
    NotLeader { leader: Option<NodeId> },
    #[error("a leadership transfer is under way; retry when it is over")]
    TransferInProgress,
    #[error("an earlier membership change is not applied yet; retry once it is")]
    ConfChangeInProgress,
    #[error("invalid membership change: {0}")]
    InvalidConfChange(String),
    #[error("node {0} is not a voter of this group and cannot become its leader")]
    InvalidTransferTarget(NodeId),
}

/// A follower's replication state as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgressStatus {
    pub matched: LogIndex,
    pub next: LogIndex,
    pub state: ProgressState,
    pub recent_active: bool,
    pub inflight: usize,
}

/// A snapshot of one group's state for status pages and the admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub leader: Option<NodeId>,
    pub term: Term,
    pub vote: Option<NodeId>,
    pub commit: LogIndex,
    pub applied: LogIndex,
    pub first_index: LogIndex,
    pub last_index: LogIndex,
    pub conf_state: ConfState,
    pub lead_transferee: Option<NodeId>,
    /// See [`HardState::rejoining`].
    pub rejoining: bool,
    /// Leader only: every other member's progress.
    pub progress: Vec<(NodeId, ProgressStatus)>,
}

/// What one outstanding ready asked to persist.
#[derive(Clone, Copy, Debug)]
struct Unpersisted {
    number: u64,
    last_entry: Option<(LogIndex, Term)>,
    snapshot: Option<LogIndex>,
    hard_state: Option<HardState>,
}

/// One group's Raft state machine on one node.
pub struct Raft {
    id: NodeId,
    config: Config,
    rng: Xoshiro256PlusPlus,

    term: Term,
    vote: Option<NodeId>,
    /// See [`HardState::rejoining`].
    rejoining: bool,
    role: Role,
    leader: Option<NodeId>,
    log: RaftLog,
    /// The applied membership.
    conf: ConfState,

    /// Votes received this election (pre-vote or real).
    votes: BTreeMap<NodeId, bool>,
    /// Leader only: every member's progress, this node included.
    progress: BTreeMap<NodeId, Progress>,
    lead_transferee: Option<NodeId>,
    /// The index of the latest membership change proposed; no other is
    /// accepted until it is applied.
    pending_conf_index: LogIndex,
    /// New entries wait to be broadcast at the next `ready`, so that all
    /// proposals of one event-loop turn travel in one append per follower.
    append_due: bool,
    reads: ReadOnly,
    /// Follower: reads forwarded to the leader, with the tick they were sent.
    forwarded_reads: Vec<(ReadContext, u64)>,
    /// Follower: a TimeoutNow of this term that arrived before a committed
    /// membership change was applied; we campaign once it is.
    deferred_transfer: Option<Term>,

    election_elapsed: u32,
    heartbeat_elapsed: u32,
    randomized_election_timeout: u32,
    ticks: u64,

    messages: Vec<Message>,
    persisted_messages: Vec<Message>,
    read_states: Vec<ReadState>,
    dropped_reads: Vec<DroppedRead>,
    ready_number: u64,
    unpersisted: VecDeque<Unpersisted>,
    last_soft: SoftState,
    last_hard: HardState,
}

impl Raft {
    /// A replica of a group restarted from `state` (see [`RecoveredState`]:
    /// `RecoveredState::bootstrap` for a new group's initial members,
    /// `RecoveredState::default()` for a node that joins with an empty disk;
    /// such a node neither votes nor campaigns until a leader has sent it a
    /// snapshot that tells it the membership).
    pub fn new(config: Config, state: RecoveredState) -> Result<Raft, ConfigError> {
        config.validate()?;
        let snapshot = state.snapshot.unwrap_or_default();
        let mut expected = snapshot.index;
        for e in &state.entries {
            expected = expected.next();
            if e.index != expected {
                return Err(ConfigError::corrupt(format!(
                    "recovered log of node {} is not contiguous: expected index {}, found {}",
                    config.id, expected.0, e.index.0
                )));
            }
        }
        let hard = state.hard_state;
        let conf = snapshot.conf_state.clone();
        let log = RaftLog::restore(snapshot, state.entries, hard.commit);
        let mut raft = Raft {
            id: config.id,
            rng: Xoshiro256PlusPlus::seed_from_u64(config.seed),
            config,
            term: hard.term,
            vote: hard.vote,
            rejoining: hard.rejoining,
            role: Role::Follower,
            leader: None,
            conf,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            lead_transferee: None,
            pending_conf_index: LogIndex::ZERO,
            append_due: false,
            reads: ReadOnly::new(),
            forwarded_reads: Vec::new(),
            deferred_transfer: None,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: 0,
            ticks: 0,
            messages: Vec::new(),
            persisted_messages: Vec::new(),
            read_states: Vec::new(),
            dropped_reads: Vec::new(),
            ready_number: 0,
            unpersisted: VecDeque::new(),
            last_soft: SoftState {
                leader: None,
                role: Role::Follower,
            },
            last_hard: HardState {
                commit: LogIndex::ZERO,
                ..hard
            },
            log,
        };
        raft.last_hard.commit = raft.log.committed;
        raft.reset_election_timeout();
        Ok(raft)
    }

    // ----- accessors -----

    pub fn id(&self) -> NodeId {
        self.id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn commit(&self) -> LogIndex {
        self.log.committed
    }
    pub fn applied(&self) -> LogIndex {
        self.log.applied
    }
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }
    /// The applied membership.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf
    }
    /// The snapshot the log starts after (index 0 for a brand-new log).
    pub fn snapshot_meta(&self) -> Option<&SnapshotMeta> {
        let snapshot = self.log.snapshot();
        (snapshot.index > LogIndex::ZERO).then_some(snapshot)
    }

    pub fn status(&self) -> Status {
        let progress = self
            .progress
            .iter()
            .filter(|(id, _)| **id != self.id)
            .map(|(&id, p)| {
                (
                    id,
                    ProgressStatus {
                        matched: p.matched,
                        next: p.next,
                        state: p.state,
                        recent_active: p.recent_active,
                        inflight: p.inflights.count(),
                    },
                )
            })
            .collect();
        Status {
            id: self.id,
            role: self.role,
            leader: self.leader,
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
            applied: self.log.applied,
            first_index: self.log.first_index(),
            last_index: self.log.last_index(),
            conf_state: self.conf.clone(),
            lead_transferee: self.lead_transferee,
            rejoining: self.rejoining,
            progress,
        }
    }

    // ----- inputs: time -----

    /// One tick of time passed.
    pub fn tick(&mut self) {
        self.ticks += 1;
        self.election_elapsed += 1;
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.expire_forwarded_reads();
            if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
                self.election_elapsed = 0;
                self.start_election(false);
            }
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        if self.election_elapsed >= self.config.election_ticks {
            self.election_elapsed = 0;
            if self.config.check_quorum {
                if !self.quorum_active() {
                    // Cannot hear a quorum: another leader may be elected
                    // without us; stop serving as leader.
                    self.become_follower(self.term, None);
                    return;
                }
                for (&id, p) in self.progress.iter_mut() {
                    p.recent_active = id == self.id;
                }
            }
            // A transfer that did not finish within an election timeout is
            // abandoned; a leader that is no longer a voter tries again.
            self.lead_transferee = None;
            if !self.conf.is_voter(self.id) {
                self.hand_over();
                if self.role != Role::Leader {
                    return;
                }
            }
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            let round = self.reads.retry_round();
            self.broadcast_heartbeat(round);
        }
    }

    fn expire_forwarded_reads(&mut self) {
        let horizon = u64::from(self.config.election_ticks);
        let now = self.ticks;
        let dropped = &mut self.dropped_reads;
        self.forwarded_reads.retain(|&(context, sent)| {
            let keep = now - sent < horizon;
            if !keep {
                dropped.push(DroppedRead { context });
            }
            keep
        });
    }

    // ----- inputs: client requests -----

    /// Appends a command to the log if this node is the leader. Returns the
    /// index and term it will have if it commits.
    pub fn propose(&mut self, command: Bytes) -> Result<(LogIndex, Term), ProposeError> {
        self.check_can_propose()?;
        Ok(self.append_entry(Payload::Command(command)))
    }

    /// Proposes a membership change (see [`ConfChange`]).
    pub fn propose_conf_change(
        &mut self,
        cc: ConfChange,
    ) -> Result<(LogIndex, Term), ProposeError> {
        self.check_can_propose()?;
        if self.pending_conf_index > self.log.applied {
            return Err(ProposeError::ConfChangeInProgress);
        }
        confchange::apply(&self.conf, &cc).map_err(ProposeError::InvalidConfChange)?;
        let (index, term) = self.append_entry(Payload::ConfChange(cc));
        self.pending_conf_index = index;
        Ok((index, term))
    }

    fn check_can_propose(&self) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.lead_transferee.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        Ok(())
    }

    fn append_entry(&mut self, payload: Payload) -> (LogIndex, Term) {
        let index = self.log.last_index().next();
        self.log.append(vec![Entry {
            term: self.term,
            index,
            payload,
        }]);
        self.append_due = true;
        (index, self.term)
    }

    /// Asks for a linearizable read. The answer arrives in a later
    /// [`Ready`]: a [`ReadState`] (serve the read once the state machine has
    /// applied its index) or a [`DroppedRead`] (retry, perhaps elsewhere).
    pub fn read_index(&mut self, context: ReadContext) {
        match (self.role, self.leader) {
            (Role::Leader, _) => self.handle_read(self.id, context),
            (_, Some(leader)) => {
                self.forwarded_reads.push((context, self.ticks));
                self.send(leader, MessageBody::ReadIndex { context });
            }
            (_, None) => self.dropped_reads.push(DroppedRead { context }),
        }
    }

    /// Hands leadership to `to`: once `to` has every entry, it is told to
    /// campaign at once. Proposals are refused meanwhile; the transfer is
    /// abandoned after an election timeout.
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if to == self.id {
            self.lead_transferee = None;
            return Ok(());
        }
        if !self.conf.is_voter(to) || !self.progress.contains_key(&to) {
            return Err(ProposeError::InvalidTransferTarget(to));
        }
        if self.lead_transferee == Some(to) {
            return Ok(());
        }
        self.lead_transferee = Some(to);
        self.election_elapsed = 0;
        if self.progress[&to].matched == self.log.last_index() {
            self.send(to, MessageBody::TimeoutNow);
        } else {
            self.send_append(to, true);
        }
        Ok(())
    }

    /// Starts an election now (pre-vote first if enabled).
    pub fn campaign(&mut self) {
        if self.role != Role::Leader && self.promotable() {
            self.start_election(false);
        }
    }

    // ----- inputs: messages -----

    /// Handles a message from another replica of the group. Any message is
    /// acceptable input: stale, duplicated, reordered or from a removed node.
    pub fn step(&mut self, m: Message) {
        if m.to != self.id || m.from == self.id || !well_formed(&m) {
            return;
        }
        if m.term > self.term {
            if let MessageBody::RequestVote { transfer, .. } = &m.body {
                let in_lease = self.config.check_quorum
                    && self.leader.is_some()
                    && self.election_elapsed < self.config.election_ticks;
                if in_lease && !transfer {
                    // We heard from a live leader recently: a vote now
                    // could only disrupt it (the leader lease).
                    return;
                }
            }
            match &m.body {
                // A pre-vote does not move anyone to its term.
                MessageBody::RequestVote { pre_vote: true, .. } => {}
                MessageBody::RequestVoteResponse {
                    pre_vote: true,
                    granted: true,
                } => {}
                MessageBody::Append { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => self.become_follower(m.term, Some(m.from)),
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term {
            match m.body {
                MessageBody::Append { .. } | MessageBody::Heartbeat { .. }
                    if self.config.check_quorum || self.config.pre_vote =>
                {
                    // A stale leader: tell it the current term so it steps
                    // down. (Without this, a leader partitioned away would
                    // never learn, since pre-vote keeps our term from rising
                    // on its side.)
                    self.send(
                        m.from,
                        MessageBody::AppendResponse {
                            index: self.log.last_index(),
                            reject: None,
                        },
                    );
                }
                MessageBody::RequestVote { pre_vote: true, .. } => {
                    self.send(
                        m.from,
                        MessageBody::RequestVoteResponse {
                            pre_vote: true,
                            granted: false,
                        },
                    );
                }
                _ => {}
            }
            return;
        }

        if let MessageBody::RequestVote {
            pre_vote,
            last_index,
            last_term,
            ..
        } = m.body
        {
            self.handle_vote_request(m.from, m.term, pre_vote, last_index, last_term);
            return;
        }
        match self.role {
            Role::Leader => self.step_leader(m),
            Role::Candidate | Role::PreCandidate => self.step_candidate(m),
            Role::Follower => self.step_follower(m),
        }
    }

    fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_index: LogIndex,
        last_term: Term,
    ) {
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre_vote && term > self.term);
        // A node that does not know the membership (it joined with an empty
        // disk) must not vote: it may have voted in this term before it lost
        // its state.
        let knows_membership = !self.conf.voters.is_empty();
        let granted = can_vote
            && knows_membership
            && !self.rejoining
            && self.log.is_up_to_date(last_index, last_term);
        let reply = Message {
            from: self.id,
            to: from,
            // A granted pre-vote is for the term the candidate would enter.
            term: if pre_vote && granted { term } else { self.term },
            body: MessageBody::RequestVoteResponse { pre_vote, granted },
        };
        if pre_vote {
            self.messages.push(reply);
        } else {
            if granted {
                self.election_elapsed = 0;
                self.vote = Some(from);
            }
            // The vote is durable before anyone hears of it.
            self.persisted_messages.push(reply);
        }
    }

    fn step_follower(&mut self, m: Message) {
        match m.body {
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                self.heard_from_leader(m.from);
                self.handle_append(m.from, prev_index, prev_term, &entries, commit);
            }
            MessageBody::Heartbeat { commit, read_round } => {
                self.heard_from_leader(m.from);
                self.log.commit_to(commit);
                self.send(m.from, MessageBody::HeartbeatResponse { read_round });
            }
            MessageBody::InstallSnapshot { meta } => {
                self.heard_from_leader(m.from);
                self.handle_snapshot(m.from, meta);
            }
            MessageBody::TimeoutNow
                if self.promotable()
                // The leader asked us to take over: skip pre-vote, and
                // voters ignore their lease for us. If a membership change
                // committed in the same batch is not applied yet, campaign
                // as soon as it is (see `ready`).
                && !self.start_election(true) =>
            {
                self.deferred_transfer = Some(self.term);
            }
            MessageBody::ReadIndexResponse { context, index } => {
                if let Some(pos) = self.forwarded_reads.iter().position(|(c, _)| *c == context) {
                    self.forwarded_reads.swap_remove(pos);
                    match index {
                        Some(index) => self.read_states.push(ReadState { context, index }),
                        None => self.dropped_reads.push(DroppedRead { context }),
                    }
                }
            }
            MessageBody::ReadIndex { context } => {
                // We are not the leader (any more): the asker must retry.
                self.send(
                    m.from,
                    MessageBody::ReadIndexResponse {
                        context,
                        index: None,
                    },
                );
            }
            _ => {}
        }
    }

    fn heard_from_leader(&mut self, leader: NodeId) {
        self.election_elapsed = 0;
        if self.leader != Some(leader) {
            self.set_leader(Some(leader));
        }
    }

    fn step_candidate(&mut self, m: Message) {
        match m.body {
            MessageBody::Append { .. }
            | MessageBody::Heartbeat { .. }
            | MessageBody::InstallSnapshot { .. } => {
                // A leader of our term exists: stand down and follow it.
                self.become_follower(m.term, Some(m.from));
                self.step_follower(m);
            }
            MessageBody::RequestVoteResponse { pre_vote, granted } => {
                let expected = self.role == Role::PreCandidate;
                if pre_vote == expected {
                    self.votes.insert(m.from, granted);
                    self.count_votes();
                }
            }
            MessageBody::ReadIndex { context } => {
                self.send(
                    m.from,
                    MessageBody::ReadIndexResponse {
                        context,
                        index: None,
                    },
                );
            }
            _ => {}
        }
    }

    fn step_leader(&mut self, m: Message) {
        let from = m.from;
        match m.body {
            MessageBody::AppendResponse { index, reject } => {
                let Some(p) = self.progress.get_mut(&from) else {
                    return;
                };
                p.recent_active = true;
                match reject {
                    Some(hint) => self.handle_append_rejection(from, index, hint),
                    None => self.handle_append_success(from, index),
                }
            }
            MessageBody::HeartbeatResponse { read_round } => {
                let last = self.log.last_index();
                let Some(p) = self.progress.get_mut(&from) else {
                    return;
                };
                p.recent_active = true;
                p.read_round = p.read_round.max(read_round);
                // The follower is alive: an unanswered probe or a full window
                // may have lost its answer, so let one more append through.
                p.probe_sent = false;
                if p.state == ProgressState::Replicate && p.inflights.full() {
                    p.inflights.free_first();
                }
                if p.matched < last {
                    // Sent even if empty: if our last append was lost, the
                    // follower's rejection of this one puts it back on track.
                    self.send_append(from, true);
                }
                if read_round > 0 {
                    self.confirm_reads();
                }
            }
            MessageBody::ReadIndex { context } => {
                if self.progress.contains_key(&from) {
                    self.handle_read(from, context);
                } else {
                    self.send(
                        from,
                        MessageBody::ReadIndexResponse {
                            context,
                            index: None,
                        },
                    );
                }
            }
            _ => {}
        }
    }

    // ----- follower: appends and snapshots -----

    fn handle_append(
        &mut self,
        leader: NodeId,
        prev_index: LogIndex,
        prev_term: Term,
        entries: &[Entry],
        commit: LogIndex,
    ) {
        let committed = self.log.committed;
        if prev_index < committed {
            // Everything up to our commit index is already in place (the
            // log matching property); acknowledge what we have and skip the
            // part of the message that is below it.
            let skip = (committed.0 - prev_index.0) as usize;
            if skip >= entries.len() {
                self.persisted_messages.push(self.message(
                    leader,
                    MessageBody::AppendResponse {
                        index: committed,
                        reject: None,
                    },
                ));
                return;
            }
            let rest = &entries[skip..];
            let rest_prev_term = entries[skip - 1].term;
            return self.handle_append(leader, committed, rest_prev_term, rest, commit);
        }
        match self.log.append_after(prev_index, prev_term, entries) {
            Some(last_new) => {
                self.log.commit_to(commit.min(last_new));
                self.persisted_messages.push(self.message(
                    leader,
                    MessageBody::AppendResponse {
                        index: last_new,
                        reject: None,
                    },
                ));
            }
            None => {
                let (index, term) = self.log.find_conflict_by_term(prev_index, prev_term);
                self.persisted_messages.push(self.message(
                    leader,
                    MessageBody::AppendResponse {
                        index: prev_index,
                        reject: Some(RejectHint { index, term }),
                    },
                ));
            }
        }
    }

    fn handle_snapshot(&mut self, leader: NodeId, meta: SnapshotMeta) {
        let index = meta.index;
        if index <= self.log.committed {
            // Stale: we already have all of it.
        } else if self.log.matches(meta.index, meta.term) {
            // We have the entries: no need to throw the log away.
            self.log.commit_to(index);
        } else {
            // The snapshot's membership may predate us (a learner added after
            // the leader's last snapshot): we learn of our own addition by
            // applying the log that follows it. Not being a voter in the
            // snapshot's membership, we cannot campaign meanwhile.
            self.conf = meta.conf_state.clone();
            self.log.install_snapshot(meta);
        }
        let index = self.log.committed;
        self.persisted_messages.push(self.message(
            leader,
            MessageBody::AppendResponse {
                index,
                reject: None,
            },
        ));
    }

    // ----- leader: replication -----

    fn handle_append_rejection(&mut self, from: NodeId, rejected: LogIndex, hint: RejectHint) {
        // The follower's log may match up to hint.index, where its term is
        // hint.term: skip back over every entry of ours with a later term.
        let next_probe = if hint.term > Term::ZERO {
            self.log.find_conflict_by_term(hint.index, hint.term).0
        } else {
            hint.index
        };
        let Some(p) = self.progress.get_mut(&from) else {
            return;
        };
        if p.maybe_decrease_to(rejected, next_probe) {
            if p.state == ProgressState::Replicate {
                p.become_probe();
            }
            self.send_append(from, true);
        }
    }

    fn handle_append_success(&mut self, from: NodeId, index: LogIndex) {
        let first_index = self.log.first_index();
        if index > self.log.last_index() {
            return; // acknowledges entries we never sent: ignore
        }
        let Some(p) = self.progress.get_mut(&from) else {
            return;
        };
        let was_paused = p.is_paused();
        if !p.maybe_update(index) {
            return;
        }
        match p.state {
            ProgressState::Probe => p.become_replicate(),
            ProgressState::Snapshot if p.matched.next() >= first_index => {
                p.become_probe();
                p.become_replicate();
            }
            ProgressState::Snapshot => {}
            ProgressState::Replicate => p.inflights.free_to(index),
        }
        if self.maybe_commit() {
            self.broadcast_append();
        } else if was_paused {
            self.send_append(from, false);
        }
        // Keep the pipeline full.
        while self.send_append(from, false) {}
        // A follower that was paused when the commit index moved missed it:
        // tell it now rather than at the next heartbeat.
        let p = &self.progress[&from];
        let commit = self.log.committed.min(p.matched);
        if p.sent_commit < commit {
            self.send_heartbeat(from, commit, 0);
        }
        if self.lead_transferee == Some(from)
            && self.progress[&from].matched == self.log.last_index()
        {
            self.send(from, MessageBody::TimeoutNow);
        }
    }

    /// Sends `to` the next entries it needs (or a snapshot). Returns whether
    /// anything was sent.
    fn send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        if to == self.id {
            return false;
        }
        let Some(p) = self.progress.get(&to) else {
            return false;
        };
        if p.is_paused() {
            return false;
        }
        let next = p.next;
        let prev_index = next.prev();
        let prev_term = self.log.term(prev_index);
        let entries = self.log.entries_from(next, self.config.max_append_bytes);
        let (Some(prev_term), Some(entries)) = (prev_term, entries) else {
            // The entries were compacted away: send the snapshot instead.
            if !p.recent_active {
                return false;
            }
            let meta = self.log.snapshot().clone();
            let index = meta.index;
            if let Some(p) = self.progress.get_mut(&to) {
                p.become_snapshot(index);
            }
            self.send(to, MessageBody::InstallSnapshot { meta });
            return true;
        };
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        let last = entries.last().map(|e| e.index);
        let bytes: u64 = entries.iter().map(Entry::size).sum();
        let commit = self.log.committed;
        if let Some(p) = self.progress.get_mut(&to) {
            p.sent(last, bytes);
            // The follower can use the commit index only up to the entries
            // this append brings it.
            p.sent_commit = p.sent_commit.max(commit.min(last.unwrap_or(prev_index)));
        }
        self.send(
            to,
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            },
        );
        true
    }

    fn broadcast_append(&mut self) {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for id in peers {
            self.send_append(id, true);
        }
    }

    fn broadcast_heartbeat(&mut self, read_round: u64) {
        let committed = self.log.committed;
        let beats: Vec<(NodeId, LogIndex)> = self
            .progress
            .iter()
            .filter(|(id, _)| **id != self.id)
            .map(|(&id, p)| (id, committed.min(p.matched)))
            .collect();
        for (id, commit) in beats {
            self.send_heartbeat(id, commit, read_round);
        }
    }

    fn send_heartbeat(&mut self, to: NodeId, commit: LogIndex, read_round: u64) {
        if let Some(p) = self.progress.get_mut(&to) {
            p.sent_commit = p.sent_commit.max(commit);
        }
        self.send(to, MessageBody::Heartbeat { commit, read_round });
    }

    /// Advances the commit index to what a quorum has durably, if that is an
    /// entry of the current term. Returns whether it moved.
    fn maybe_commit(&mut self) -> bool {
        let progress = &self.progress;
        let index = quorum::joint_index(&self.conf, |id| {
            progress.get(&id).map_or(0, |p| p.matched.0)
        });
        let index = LogIndex(index.min(self.log.last_index().0));
        if index <= self.log.committed || self.log.term(index) != Some(self.term) {
            return false;
        }
        self.log.commit_to(index);
        // Reads that waited for the first commit of this term can proceed.
        for (from, context) in std::mem::take(&mut self.reads.awaiting_commit) {
            self.handle_read(from, context);
        }
        true
    }

    fn quorum_active(&self) -> bool {
        let active: BTreeMap<NodeId, bool> = self
            .progress
            .iter()
            .map(|(&id, p)| (id, id == self.id || p.recent_active))
            .collect();
        quorum::joint_vote(&self.conf, &active) == VoteResult::Won
    }

    // ----- leader: reads -----

    fn handle_read(&mut self, from: NodeId, context: ReadContext) {
        if self.log.term(self.log.committed) != Some(self.term) {
            self.reads.awaiting_commit.push((from, context));
            return;
        }
        let index = self.log.committed;
        let alone = self.conf.voters == [self.id] && self.conf.voters_outgoing.is_empty();
        if alone || self.config.read_only == ReadOnlyOption::LeaseBased {
            self.answer_read(from, context, index);
        } else {
            self.reads.add(from, context, index);
        }
    }

    fn confirm_reads(&mut self) {
        let me = self.id;
        let progress = &self.progress;
        let round = quorum::joint_index(&self.conf, |id| {
            if id == me {
                u64::MAX
            } else {
                progress.get(&id).map_or(0, |p| p.read_round)
            }
        });
        for read in self.reads.confirmed(round) {
            self.answer_read(read.from, read.context, read.index);
        }
    }

    fn answer_read(&mut self, from: NodeId, context: ReadContext, index: LogIndex) {
        if from == self.id {
            self.read_states.push(ReadState { context, index });
        } else {
            self.send(
                from,
                MessageBody::ReadIndexResponse {
                    context,
                    index: Some(index),
                },
            );
        }
    }

    // ----- elections -----

    /// Whether this node may become leader: it votes in the membership it
    /// knows, and its vote history is intact (see [`HardState::rejoining`]).
    fn promotable(&self) -> bool {
        self.conf.is_voter(self.id) && !self.rejoining
    }

    /// The caller has confirmed that the cluster re-admitted this rejoining
    /// node after it lost its state (a membership change made since then
    /// names this very incarnation of the node). It may vote again once the
    /// applied membership shows it as a learner: its old voter entry is
    /// gone, so votes it cast before it lost its disk cannot combine with
    /// new ones; it becomes a voter only through a later promotion.
    ///
    /// The membership alone cannot tell: a node catching up from an old
    /// log replays its own earlier admission. Hence the caller's word.
    ///
    /// It counts as having voted in the current term (for the leader it
    /// follows), since a vote it cast in this term before the loss is
    /// unknown. Returns whether the node was re-admitted.
    pub fn readmit(&mut self) -> bool {
        if !self.rejoining || !self.conf.is_learner(self.id) {
            return false;
        }
        self.rejoining = false;
        if self.vote.is_none() {
            self.vote = Some(self.leader.unwrap_or(self.id));
        }
        true
    }

    /// Whether this node lost its vote history and waits to be re-admitted
    /// as a learner (see [`HardState::rejoining`]).
    pub fn rejoining(&self) -> bool {
        self.rejoining
    }

    /// Starts an election unless a committed membership change is not
    /// applied yet (it may remove us or change the quorum). Returns whether
    /// it started.
    fn start_election(&mut self, transfer: bool) -> bool {
        let conf_pending = self
            .log
            .unapplied_committed()
            .any(|e| matches!(e.payload, Payload::ConfChange(_)));
        if conf_pending {
            return false;
        }
        if self.config.pre_vote && !transfer {
            self.become_pre_candidate();
        } else {
            self.become_candidate(transfer);
        }
        true
    }

    /// Campaigns for a leadership transfer that had to wait for a
    /// membership change to be applied, if it is still for this term.
    fn maybe_deferred_transfer(&mut self) {
        let Some(term) = self.deferred_transfer else {
            return;
        };
        let stale = term != self.term || self.role != Role::Follower || !self.promotable();
        if stale || self.start_election(true) {
            self.deferred_transfer = None;
        }
    }

    fn become_pre_candidate(&mut self) {
        self.role = Role::PreCandidate;
        self.set_leader(None);
        self.votes.clear();
        self.reset_election_timeout();
        self.votes.insert(self.id, true);
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let term = self.term.next();
        for id in self.voters() {
            if id != self.id {
                self.messages.push(Message {
                    from: self.id,
                    to: id,
                    term,
                    body: MessageBody::RequestVote {
                        pre_vote: true,
                        last_index,
                        last_term,
                        transfer: false,
                    },
                });
            }
        }
        self.count_votes();
    }

    fn become_candidate(&mut self, transfer: bool) {
        self.term = self.term.next();
        self.vote = Some(self.id);
        self.role = Role::Candidate;
        self.set_leader(None);
        self.votes.clear();
        self.reset_election_timeout();
        self.reset_leader_state();
        // Our own vote counts only once it is durable (see `on_persisted`).
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for id in self.voters() {
            if id != self.id {
                self.send(
                    id,
                    MessageBody::RequestVote {
                        pre_vote: false,
                        last_index,
                        last_term,
                        transfer,
                    },
                );
            }
        }
    }

    fn count_votes(&mut self) {
        match quorum::joint_vote(&self.conf, &self.votes) {
            VoteResult::Won if self.role == Role::PreCandidate => self.become_candidate(false),
            VoteResult::Won if self.role == Role::Candidate => self.become_leader(),
            VoteResult::Lost => self.become_follower(self.term, None),
            _ => {}
        }
    }

    fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.set_leader(Some(self.id));
        self.lead_transferee = None;
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        let next = self.log.last_index().next();
        self.progress.clear();
        for id in self.conf.members() {
            let mut p = Progress::new(
                next,
                self.config.max_inflight_msgs,
                self.config.max_inflight_bytes,
            );
            if id == self.id {
                p.matched = self.log.persisted;
                p.become_replicate();
                p.next = next;
                p.recent_active = true;
            }
            self.progress.insert(id, p);
        }
        // Any membership change in the uncommitted tail counts as pending.
        self.pending_conf_index = self.log.last_index();
        // Commit entries of earlier terms by committing one of ours.
        self.append_entry(Payload::Empty);
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        self.role = Role::Follower;
        self.set_leader(leader);
        self.votes.clear();
        self.reset_election_timeout();
        self.reset_leader_state();
    }

    /// Forgets what only a leader keeps; reads waiting on it are dropped.
    fn reset_leader_state(&mut self) {
        self.progress.clear();
        self.lead_transferee = None;
        self.append_due = false;
        for (from, context) in self.reads.reset() {
            if from == self.id {
                self.dropped_reads.push(DroppedRead { context });
            }
            // Forwarded reads: the follower drops them when it sees the
            // leadership change or the read expires.
        }
    }

    fn set_leader(&mut self, leader: Option<NodeId>) {
        if self.leader != leader {
            self.leader = leader;
            // Reads forwarded to the old leader will not be answered.
            for (context, _) in self.forwarded_reads.drain(..) {
                self.dropped_reads.push(DroppedRead { context });
            }
        }
    }

    fn reset_election_timeout(&mut self) {
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        let base = self.config.election_ticks;
        self.randomized_election_timeout = base + self.rng.random_range(0..base);
    }

    fn voters(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self
            .conf
            .voters
            .iter()
            .chain(&self.conf.voters_outgoing)
            .copied()
            .collect();
        all.sort();
        all.dedup();
        all
    }

    // ----- membership -----

    fn apply_conf_change(&mut self, cc: &ConfChange) {
        let Ok(next) = confchange::apply(&self.conf, cc) else {
            // Every replica applies the same log and refuses the same change.
            return;
        };
        self.conf = next;
        if self.role != Role::Leader {
            return;
        }
        let next_index = self.log.last_index().next();
        self.append_due = true;
        let members = self.conf.members();
        self.progress.retain(|id, _| members.contains(id));
        for id in members {
            self.progress.entry(id).or_insert_with(|| {
                let mut p = Progress::new(
                    next_index,
                    self.config.max_inflight_msgs,
                    self.config.max_inflight_bytes,
                );
                p.recent_active = true;
                p
            });
        }
        if self.lead_transferee.is_some_and(|t| !self.conf.is_voter(t)) {
            self.lead_transferee = None;
        }
        if !self.conf.is_voter(self.id) {
            self.hand_over();
            return;
        }
        if self.maybe_commit() {
            self.broadcast_append();
        }
    }

    /// A leader that is no longer a voter (removed or demoted) hands the
    /// group to the most up-to-date voter. If that voter has its whole log,
    /// at once: TimeoutNow, and step down. Otherwise it keeps leading, as a
    /// leader does during a transfer (proposals refused), until the voter
    /// has caught up, and only then tells it to campaign.
    ///
    /// Stepping down early can wedge the group: when a joint configuration
    /// is left, the remaining voters may not know yet that the leaving entry
    /// committed, so they still need a majority of the old half, which
    /// counts this node; and it refuses its vote to every one of them while
    /// its log is longer than theirs.
    fn hand_over(&mut self) {
        let successor = self
            .progress
            .iter()
            .filter(|(id, _)| self.conf.is_voter(**id))
            .max_by_key(|(_, p)| p.matched)
            .map(|(&id, p)| (id, p.matched));
        let last = self.log.last_index();
        match successor {
            Some((id, matched)) if matched == last => {
                self.become_follower(self.term, None);
                self.send(id, MessageBody::TimeoutNow);
            }
            Some((id, _)) => {
                self.lead_transferee = Some(id);
                self.election_elapsed = 0;
                if self.maybe_commit() {
                    self.broadcast_append();
                } else {
                    self.send_append(id, true);
                }
            }
            None => self.become_follower(self.term, None),
        }
    }

    /// A leader in a joint configuration that is to be left automatically
    /// proposes the leaving change once nothing else is pending. Checked on
    /// every apply, not only when the joint entry is applied: a leader
    /// elected afterwards must leave it too.
    fn maybe_leave_joint(&mut self) {
        if self.leave_joint_due() {
            let (index, _) = self.append_entry(Payload::ConfChange(ConfChange::leave_joint()));
            self.pending_conf_index = index;
        }
    }

    fn leave_joint_due(&self) -> bool {
        self.role == Role::Leader
            && self.conf.is_joint()
            && self.conf.auto_leave
            && self.pending_conf_index <= self.log.applied
    }

    // ----- outputs -----

    fn message(&self, to: NodeId, body: MessageBody) -> Message {
        Message {
            from: self.id,
            to,
            term: self.term,
            body,
        }
    }

    fn send(&mut self, to: NodeId, body: MessageBody) {
        let m = self.message(to, body);
        self.messages.push(m);
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed,
            rejoining: self.rejoining,
        }
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            leader: self.leader,
            role: self.role,
        }
    }

    /// Whether [`ready`](Raft::ready) has anything for the caller.
    pub fn has_ready(&self) -> bool {
        !self.messages.is_empty()
            || !self.persisted_messages.is_empty()
            || self.log.has_unstable()
            || self.log.has_next_committed()
            || self.hard_state() != self.last_hard
            || self.soft_state() != self.last_soft
            || !self.read_states.is_empty()
            || !self.dropped_reads.is_empty()
            || self.append_due
            || self.leave_joint_due()
            || self.reads.broadcast_due
    }

    /// Everything the caller must do now (see [`Ready`] for the protocol).
    pub fn ready(&mut self) -> Ready {
        if self.role == Role::Leader
            && let Some(round) = self.reads.take_broadcast()
        {
            self.broadcast_heartbeat(round);
        }
        let mut committed_entries = Vec::new();
        while self.log.has_next_committed() {
            let batch = self.log.take_next_committed(self.config.max_append_bytes);
            if batch.is_empty() {
                break;
            }
            for e in &batch {
                if let Payload::ConfChange(cc) = &e.payload {
                    self.apply_conf_change(cc);
                }
            }
            committed_entries.extend(batch);
        }
        self.maybe_leave_joint();
        self.maybe_deferred_transfer();
        if self.role == Role::Leader && self.append_due {
            self.append_due = false;
            self.broadcast_append();
        }
        self.ready_number += 1;
        let number = self.ready_number;
        let soft = self.soft_state();
        let soft_state = (soft != self.last_soft).then_some(soft);
        self.last_soft = soft;
        let hard = self.hard_state();
        let hard_state = (hard != self.last_hard).then_some(hard);
        self.last_hard = hard;
        let (snapshot, entries) = self.log.take_unstable();
        let ready = Ready {
            number,
            soft_state,
            hard_state,
            snapshot,
            entries,
            messages: std::mem::take(&mut self.messages),
            persisted_messages: std::mem::take(&mut self.persisted_messages),
            committed_entries,
            read_states: std::mem::take(&mut self.read_states),
            dropped_reads: std::mem::take(&mut self.dropped_reads),
        };
        if ready.must_persist() {
            self.unpersisted.push_back(Unpersisted {
                number,
                last_entry: ready.last_entry(),
                snapshot: ready.snapshot.as_ref().map(|s| s.index),
                hard_state: ready.hard_state,
            });
        }
        ready
    }

    /// The writes of ready `number`, and of every ready before it, are durable.
    pub fn on_persisted(&mut self, number: u64) {
        while let Some(done) = self.unpersisted.front().copied() {
            if done.number > number {
                break;
            }
            self.unpersisted.pop_front();
            if let Some(index) = done.snapshot {
                self.log.snapshot_persisted(index);
            }
            if let Some((index, term)) = done.last_entry {
                self.log.persisted_to(index, term);
            }
            if let Some(hs) = done.hard_state
                && self.role == Role::Candidate
                && hs.term == self.term
                && hs.vote == Some(self.id)
            {
                self.votes.insert(self.id, true);
                self.count_votes();
            }
        }
        if self.role == Role::Leader {
            let persisted = self.log.persisted;
            if let Some(p) = self.progress.get_mut(&self.id)
                && p.maybe_update(persisted)
                && self.maybe_commit()
            {
                self.broadcast_append();
            }
        }
    }

    // ----- snapshots -----

    /// The metadata of a snapshot of the state machine taken now, after every
    /// entry handed out so far is applied.
    pub fn applied_snapshot_meta(&self) -> SnapshotMeta {
        let index = self.log.applied;
        SnapshotMeta {
            index,
            term: self.log.term(index).unwrap_or(Term::ZERO),
            conf_state: self.conf.clone(),
        }
    }

    /// The application has a durable snapshot described by `meta` (from
    /// [`applied_snapshot_meta`](Raft::applied_snapshot_meta)); entries up to
    /// its index are dropped and followers behind it get the snapshot.
    pub fn compact(&mut self, meta: SnapshotMeta) {
        let current = self.log.snapshot().index;
        if meta.index <= current
            || meta.index > self.log.applied
            || self.log.term(meta.index) != Some(meta.term)
        {
            return;
        }
        self.log.compact(meta);
    }

    /// The transport could not reach `to`: stop pipelining to it.
    pub fn report_unreachable(&mut self, to: NodeId) {
        if let Some(p) = self.progress.get_mut(&to)
            && p.state == ProgressState::Replicate
        {
            p.become_probe();
        }
    }

    /// The transport finished (or failed) sending a snapshot to `to`.
    pub fn report_snapshot(&mut self, to: NodeId, success: bool) {
        if let Some(p) = self.progress.get_mut(&to)
            && p.state == ProgressState::Snapshot
        {
            if !success {
                p.pending_snapshot = LogIndex::ZERO;
            }
            p.become_probe();
            // Wait for the follower's answer before probing again.
            p.probe_sent = success;
        }
    }
}

/// Whether an append's entries follow on from its previous entry, one index
/// at a time, with terms that never go down: the shape every correct leader
/// produces. Anything else is dropped before it can touch the log.
fn well_formed(m: &Message) -> bool {
    let MessageBody::Append {
        prev_index,
        prev_term,
        entries,
        ..
    } = &m.body
    else {
        return true;
    };
    let mut expected = prev_index.next();
    let mut term = *prev_term;
    for e in entries {
        if e.index != expected || e.term < term || e.term > m.term {
            return false;
        }
        expected = expected.next();
        term = e.term;
    }
    true
}
