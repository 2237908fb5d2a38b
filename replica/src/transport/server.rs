//! The receiving side: the `Peer` gRPC service.

use super::codec::decode_message;
use super::snapshot::receive_snapshot;
use super::{Inbound, TransportConfig};
use crate::metrics::Metrics;
use crate::raft::NodeId;
use crate::security::Authz;
use kuberaft_proto::raft as pb;
use kuberaft_proto::raft::peer_server::{Peer, PeerServer};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Receives batches and snapshots from peers and hands them to the node.
#[derive(Clone)]
pub struct PeerService {
    config: Arc<TransportConfig>,
    inbox: mpsc::Sender<Inbound>,
    metrics: Option<Metrics>,
    authz: Arc<Authz>,
}

impl PeerService {
    pub fn new(config: TransportConfig, inbox: mpsc::Sender<Inbound>) -> Self {
        PeerService {
            config: Arc::new(config),
            inbox,
            metrics: None,
            authz: Arc::new(Authz::open()),
        }
    }

    /// Refuses connections whose certificate names no member (with TLS).
    pub fn with_authz(mut self, authz: Arc<Authz>) -> Self {
        self.authz = authz;
        self
    }

    /// Counts refused traffic in `metrics` (`raft_peer_rejected_total`).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn rejected(&self, reason: &str) {
        if let Some(m) = &self.metrics {
            m.peer_rejected.with_label_values(&[reason]).inc();
        }
    }

    /// The tonic service, with the configured message size limits.
    pub fn into_server(self) -> PeerServer<PeerService> {
        let limit = self.config.max_message_bytes;
        PeerServer::new(self)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit)
    }

    /// Checks that a batch or chunk is meant for this node of this cluster.
    pub(crate) fn check_addressee(
        &self,
        cluster_id: &str,
        from: u64,
        to: u64,
    ) -> Result<NodeId, Status> {
        if cluster_id != self.config.cluster_id {
            self.rejected("other_cluster");
            tracing::warn!(
                their_cluster = cluster_id,
                our_cluster = %self.config.cluster_id,
                from,
                "refused a peer of another cluster"
            );
            return Err(Status::permission_denied(format!(
                "this replica belongs to cluster {:?}, but node {from} sent a message of cluster {cluster_id:?}: \
                 the two replicas are configured for different clusters (check cluster_id and peer addresses)",
                self.config.cluster_id
            )));
        }
        if to != self.config.node.0 {
            self.rejected("wrong_node");
            return Err(Status::failed_precondition(format!(
                "message for node {to} arrived at node {}: the sender's peer list has a wrong address",
                self.config.node
            )));
        }
        if from == 0 || from == to {
            self.rejected("malformed");
            return Err(Status::invalid_argument(format!(
                "invalid sender node id {from}"
            )));
        }
        Ok(NodeId(from))
    }
}

type AckStream = Pin<Box<dyn Stream<Item = Result<pb::BatchAck, Status>> + Send>>;

#[tonic::async_trait]
impl Peer for PeerService {
    type StreamStream = AckStream;

    async fn stream(
        &self,
        request: Request<Streaming<pb::Batch>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        self.authz.check_peer(&request)?;
        let mut batches = request.into_inner();
        let (acks, rx) = mpsc::channel(16);
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                // End the stream as soon as the node stops, not only when
                // the next batch finds the inbox closed: a graceful server
                // shutdown waits for every open stream.
                let next = tokio::select! {
                    biased;
                    _ = this.inbox.closed() => return,
                    next = batches.message() => next,
                };
                let batch = match next {
                    Ok(Some(batch)) => batch,
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(error = %status, "peer stream ended");
                        // Tell the sender why (an undecodable batch, say)
                        // instead of ending the stream as if all were well.
                        let _ = acks.send(Err(status)).await;
                        return;
                    }
                };
                let from = match this.check_addressee(&batch.cluster_id, batch.from, batch.to) {
                    Ok(from) => from,
                    Err(status) => {
                        let _ = acks.send(Err(status)).await;
                        return;
                    }
                };
                let mut messages = Vec::with_capacity(batch.messages.len());
                for m in batch.messages {
                    match decode_message(from, this.config.node, m) {
                        Ok(decoded) => messages.push(decoded),
                        Err(e) => {
                            this.rejected("malformed");
                            tracing::warn!(peer = %from, error = %e, "dropped a malformed message");
                        }
                    }
                }
                if this
                    .inbox
                    .send(Inbound::Batch { from, messages })
                    .await
                    .is_err()
                {
                    return; // the node is shutting down
                }
                if acks
                    .send(Ok(pb::BatchAck { seq: batch.seq }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SnapshotAck>, Status> {
        self.authz.check_peer(&request)?;
        let received = receive_snapshot(self, request.into_inner()).await?;
        self.inbox
            .send(Inbound::Snapshot(received))
            .await
            .map_err(|_| Status::unavailable("the replica is shutting down"))?;
        Ok(Response::new(pb::SnapshotAck {
            accepted: true,
            error: String::new(),
        }))
    }
}

impl PeerService {
    pub(super) fn config(&self) -> &TransportConfig {
        &self.config
    }
}
