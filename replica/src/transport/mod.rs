//! The peer transport: how Raft messages travel between replicas.
//!
//! Each node keeps one long-lived gRPC stream to every peer and sends on it
//! batches that carry messages of every group: everything queued for a peer
//! since the last send goes out as one batch, so heartbeats of all groups
//! share one message. Snapshots go on their own stream in chunks, so a large
//! snapshot never delays heartbeats.
//!
//! What it guarantees and what it does not: messages to one peer arrive in
//! order or not at all. Raft tolerates loss, so when a peer is slow or down
//! the bounded per-peer queue drops new messages instead of growing (and the
//! node is told the peer is unreachable, so the core stops pipelining to it).
//! Every batch names its cluster; batches of another cluster are refused with
//! a message that says which cluster they came from.

pub mod codec;
mod peer;
mod server;
mod snapshot;

pub use peer::PeerSender;
pub use server::PeerService;
pub(crate) use snapshot::{ChunkCheck, open_snapshot};
pub use snapshot::{ReceivedSnapshot, SnapshotSource};

use crate::raft::{GroupId, Message, NodeId};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How the transport of one node is set up.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    pub cluster_id: String,
    pub node: NodeId,
    /// Where each peer listens for peer traffic, as `host:port` (a DNS name
    /// is resolved at each connection attempt).
    pub peers: BTreeMap<NodeId, String>,
    /// The local address outgoing connections are bound to (tests give each
    /// replica its own loopback address).
    pub local_ip: Option<IpAddr>,
    /// Batches waiting for one peer before new ones are dropped.
    pub queue_batches: usize,
    /// The largest batch or snapshot chunk accepted or sent, in bytes.
    pub max_message_bytes: usize,
    pub connect_timeout: Duration,
    /// Where incoming snapshots are written while they arrive.
    pub snapshot_dir: PathBuf,
    /// With TLS, peers are dialled over https with our certificate, taken
    /// afresh at each connection (so a rotated one is used on reconnect).
    pub tls: Option<Arc<crate::security::Tls>>,
}

impl TransportConfig {
    pub fn new(cluster_id: impl Into<String>, node: NodeId, snapshot_dir: PathBuf) -> Self {
        TransportConfig {
            cluster_id: cluster_id.into(),
            node,
            peers: BTreeMap::new(),
            local_ip: None,
            queue_batches: 1024,
            max_message_bytes: 64 << 20,
            connect_timeout: Duration::from_secs(1),
            snapshot_dir,
            tls: None,
        }
    }
}

/// What the transport hands the node's event loop.
#[derive(Debug)]
pub enum Inbound {
    /// The messages of one batch, all from `from`.
    Batch {
        from: NodeId,
        messages: Vec<(GroupId, Message)>,
    },
    /// A snapshot that arrived whole and checksummed; `message` is the
    /// `InstallSnapshot` to step into the group once the data is adopted.
    Snapshot(ReceivedSnapshot),
}

/// What the transport tells the node about delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportEvent {
    /// Messages to this peer were dropped (down, slow, or unreachable).
    Unreachable(NodeId),
    /// A snapshot was sent (or failed to be).
    SnapshotSent {
        to: NodeId,
        group: GroupId,
        ok: bool,
    },
}

/// The sending half of a node's transport: one sender per peer.
pub struct Transport {
    config: TransportConfig,
    events: mpsc::UnboundedSender<TransportEvent>,
    peers: BTreeMap<NodeId, PeerSender>,
}

impl Transport {
    /// Starts a sender task per peer. Must be called inside a tokio runtime.
    pub fn start(config: &TransportConfig, events: mpsc::UnboundedSender<TransportEvent>) -> Self {
        let mut transport = Transport {
            config: config.clone(),
            events,
            peers: BTreeMap::new(),
        };
        for (&id, addr) in &config.peers {
            transport.set_peer(id, addr.clone());
        }
        transport
    }

    /// Queues messages for `to`. Never blocks; drops (and reports the peer
    /// unreachable) when the peer's queue is full.
    pub fn send(&self, to: NodeId, messages: Vec<(GroupId, Message)>) {
        if let Some(peer) = self.peers.get(&to) {
            peer.send(messages);
        }
    }

    /// Streams a snapshot's data from `source` to `to`; the outcome arrives
    /// as [`TransportEvent::SnapshotSent`].
    pub fn send_snapshot(
        &self,
        to: NodeId,
        group: GroupId,
        message: Message,
        source: SnapshotSource,
    ) {
        match self.peers.get(&to) {
            Some(peer) => peer.send_snapshot(group, message, source),
            None => {
                tracing::warn!(peer = %to, %group, "no address for the peer; the snapshot is not sent")
            }
        }
    }

    /// Adds or re-addresses a peer (a membership change). Re-addressing
    /// replaces its stream; messages queued for the old address are lost,
    /// which Raft tolerates.
    pub fn set_peer(&mut self, id: NodeId, addr: String) {
        if id == self.config.node || self.peers.get(&id).is_some_and(|p| p.addr() == addr) {
            return;
        }
        let sender = PeerSender::start(&self.config, id, addr, self.events.clone());
        self.peers.insert(id, sender);
    }

    /// Stops sending to a peer (it left the cluster).
    pub fn remove_peer(&mut self, id: NodeId) {
        self.peers.remove(&id);
    }

    /// The peers messages can be sent to, with their addresses.
    pub fn peers(&self) -> impl Iterator<Item = (NodeId, &str)> {
        self.peers.iter().map(|(id, p)| (*id, p.addr()))
    }
}
