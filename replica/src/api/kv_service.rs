//! The client API (`kv.proto`): validates requests (see [`kv_request`]),
//! routes each key to its group, and turns node outcomes into gRPC statuses.
//!
//! [`kv_request`]: super::kv_request
//!
//! Status codes and what a client should do:
//! - `InvalidArgument`: the request is wrong (key or value too large...);
//!   do not retry;
//! - `FailedPrecondition`: the state machine refused the command (a stale
//!   or expired session); start a new session;
//! - `Unavailable`: no leader right now, or this replica is shutting down;
//!   retry, perhaps elsewhere;
//! - `Aborted`: leadership changed while the write was in flight; it may or
//!   may not have been applied; retry with the same (client, seq), which is
//!   applied at most once;
//! - `DeadlineExceeded`: not committed in time (the cluster may have lost
//!   its quorum).

use super::forward::{Forwarder, was_forwarded};
use super::kv_request;
use crate::kv::{self, Command, Op};
use crate::node::NodeHandle;
use crate::node::request::{NodeError, Query, ReadResult, Request as NodeRequest, Served};
use crate::raft::GroupId;
use bytes::Bytes;
use kuberaft_proto::kv as pb;
use kuberaft_proto::kv::kv_client::KvClient;
use kuberaft_proto::kv::kv_server::{Kv, KvServer};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

const DEFAULT_SCAN_LIMIT: u32 = 1000;

#[derive(Clone)]
pub struct KvService {
    node: NodeHandle,
    forwarder: Arc<Forwarder>,
    /// How long a request may wait for its commit or read index.
    timeout: Duration,
}

impl KvService {
    pub fn new(node: NodeHandle, forwarder: Arc<Forwarder>, timeout: Duration) -> KvService {
        KvService {
            node,
            forwarder,
            timeout,
        }
    }

    pub fn into_server(self, max_message_bytes: usize) -> KvServer<KvService> {
        KvServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }

    fn group_of(&self, key: &[u8]) -> GroupId {
        kv::group_for_key(key, self.node.groups())
    }

    /// Proposes `op` and waits for it to be applied.
    async fn write(
        &self,
        header: Option<pb::WriteHeader>,
        op: Op,
    ) -> Result<(Served, kv::Response), WriteOutcome> {
        let session = kv_request::session(header).map_err(WriteOutcome::Status)?;
        let group = op.group(self.node.groups());
        let command = Command {
            session,
            proposed_at_ms: now_ms(),
            op,
        }
        .encode();
        let call = self.node.call(|reply| NodeRequest::Propose {
            group,
            command,
            arrived: Instant::now(),
            reply,
        });
        let (served, result) = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| WriteOutcome::Status(deadline(group, self.timeout)))?
            .map_err(WriteOutcome::Node)?;
        let response =
            result.map_err(|e| WriteOutcome::Status(Status::failed_precondition(e.to_string())))?;
        Ok((served, response))
    }

    async fn read(
        &self,
        group: GroupId,
        query: Query,
        consistency: i32,
    ) -> Result<(Served, ReadResult), Status> {
        let linearizable = consistency != pb::Consistency::Serializable as i32;
        let call = self.node.call(|reply| NodeRequest::Read {
            group,
            query,
            linearizable,
            arrived: Instant::now(),
            reply,
        });
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| deadline(group, self.timeout))?
            .map_err(to_status)
    }

    /// Forwards a write this replica cannot serve to the group's leader.
    fn leader_channel<T>(
        &self,
        request: &Request<T>,
        error: NodeError,
    ) -> Result<crate::security::AuthChannel, Status> {
        match error {
            NodeError::NotLeader {
                leader: Some(leader),
                ..
            } if !was_forwarded(request) && leader != self.node.config.id => {
                self.forwarder.channel(leader)
            }
            other => Err(to_status(other)),
        }
    }

    fn header(&self, served: Served) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            group: served.group.0,
            term: served.term.0,
            index: served.index.0,
            leader: served.leader.map_or(0, |l| l.0),
            replica: self.node.config.id.0,
        })
    }
}

/// Why a write did not produce a response here.
enum WriteOutcome {
    /// The node could not serve it (perhaps forward it).
    Node(NodeError),
    Status(Status),
}

pub fn to_status(e: NodeError) -> Status {
    match e {
        NodeError::NotLeader { group, leader } => Status::unavailable(match leader {
            Some(l) => format!("this replica does not lead group {group} (node {l} does); retry"),
            None => format!("group {group} has no leader right now; retry"),
        }),
        NodeError::NoLeader { group } => {
            Status::unavailable(format!("group {group} has no leader right now; retry"))
        }
        NodeError::Aborted { group } => Status::aborted(format!(
            "group {group} changed leader while the request was in flight; retry (a retried write with the same client id and seq is applied at most once)"
        )),
        NodeError::UnknownGroup(g) => Status::invalid_argument(format!("group {g} does not exist")),
        NodeError::Invalid(why) => Status::invalid_argument(why),
        NodeError::ShuttingDown => {
            Status::unavailable("the replica is shutting down; retry another replica")
        }
    }
}

fn deadline(group: GroupId, timeout: Duration) -> Status {
    Status::deadline_exceeded(format!(
        "group {group} did not answer within {timeout:?}: it may have lost its quorum"
    ))
}

