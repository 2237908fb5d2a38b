//! The admin API (`admin.proto`), used by the operator and the CLI.
//!
//! Membership is per replica: adding a member changes every group. Each
//! group's change must be proposed by that group's leader, so the replica
//! that receives the request proposes where it leads and forwards a
//! single-group request to the leader of every other group, then waits until
//! each change is committed.

use super::forward::{Forwarder, was_forwarded};
use super::kv_service::{now_ms, to_status};
use crate::kv::{Command, MEMBERS_GROUP, Op};
use crate::node::request::{NodeError, Request as NodeRequest, Served};
use crate::node::{GroupView, NodeHandle};
use crate::raft::{ConfChange, ConfChangeKind, GroupId, LogIndex, NodeId, ProgressState, Role};
use crate::security::{AuthChannel, Authz, error_chain};
use bytes::Bytes;
use kuberaft_proto::admin as pb;
use kuberaft_proto::admin::admin_client::AdminClient;
use kuberaft_proto::admin::admin_server::{Admin, AdminServer};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct AdminService {
    node: NodeHandle,
    forwarder: Arc<Forwarder>,
    timeout: Duration,
    authz: Arc<Authz>,
}

impl AdminService {
    pub fn new(node: NodeHandle, forwarder: Arc<Forwarder>, timeout: Duration) -> AdminService {
        AdminService {
            node,
            forwarder,
            timeout,
            authz: Arc::new(Authz::open()),
        }
    }

    /// Requires the admin role for every admin RPC that changes something.
    pub fn with_authz(mut self, authz: Arc<Authz>) -> Self {
        self.authz = authz;
        self
    }

    pub fn into_server(self) -> AdminServer<AdminService> {
        AdminServer::new(self)
    }

    fn groups(&self, only: Option<u64>) -> Result<Vec<GroupId>, Status> {
        match only {
            Some(g) if g < u64::from(self.node.groups()) => Ok(vec![GroupId(g)]),
            Some(g) => Err(Status::invalid_argument(format!(
                "group {g} does not exist (this cluster has {} groups)",
                self.node.groups()
            ))),
            None => Ok((0..u64::from(self.node.groups())).map(GroupId).collect()),
        }
    }

