//! One peer's sending side: a bounded queue drained by a task that keeps a
//! stream to the peer open, reconnecting with backoff.

use super::codec::encode_message;
use super::snapshot::{SnapshotSource, stream_snapshot};
use super::{TransportConfig, TransportEvent};
use crate::raft::{GroupId, Message, NodeId};
use kuberaft_proto::raft as pb;
use kuberaft_proto::raft::peer_client::PeerClient;
use prost::Message as _;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

const MIN_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The handle the node uses to send to one peer. Dropping it stops the task.
pub struct PeerSender {
    addr: String,
    queue: mpsc::Sender<Vec<(GroupId, Message)>>,
    snapshots: mpsc::UnboundedSender<(GroupId, Message, SnapshotSource)>,
    to: NodeId,
    events: mpsc::UnboundedSender<TransportEvent>,
}

impl PeerSender {
    pub fn start(
        config: &TransportConfig,
        to: NodeId,
        addr: String,
        events: mpsc::UnboundedSender<TransportEvent>,
    ) -> PeerSender {
        let (queue, rx) = mpsc::channel(config.queue_batches.max(1));
        let (snapshots, snap_rx) = mpsc::unbounded_channel();
        tokio::spawn(run(config.clone(), to, addr.clone(), rx, events.clone()));
        tokio::spawn(run_snapshots(
            config.clone(),
            to,
            addr.clone(),
            snap_rx,
            events.clone(),
        ));
        PeerSender {
            addr,
            queue,
            snapshots,
            to,
            events,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn send(&self, messages: Vec<(GroupId, Message)>) {
        if self.queue.try_send(messages).is_err() {
            let _ = self.events.send(TransportEvent::Unreachable(self.to));
        }
    }

    pub fn send_snapshot(&self, group: GroupId, message: Message, source: SnapshotSource) {
        let _ = self.snapshots.send((group, message, source));
    }
}

/// The endpoint of a peer, with the TLS material current now.
pub(super) fn endpoint(config: &TransportConfig, addr: &str) -> Endpoint {
    // Addresses are validated when the configuration is loaded; one that
    // still does not form a URI fails every connection attempt, loudly.
    crate::security::replica_endpoint(config.tls.as_deref(), addr)
        .unwrap_or_else(|e| {
            tracing::error!(peer = addr, error = %e, "invalid peer address");
            Endpoint::from_static("http://invalid.invalid:1")
        })
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .local_address(config.local_ip)
}

/// Keeps a stream to the peer and drains the queue into it, coalescing
/// everything queued into one batch per send.
async fn run(
    config: TransportConfig,
    to: NodeId,
    addr: String,
    mut queue: mpsc::Receiver<Vec<(GroupId, Message)>>,
    events: mpsc::UnboundedSender<TransportEvent>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut seq = 0u64;
    loop {
        let channel = match endpoint(&config, &addr).connect().await {
            Ok(channel) => channel,
            Err(e) => {
                tracing::debug!(peer = %to, error = %e, "cannot connect to peer");
                // Messages queued meanwhile would be stale by the time we
                // connect: drop them, Raft resends what still matters.
                if drain(&mut queue) {
                    let _ = events.send(TransportEvent::Unreachable(to));
                }
                if queue.is_closed() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        match stream(&config, to, channel, &mut queue, &mut seq).await {
            StreamEnd::Closed => return,
            StreamEnd::Refused(reason) => {
                // Refused by the peer (certificate, cluster): retrying at
                // once would only repeat it; back off and say so.
                if backoff == MIN_BACKOFF {
                    tracing::warn!(peer = %to, %reason, "the peer refuses our traffic");
                }
                let _ = events.send(TransportEvent::Unreachable(to));
                drain(&mut queue);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            StreamEnd::Broken(reason) => {
                backoff = MIN_BACKOFF;
                tracing::debug!(peer = %to, %reason, "peer stream broke; reconnecting");
                let _ = events.send(TransportEvent::Unreachable(to));
            }
        }
    }
}

enum StreamEnd {
    /// The node dropped the sender: stop.
    Closed,
    Broken(String),
    /// The peer refused us (PERMISSION_DENIED, UNAUTHENTICATED).
    Refused(String),
}

async fn stream(
    config: &TransportConfig,
    to: NodeId,
    channel: Channel,
    queue: &mut mpsc::Receiver<Vec<(GroupId, Message)>>,
    seq: &mut u64,
) -> StreamEnd {
    let mut client = PeerClient::new(channel)
        .max_encoding_message_size(config.max_message_bytes)
        .max_decoding_message_size(config.max_message_bytes);
    let (tx, rx) = mpsc::channel::<pb::Batch>(16);
    // The call runs in its own task and drains the peer's acknowledgements
    // (an unread ack stream would stall the peer); when it ends, sending
    // into `tx` fails and we learn why from its result.
    let mut call = tokio::spawn(async move {
        let mut acks = client.stream(ReceiverStream::new(rx)).await?.into_inner();
        while acks.message().await?.is_some() {}
        Ok::<(), tonic::Status>(())
    });
    loop {
        // The peer may end the call while we have nothing to send (it is
        // shutting down, or refused us): notice at once, and drop `tx` so
        // our half of the stream closes too. A half-open stream would keep
        // the peer's graceful shutdown waiting forever.
        let first = tokio::select! {
            biased;
            ended = &mut call => return call_end(ended),
            first = queue.recv() => first,
        };
        let Some(first) = first else {
            return StreamEnd::Closed;
        };
        let mut messages: Vec<pb::GroupMessage> = Vec::new();
        let mut bytes = encode_into(first, &mut messages);
        // Coalesce whatever else is queued, up to the size limit.
        while bytes < config.max_message_bytes / 2 {
            match queue.try_recv() {
                Ok(more) => bytes += encode_into(more, &mut messages),
                Err(_) => break,
            }
        }
        *seq += 1;
        let batch = pb::Batch {
            cluster_id: config.cluster_id.clone(),
            from: config.node.0,
            to: to.0,
            seq: *seq,
            messages,
        };
        if tx.send(batch).await.is_err() {
            return call_end(call.await);
        }
    }
}

fn call_end(ended: Result<Result<(), tonic::Status>, tokio::task::JoinError>) -> StreamEnd {
    match ended {
        Ok(Err(status))
            if matches!(
                status.code(),
                tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
            ) =>
        {
            StreamEnd::Refused(status.message().to_string())
        }
        Ok(Err(status)) => StreamEnd::Broken(status.message().to_string()),
        _ => StreamEnd::Broken("stream closed".to_string()),
    }
}

/// Encodes `batch` onto `out`; returns the encoded size.
fn encode_into(batch: Vec<(GroupId, Message)>, out: &mut Vec<pb::GroupMessage>) -> usize {
    let mut bytes = 0;
    for (group, m) in batch {
        let wire = encode_message(group, &m);
        bytes += wire.encoded_len();
        out.push(wire);
    }
    bytes
}

/// Empties the queue; true if anything was dropped.
fn drain(queue: &mut mpsc::Receiver<Vec<(GroupId, Message)>>) -> bool {
    let mut dropped = false;
    while queue.try_recv().is_ok() {
        dropped = true;
    }
    dropped
}

async fn run_snapshots(
    config: TransportConfig,
    to: NodeId,
    addr: String,
    mut requests: mpsc::UnboundedReceiver<(GroupId, Message, SnapshotSource)>,
    events: mpsc::UnboundedSender<TransportEvent>,
) {
    while let Some((group, message, source)) = requests.recv().await {
        let endpoint = endpoint(&config, &addr);
        let result = stream_snapshot(&config, to, &endpoint, group, &message, source).await;
        if let Err(e) = &result {
            tracing::warn!(peer = %to, %group, error = %e, "sending snapshot failed");
        }
        let _ = events.send(TransportEvent::SnapshotSent {
            to,
            group,
            ok: result.is_ok(),
        });
    }
}