/// The proposal time to stamp on a command: the wall clock in ms.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The requests themselves; [`Kv`] wraps each in [`KvService::observed`].
impl KvService {
    async fn serve_put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let req = request.get_ref();
        let op = kv_request::put_op(req)?;
        match self.write(req.header, op).await {
            Ok((served, _)) => Ok(Response::new(pb::PutResponse {
                header: self.header(served),
            })),
            Err(WriteOutcome::Status(s)) => Err(s),
            Err(WriteOutcome::Node(e)) => {
                let ch = self.leader_channel(&request, e)?;
                KvClient::new(ch)
                    .put(Forwarder::mark(request.into_inner()))
                    .await
            }
        }
    }

    async fn serve_delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let req = request.get_ref();
        let op = kv_request::delete_op(req)?;
        match self.write(req.header, op).await {
            Ok((served, response)) => Ok(Response::new(pb::DeleteResponse {
                header: self.header(served),
                deleted: matches!(response, kv::Response::Delete { existed: true }),
            })),
            Err(WriteOutcome::Status(s)) => Err(s),
            Err(WriteOutcome::Node(e)) => {
                let ch = self.leader_channel(&request, e)?;
                KvClient::new(ch)
                    .delete(Forwarder::mark(request.into_inner()))
                    .await
            }
        }
    }

    async fn serve_compare_and_swap(
        &self,
        request: Request<pb::CompareAndSwapRequest>,
    ) -> Result<Response<pb::CompareAndSwapResponse>, Status> {
        let req = request.get_ref();
        let op = kv_request::compare_and_swap_op(req)?;
        match self.write(req.header, op).await {
            Ok((served, response)) => {
                let (swapped, after) = match response {
                    kv::Response::CompareAndSwap { swapped, current } => (swapped, current),
                    _ => (false, None),
                };
                // The proto reports the value *before* the request: unchanged
                // when not swapped, the expected value when swapped.
                let current = if swapped { req.expected.clone() } else { after };
                Ok(Response::new(pb::CompareAndSwapResponse {
                    header: self.header(served),
                    swapped,
                    current,
                }))
            }
            Err(WriteOutcome::Status(s)) => Err(s),
            Err(WriteOutcome::Node(e)) => {
                let ch = self.leader_channel(&request, e)?;
                KvClient::new(ch)
                    .compare_and_swap(Forwarder::mark(request.into_inner()))
                    .await
            }
        }
    }

    async fn serve_get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let req = request.into_inner();
        kv_request::check_get(&req)?;
        let group = self.group_of(&req.key);
        let (served, result) = self
            .read(group, Query::Get { key: req.key }, req.consistency)
            .await?;
        let value = match result {
            ReadResult::Value(v) => v,
            ReadResult::Page(_) => None,
        };
        Ok(Response::new(pb::GetResponse {
            header: self.header(served),
            found: value.is_some(),
            value: value.unwrap_or_default(),
        }))
    }

    async fn serve_scan(
        &self,
        request: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        let req = request.into_inner();
        let limit = match req.limit {
            0 => DEFAULT_SCAN_LIMIT,
            n => n.min(kv::MAX_SCAN_LIMIT as u32),
        } as usize;
        // Keys are spread by hash, so a prefix lives in every group: ask
        // each for its first `limit` keys after `start_after`, merge, cut.
        let mut headers = Vec::new();
        let mut pairs: Vec<(Bytes, Bytes)> = Vec::new();
        let mut more = false;
        for g in 0..u64::from(self.node.groups()) {
            let query = Query::Scan {
                prefix: req.prefix.clone(),
                start_after: req.start_after.clone(),
                limit,
            };
            let (served, result) = self.read(GroupId(g), query, req.consistency).await?;
            headers.extend(self.header(served));
            if let ReadResult::Page(page) = result {
                more |= page.next.is_some();
                pairs.extend(page.entries);
            }
        }
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        if pairs.len() > limit {
            pairs.truncate(limit);
            more = true;
        }
        Ok(Response::new(pb::ScanResponse {
            headers,
            pairs: pairs
                .into_iter()
                .map(|(key, value)| pb::KeyValue { key, value })
                .collect(),
            more,
        }))
    }
}

impl KvService {
    /// Counts the request by method and outcome and times it.
    async fn observed<T>(
        &self,
        method: &'static str,
        request: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let started = Instant::now();
        let result = request.await;
        let code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        let metrics = &self.node.metrics;
        metrics
            .client_requests
            .with_label_values(&[method, &format!("{code:?}")])
            .inc();
        metrics
            .client_request_duration
            .with_label_values(&[method])
            .observe(started.elapsed().as_secs_f64());
        result
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        self.observed("put", self.serve_put(request)).await
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.observed("delete", self.serve_delete(request)).await
    }

    async fn compare_and_swap(
        &self,
        request: Request<pb::CompareAndSwapRequest>,
    ) -> Result<Response<pb::CompareAndSwapResponse>, Status> {
        self.observed("compare_and_swap", self.serve_compare_and_swap(request))
            .await
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        self.observed("get", self.serve_get(request)).await
    }

    async fn scan(
        &self,
        request: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        self.observed("scan", self.serve_scan(request)).await
    }
}