    /// Proposes `change` in `group` here, or forwards it to the leader with
    /// `forward`; returns the index at which it committed.
    async fn change_group<F, Fut>(
        &self,
        group: GroupId,
        change: ConfChange,
        forwarded: bool,
        forward: F,
    ) -> Result<LogIndex, Status>
    where
        F: FnOnce(AdminClient<AuthChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<pb::MembershipResponse, Status>>,
    {
        let result = self
            .node
            .call(|reply| NodeRequest::ConfChange {
                group,
                change,
                reply,
            })
            .await;
        match result {
            Ok(Served { index, .. }) => self.wait_applied(group, index).await.map(|()| index),
            Err(NodeError::NotLeader {
                leader: Some(leader),
                ..
            }) if !forwarded && leader != self.node.config.id => {
                let ch = self.forwarder.channel(leader)?;
                let response = forward(AdminClient::new(ch)).await?;
                response
                    .committed
                    .get(&group.0)
                    .map(|i| LogIndex(*i))
                    .ok_or_else(|| {
                        Status::internal(format!(
                            "the leader of group {group} did not report the commit"
                        ))
                    })
            }
            Err(e) => Err(to_status(e)),
        }
    }

    /// Writes `member` (or, with `remove`, its removal) into the member
    /// directory of group 0, here if this replica leads group 0, else at
    /// its leader; returns the index at which it was applied.
    async fn record_member(
        &self,
        member: pb::Member,
        incarnation: u64,
        remove: bool,
        forwarded: bool,
    ) -> Result<LogIndex, Status> {
        let op = if remove {
            Op::RemoveMember { id: member.id }
        } else {
            Op::SetMember {
                id: member.id,
                name: Bytes::from(member.name.clone()),
                address: Bytes::from(member.address.clone()),
                incarnation,
            }
        };
        let command = Command {
            session: None,
            proposed_at_ms: now_ms(),
            op,
        }
        .encode();
        let call = self.node.call(|reply| NodeRequest::Propose {
            group: MEMBERS_GROUP,
            command,
            arrived: Instant::now(),
            reply,
        });
        let outcome = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "recording member {} in the member directory (group 0) did not commit within {:?}: \
                     group 0 may have lost its quorum",
                    member.id, self.timeout
                ))
            })?;
        match outcome {
            Ok((served, result)) => {
                result.map_err(|e| Status::failed_precondition(e.to_string()))?;
                Ok(served.index)
            }
            Err(NodeError::NotLeader {
                leader: Some(leader),
                ..
            }) if !forwarded && leader != self.node.config.id => {
                let ch = self.forwarder.channel(leader)?;
                let request = pb::UpdateMemberRequest {
                    member: Some(member),
                    remove,
                    incarnation,
                };
                let response = AdminClient::new(ch)
                    .update_member(Forwarder::mark(request))
                    .await?
                    .into_inner();
                response
                    .committed
                    .get(&MEMBERS_GROUP.0)
                    .map(|i| LogIndex(*i))
                    .ok_or_else(|| {
                        Status::internal("the leader of group 0 did not report the commit")
                    })
            }
            Err(e) => Err(to_status(e)),
        }
    }

    /// Asks the replica at `member.address` who it is: it must be node
    /// `member.id` of this cluster. Returns its incarnation.
    async fn identify(&self, member: &pb::Member, what: &str) -> Result<u64, Status> {
        let status = self.member_status(member, what).await?;
        if status.incarnation == 0 {
            return Err(Status::failed_precondition(format!(
                "{what}: the replica at {} reports no incarnation (an older version?); upgrade it first",
                member.address
            )));
        }
        Ok(status.incarnation)
    }

    /// The status of the replica at `member.address`, which must be node
    /// `member.id` of this cluster.
    async fn member_status(
        &self,
        member: &pb::Member,
        what: &str,
    ) -> Result<pb::NodeStatus, Status> {
        let endpoint = self
            .forwarder
            .endpoint(&member.address)
            .map_err(|e| {
                Status::invalid_argument(format!(
                    "{what}: bad address {:?}: {}",
                    member.address,
                    e.message()
                ))
            })?
            .timeout(self.timeout.min(Duration::from_secs(5)));
        let status = async {
            let channel = endpoint.connect().await.map_err(|e| error_chain(&e))?;
            AdminClient::new(self.forwarder.authenticate(channel))
                .status(pb::StatusRequest {})
                .await
                .map(Response::into_inner)
                .map_err(|s| s.message().to_string())
        }
        .await
        .map_err(|e| {
            Status::failed_precondition(format!(
                "{what}: cannot reach member {} at {} to confirm who it is ({e}); start it first \
                 (with initial_cluster_state: existing and an empty data directory), then retry",
                member.id, member.address
            ))
        })?;
        let config = &self.node.config;
        if status.cluster_id != config.cluster_id {
            return Err(Status::failed_precondition(format!(
                "{what}: the replica at {} belongs to cluster {:?}, not to this cluster {:?}; \
                 check the address, or give it cluster_id {:?}",
                member.address, status.cluster_id, config.cluster_id, config.cluster_id
            )));
        }
        if status.node_id != member.id {
            return Err(Status::failed_precondition(format!(
                "{what}: the replica at {} is node {}, not node {}; check the id or the address",
                member.address, status.node_id, member.id
            )));
        }
        Ok(status)
    }

    /// Before a voter is added everywhere: a replica that has not yet taken
    /// up its learner membership (still catching up, or rejoining after a
    /// lost volume and not yet re-admitted) would become a voter that
    /// cannot vote. Refused with what to wait for; a replica that cannot be
    /// reached is left to the group leaders' own checks.
    async fn check_promotable(&self, id: u64) -> Result<(), Status> {
        let member = self
            .node
            .status
            .borrow()
            .members
            .iter()
            .find(|m| m.id.0 == id)
            .map(|m| pb::Member {
                id,
                name: m.name.clone(),
                address: m.address.clone(),
                client_address: m.address.clone(),
            });
        let Some(member) = member else {
            return Ok(());
        };
        match self.member_status(&member, "promote").await {
            Ok(status) if status.awaiting_membership => Err(Status::failed_precondition(format!(
                "promote: replica {id} has not taken up its learner membership yet (it is catching up, \
                 or it lost its data and is not yet re-admitted); wait until `raft status` shows it as a \
                 learner that is not awaiting membership, then promote it"
            ))),
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(id, error = %e.message(), "promote: cannot ask the replica itself; promoting anyway");
                Ok(())
            }
        }
    }

    /// Waits until this replica has applied `index` of `group`.
    async fn wait_applied(&self, group: GroupId, index: LogIndex) -> Result<(), Status> {
        let mut status = self.node.status.clone();
        let wait = async {
            loop {
                let applied = status
                    .borrow()
                    .groups
                    .iter()
                    .find(|g| g.group == group)
                    .map(|g| g.status.applied);
                if applied.is_some_and(|a| a >= index) {
                    return Ok(());
                }
                if status.changed().await.is_err() {
                    return Err(Status::unavailable("the replica is shutting down"));
                }
            }
        };
        tokio::time::timeout(self.timeout, wait).await.map_err(|_| {
            Status::deadline_exceeded(format!(
                "the membership change of group {group} was proposed at index {index} but not committed within {:?}: \
                 the group may have lost its quorum",
                self.timeout
            ))
        })?
    }

    fn node_status(&self) -> pb::NodeStatus {
        let status = self.node.status.borrow().clone();
        let config = &self.node.config;
        pb::NodeStatus {
            node_id: config.id.0,
            name: config.name.clone(),
            cluster_id: config.cluster_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            groups: status
                .groups
                .iter()
                .map(|g| group_status(config.id, g))
                .collect(),
            members: status
                .members
                .iter()
                .map(|m| pb::Member {
                    id: m.id.0,
                    name: m.name.clone(),
                    address: m.address.clone(),
                    client_address: m.address.clone(),
                })
                .collect(),
            ready: status.readiness.ready,
            not_ready: status.readiness.failures(),
            incarnation: self.node.incarnation,
            group_count: config.groups,
            awaiting_membership: status
                .groups
                .iter()
                .any(|g| g.status.rejoining || g.status.conf_state.members().is_empty()),
        }
    }
}

