//! The node: one event loop that owns every group's state on this replica.
//!
//! [`Node::start`] recovers (or bootstraps) every group from the data
//! directory, starts the group-commit thread and the peer transport, and
//! spawns the [event loop](event_loop). The API layer talks to the loop
//! through a [`NodeHandle`]; nothing else touches the state.
//!
//! Bootstrap rule (see ARCHITECTURE.md, "Cluster identity and bootstrap"):
//! a group starts from its initial members only when the data directory is
//! empty *and* the configuration says the cluster is new. A replica whose
//! data directory is empty in an existing cluster (a lost volume) starts
//! with no membership: it neither votes nor campaigns until a leader sends
//! it a snapshot, i.e. until it is added back.

mod directory;
mod event_loop;
pub mod health;
pub mod request;
mod snapshots;

use crate::kv::{KvStateMachine, MEMBERS_GROUP, SessionPolicy};
use crate::metrics::Metrics;
use crate::multi::MultiRaft;
use crate::raft::{self, GroupId, LogIndex, NodeId, Raft, RecoveredState, Status};
use crate::storage::{GroupWrite, Wal};
use crate::transport::{Inbound, Transport, TransportConfig};
use directory::Directory;
pub use event_loop::StorageFailed;
use event_loop::{Channels, EventLoop};
use health::{Heartbeat, Readiness};
use request::{NodeError, Request};
use snapshots::Snapshots;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// A member of the cluster as the node knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub id: NodeId,
    pub name: String,
    /// host:port of its peer (and client, admin) gRPC listener.
    pub address: String,
}

/// Whether this replica may create the cluster's groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrap from the initial members if the data directory is empty.
    New,
    /// Never bootstrap: an empty data directory means this replica waits to
    /// be added (back) by the cluster.
    Existing,
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub cluster_id: String,
    pub id: NodeId,
    pub name: String,
    pub groups: u32,
    pub tick: Duration,
    /// The core's settings; `id` and `seed` are set per group.
    pub raft: raft::Config,
    /// Batch concurrent client requests into one turn (one append).
    pub aggregate: bool,
    pub max_requests_per_turn: usize,
    /// Take a snapshot of a group after this many applied entries.
    pub snapshot_threshold: u64,
    pub data_dir: PathBuf,
    pub members: Vec<Member>,
    /// The local address outgoing connections are bound to.
    pub local_ip: Option<std::net::IpAddr>,
    pub cluster_state: ClusterState,
    /// How long connecting to a peer may take (the original `timeout`).
    pub rpc_timeout: Duration,
}

/// One group as the status endpoints show it.
#[derive(Clone, Debug)]
pub struct GroupView {
    pub group: GroupId,
    pub status: Status,
    pub snapshot_index: LogIndex,
    pub digest: u64,
}

/// What the loop publishes every tick.
#[derive(Clone, Debug, Default)]
pub struct NodeStatus {
    pub groups: Vec<GroupView>,
    pub readiness: Readiness,
    /// The member directory: every member and where it is reached.
    pub members: Vec<Member>,
}

/// How the API layer reaches the event loop.
#[derive(Clone)]
pub struct NodeHandle {
    requests: mpsc::Sender<Request>,
    pub status: watch::Receiver<NodeStatus>,
    pub readiness: watch::Receiver<Readiness>,
    pub heartbeat: Heartbeat,
    pub metrics: Metrics,
    pub config: NodeConfig,
    /// This replica's data directory incarnation (`Wal::incarnation`).
    pub incarnation: u64,
}

impl NodeHandle {
    /// Sends a request built around a reply channel and waits for the answer.
    pub async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, NodeError>>) -> Request,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(make(tx))
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        rx.await.map_err(|_| NodeError::ShuttingDown)?
    }

    /// The number of groups keys are spread over.
    pub fn groups(&self) -> u32 {
        self.config.groups
    }
}

/// A running node.
pub struct Node {
    pub handle: NodeHandle,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), StorageFailed>>,
    /// Closed when the event loop ends; holds why, if it failed.
    ended: watch::Receiver<Option<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot start group {group}: {reason}")]
    Group { group: GroupId, reason: String },
    #[error("cannot bootstrap the cluster: {0}")]
    Bootstrap(String),
}