/// A member to add or record: an id, a name, and a `host:port` address.
fn check_member(member: &pb::Member, what: &str) -> Result<(), Status> {
    if member.id == 0 {
        return Err(Status::invalid_argument(format!(
            "{what}: node id 0 is reserved; ids start at 1"
        )));
    }
    if member.name.trim().is_empty() || member.name.chars().any(char::is_whitespace) {
        return Err(Status::invalid_argument(format!(
            "{what}: member {} needs a name without spaces (e.g. \"delta\")",
            member.id
        )));
    }
    let port_ok = member
        .address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok || member.address.contains("://") || member.address.len() > 1024 {
        return Err(Status::invalid_argument(format!(
            "{what}: the address {:?} of member {} is not host:port (e.g. \"10.0.0.4:3264\" or \"raft-3.raft-peers:3264\")",
            member.address, member.id
        )));
    }
    Ok(())
}

fn group_status(me: NodeId, g: &GroupView) -> pb::GroupStatus {
    let s = &g.status;
    let ids = |v: &[NodeId]| v.iter().map(|n| n.0).collect::<Vec<_>>();
    let role = match s.role {
        Role::Leader => pb::Role::Leader,
        Role::Candidate => pb::Role::Candidate,
        Role::PreCandidate => pb::Role::PreCandidate,
        Role::Follower if s.conf_state.is_learner(me) => pb::Role::Learner,
        Role::Follower => pb::Role::Follower,
    };
    pb::GroupStatus {
        group: g.group.0,
        role: role as i32,
        term: s.term.0,
        leader: s.leader.map_or(0, |l| l.0),
        commit_index: s.commit.0,
        applied_index: s.applied.0,
        first_index: s.first_index.0,
        last_index: s.last_index.0,
        voters: ids(&s.conf_state.voters),
        voters_outgoing: ids(&s.conf_state.voters_outgoing),
        learners: ids(&s.conf_state.learners),
        progress: s
            .progress
            .iter()
            .map(|(node, p)| pb::FollowerProgress {
                node: node.0,
                match_index: p.matched.0,
                next_index: p.next.0,
                state: match p.state {
                    ProgressState::Probe => "probe",
                    ProgressState::Replicate => "replicate",
                    ProgressState::Snapshot => "snapshot",
                }
                .to_string(),
                recent_active: p.recent_active,
            })
            .collect(),
        state_digest: g.digest,
        snapshot_index: g.snapshot_index.0,
    }
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<pb::NodeStatus, Status>> + Send>>;

#[tonic::async_trait]
impl Admin for AdminService {
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::NodeStatus>, Status> {
        Ok(Response::new(self.node_status()))
    }

    async fn add_learner(
        &self,
        request: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        self.authz.require_admin(&request, "add a learner")?;
        let forwarded = was_forwarded(&request);
        let req = request.into_inner();
        let member = req.member.clone().ok_or_else(|| {
            Status::invalid_argument("add learner: the member (id, name, address) is missing")
        })?;
        check_member(&member, "add learner")?;
        if req.group.is_none() {
            // First tell every replica where the new member is, so the
            // leaders of all groups can reach it once it is added, and which
            // incarnation of it is admitted (a replica that lost its volume
            // votes again only once this names its new incarnation).
            let incarnation = self.identify(&member, "add learner").await?;
            self.record_member(member.clone(), incarnation, false, forwarded)
                .await?;
        }
        let mut committed = HashMap::new();
        for group in self.groups(req.group)? {
            let change = ConfChange::single(ConfChangeKind::AddLearner, NodeId(member.id));
            let single = pb::AddLearnerRequest {
                member: Some(member.clone()),
                group: Some(group.0),
            };
            let index = self
                .change_group(group, change, forwarded, |mut c| async move {
                    c.add_learner(Forwarder::mark(single))
                        .await
                        .map(Response::into_inner)
                })
                .await?;
            committed.insert(group.0, index.0);
        }
        Ok(Response::new(pb::MembershipResponse { committed }))
    }

    async fn promote(
        &self,
        request: Request<pb::MemberRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        self.authz.require_admin(&request, "promote a member")?;
        if request.get_ref().group.is_none() && !was_forwarded(&request) {
            self.check_promotable(request.get_ref().id).await?;
        }
        self.member_change(request, ConfChangeKind::AddVoter).await
    }

    async fn remove_member(
        &self,
        request: Request<pb::MemberRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        self.authz.require_admin(&request, "remove a member")?;
        let top_level = request.get_ref().group.is_none();
        let forwarded = was_forwarded(&request);
        let id = request.get_ref().id;
        let response = self.member_change(request, ConfChangeKind::Remove).await?;
        if top_level {
            // Out of every group: it is no longer a member anywhere.
            let gone = pb::Member {
                id,
                ..pb::Member::default()
            };
            self.record_member(gone, 0, true, forwarded).await?;
        }
        Ok(response)
    }

    async fn update_member(
        &self,
        request: Request<pb::UpdateMemberRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        self.authz.require_admin(&request, "update a member")?;
        let forwarded = was_forwarded(&request);
        let req = request.into_inner();
        let member = req.member.ok_or_else(|| {
            Status::invalid_argument("update member: the member (id, name, address) is missing")
        })?;
        let incarnation = if req.remove {
            if member.id == 0 {
                return Err(Status::invalid_argument(
                    "update member: node id 0 is reserved; ids start at 1",
                ));
            }
            0
        } else {
            check_member(&member, "update member")?;
            match req.incarnation {
                0 => self.identify(&member, "update member").await?,
                known => known,
            }
        };
        let index = self
            .record_member(member, incarnation, req.remove, forwarded)
            .await?;
        Ok(Response::new(pb::MembershipResponse {
            committed: HashMap::from([(MEMBERS_GROUP.0, index.0)]),
        }))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        self.authz.require_admin(&request, "transfer leadership")?;
        let forwarded = was_forwarded(&request);
        let req = request.into_inner();
        let to = (req.to != 0).then_some(NodeId(req.to));
        let led_here: Vec<GroupId> = {
            let status = self.node.status.borrow();
            status
                .groups
                .iter()
                .filter(|g| g.status.role == Role::Leader)
                .map(|g| g.group)
                .collect()
        };
        let groups = match req.group {
            Some(_) => self.groups(req.group)?,
            None => led_here,
        };
        let mut new_leaders = HashMap::new();
        for group in groups {
            let outcome = self
                .node
                .call(|reply| NodeRequest::TransferLeader { group, to, reply })
                .await;
            let target = match outcome {
                Ok(target) => target.0,
                // A named group led elsewhere: its leader moves it.
                Err(NodeError::NotLeader {
                    leader: Some(leader),
                    ..
                }) if !forwarded && leader != self.node.config.id => {
                    let single = pb::TransferLeaderRequest {
                        group: Some(group.0),
                        to: req.to,
                    };
                    let response = AdminClient::new(self.forwarder.channel(leader)?)
                        .transfer_leader(Forwarder::mark(single))
                        .await?
                        .into_inner();
                    *response.new_leaders.get(&group.0).ok_or_else(|| {
                        Status::internal(format!(
                            "the leader of group {group} did not report the transfer"
                        ))
                    })?
                }
                Err(e) => return Err(to_status(e)),
            };
            new_leaders.insert(group.0, target);
        }
        Ok(Response::new(pb::TransferLeaderResponse { new_leaders }))
    }

    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        self.authz.require_admin(&request, "take a snapshot")?;
        let req = request.into_inner();
        let mut snapshot_index = HashMap::new();
        for group in self.groups(req.group)? {
            let index = self
                .node
                .call(|reply| NodeRequest::Snapshot { group, reply })
                .await
                .map_err(to_status)?;
            snapshot_index.insert(group.0, index.0);
        }
        Ok(Response::new(pb::SnapshotResponse { snapshot_index }))
    }

    type WatchStatusStream = StatusStream;

    async fn watch_status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<StatusStream>, Status> {
        let service = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut status = service.node.status.clone();
            let mut last = None;
            loop {
                let now = leadership_and_membership(&status.borrow().groups);
                if last.as_ref() != Some(&now) {
                    last = Some(now);
                    if tx.send(Ok(service.node_status())).await.is_err() {
                        return; // the watcher went away
                    }
                }
                if status.changed().await.is_err() {
                    return; // the node stopped
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Per group: term, leader, voters and learners.
type Leadership = Vec<(GroupId, u64, Option<NodeId>, Vec<NodeId>, Vec<NodeId>)>;

/// What a status watcher is told about. Index movements alone do not wake
/// watchers.
fn leadership_and_membership(groups: &[GroupView]) -> Leadership {
    groups
        .iter()
        .map(|g| {
            let s = &g.status;
            (
                g.group,
                s.term.0,
                s.leader,
                s.conf_state.voters.clone(),
                s.conf_state.learners.clone(),
            )
        })
        .collect()
}

impl AdminService {
    async fn member_change(
        &self,
        request: Request<pb::MemberRequest>,
        kind: ConfChangeKind,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let forwarded = was_forwarded(&request);
        let req = request.into_inner();
        if req.id == 0 {
            return Err(Status::invalid_argument(
                "node id 0 is reserved; ids start at 1",
            ));
        }
        let mut committed = HashMap::new();
        for group in self.groups(req.group)? {
            let change = ConfChange::single(kind, NodeId(req.id));
            let single = pb::MemberRequest {
                id: req.id,
                group: Some(group.0),
            };
            let index = self
                .change_group(group, change, forwarded, |mut c| async move {
                    let r = match kind {
                        ConfChangeKind::Remove => c.remove_member(Forwarder::mark(single)).await,
                        _ => c.promote(Forwarder::mark(single)).await,
                    };
                    r.map(Response::into_inner)
                })
                .await?;
            committed.insert(group.0, index.0);
        }
        Ok(Response::new(pb::MembershipResponse { committed }))
    }
}