impl Node {
    /// Recovers every group from the write-ahead log and the snapshot store,
    /// or bootstraps them (see the module documentation), and starts the
    /// loop. `inbox` receives what the peer service gets from the network.
    pub async fn start(
        config: NodeConfig,
        mut wal: Wal,
        mut transport_config: TransportConfig,
        inbox: mpsc::Receiver<Inbound>,
        metrics: Metrics,
    ) -> Result<Node, StartError> {
        let fresh = wal.is_fresh();
        let recovered = wal.take_recovered();
        let (snapshot_done_tx, snapshot_done) = mpsc::unbounded_channel();
        let policy = SessionPolicy::default();
        let snapshots = Snapshots::new(wal.snapshots().clone(), policy, snapshot_done_tx);
        Snapshots::clean_incoming(&transport_config.snapshot_dir);
        let mut multi = MultiRaft::new(config.id);
        let mut machines = BTreeMap::new();
        let mut bootstrap_writes = Vec::new();
        for g in 0..u64::from(config.groups) {
            let group = GroupId(g);
            let state = match recovered.get(&group) {
                Some(state) => state.clone(),
                None if fresh && config.cluster_state == ClusterState::New => {
                    let voters = config.members.iter().map(|m| m.id);
                    let state = RecoveredState::bootstrap(voters);
                    let meta = state.snapshot.clone().expect("bootstrap has a snapshot");
                    snapshots
                        .write_empty(group, &meta)
                        .map_err(StartError::Bootstrap)?;
                    bootstrap_writes.push(GroupWrite {
                        group,
                        snapshot: Some(meta),
                        entries: Vec::new(),
                        hard_state: Some(state.hard_state),
                    });
                    state
                }
                None if fresh => {
                    // An empty disk in a running cluster: this replica may
                    // have voted before it lost its data, so it must not
                    // vote until it is re-admitted as a learner. That
                    // restriction is durable from the start.
                    let state = RecoveredState::rejoining();
                    bootstrap_writes.push(GroupWrite {
                        group,
                        snapshot: None,
                        entries: Vec::new(),
                        hard_state: Some(state.hard_state),
                    });
                    state
                }
                None => RecoveredState::default(),
            };
            let machine = match &state.snapshot {
                Some(meta) => snapshots
                    .load(group, meta)
                    .map_err(|reason| StartError::Group { group, reason })?,
                None => KvStateMachine::new(group, policy),
            };
            let mut raft_config = config.raft.clone();
            raft_config.id = config.id;
            raft_config.seed = config.id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ g;
            let raft = Raft::new(raft_config, state).map_err(|e| StartError::Group {
                group,
                reason: e.to_string(),
            })?;
            multi.add_group(group, raft);
            machines.insert(group, machine);
        }
        if !bootstrap_writes.is_empty() {
            wal.submit_ticket(bootstrap_writes)
                .await
                .map_err(|e| StartError::Bootstrap(e.to_string()))?;
            match config.cluster_state {
                ClusterState::New => {
                    tracing::info!(groups = config.groups, "bootstrapped a new cluster")
                }
                ClusterState::Existing => tracing::warn!(
                    "empty data directory in an existing cluster: this replica will not vote or \
                     campaign until the cluster adds it (back) as a learner (raft member add, or the \
                     operator); if it was a voter, remove it first (raft member remove)"
                ),
            }
        }

        let no_records = BTreeMap::new();
        let records = machines
            .get(&MEMBERS_GROUP)
            .map_or(&no_records, KvStateMachine::members);
        let directory = Directory::new(&config.members, records);
        transport_config.peers = directory
            .members()
            .iter()
            .map(|m| (m.id, m.address.clone()))
            .collect();

        let (persisted_tx, persisted) = mpsc::unbounded_channel();
        let (events_tx, transport_events) = mpsc::unbounded_channel();
        let transport = Transport::start(&transport_config, events_tx);
        let heartbeat = Heartbeat::default();
        let (readiness_tx, readiness) = watch::channel(Readiness::default());
        let (status_tx, status) = watch::channel(NodeStatus {
            members: directory.members().to_vec(),
            ..NodeStatus::default()
        });
        let (requests_tx, requests) = mpsc::channel(16 * 1024);
        let (shutdown_tx, shutdown) = oneshot::channel();
        let handle = NodeHandle {
            requests: requests_tx,
            status,
            readiness,
            heartbeat: heartbeat.clone(),
            metrics: metrics.clone(),
            config: config.clone(),
            incarnation: wal.incarnation(),
        };
        let event_loop = EventLoop::new(
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
            readiness_tx,
            status_tx,
        );
        let (ended_tx, ended) = watch::channel(None);
        let channels = Channels {
            requests,
            inbox,
            transport_events,
            persisted,
            snapshot_done,
            shutdown,
        };
        let task = tokio::spawn(async move {
            let result = event_loop.run(channels).await;
            if let Err(e) = &result {
                let _ = ended_tx.send(Some(e.0.clone()));
            }
            result
        });
        Ok(Node {
            handle,
            shutdown: Some(shutdown_tx),
            task,
            ended,
        })
    }

    /// Resolves if the event loop ends on its own (a storage failure, or a
    /// bug), with the reason; never while it runs.
    pub async fn failed(&self) -> String {
        let mut ended = self.ended.clone();
        // `changed` fails once the loop's task is gone: it ended either way.
        let _ = ended.changed().await;
        let why = ended.borrow().clone();
        why.unwrap_or_else(|| "the event loop stopped unexpectedly (see the log above)".into())
    }

    /// Stops the loop after its current turn and waits for queued writes.
    pub async fn stop(mut self) -> Result<(), String> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.0),
            Err(e) => Err(format!("the event loop panicked: {e}")),
        }
    }
}
