//! `raft serve`: run one replica until SIGTERM or Ctrl-C.
//!
//! One gRPC listener serves the peer, client and admin services; a second
//! port serves HTTP (`/metrics`, `/healthz`, `/readyz`, `/status`). On
//! SIGTERM a replica that leads groups hands leadership to other voters
//! first, so clients see no election timeout, then flushes and exits well
//! within a Kubernetes grace period.

use crate::api::admin_service::AdminService;
use crate::api::forward::Forwarder;
use crate::api::http::{HttpState, router};
use crate::api::kv_service::KvService;
use crate::api::listener::{self, ListenerOptions};
use crate::config::{self, InitialClusterState, TlsFiles};
use crate::metrics::Metrics;
use crate::node::request::Request as NodeRequest;
use crate::node::{ClusterState, Member, Node, NodeConfig, NodeHandle};
use crate::raft::{self, GroupId, Role};
use crate::security::reload::{self, AdminToken, Tls};
use crate::security::{Authz, Credentials, MemberName};
use crate::storage::{Identity, Wal, WalOptions};
use crate::transport::{PeerService, TransportConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Everything `raft serve` needs, resolved from the configuration.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub node: NodeConfig,
    /// Peer, client and admin gRPC.
    pub listen: SocketAddr,
    /// HTTP: metrics and health.
    pub metrics_listen: SocketAddr,
    pub max_message_bytes: usize,
    /// How long a client request may wait for its commit.
    pub request_timeout: Duration,
    /// How long shutdown waits for leadership to move away.
    pub handover_timeout: Duration,
    pub tls: Option<TlsFiles>,
    pub admin_token_file: Option<PathBuf>,
    /// Connections each listener holds open at most.
    pub max_connections: usize,
}

/// HTTP/2 pings on idle connections, so dead peers and clients go away.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a client request may wait for its commit or read.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests the event loop takes into one turn (one append) at most.
pub const MAX_REQUESTS_PER_TURN: usize = 1024;

impl ServeOptions {
    /// What a loaded configuration asks for.
    pub fn from_config(c: &config::Config) -> ServeOptions {
        let mut raft = raft::Config::new(c.self_id);
        raft.election_ticks = c.election_ticks;
        let members = c
            .peers
            .values()
            .map(|p| Member {
                id: p.id,
                name: p.name.clone(),
                address: p.endpoint(),
            })
            .collect();
        let node = NodeConfig {
            cluster_id: c.cluster_id.clone(),
            id: c.self_id,
            name: c.name.clone(),
            groups: c.groups,
            tick: c.tick,
            raft,
            aggregate: c.aggregate,
            max_requests_per_turn: MAX_REQUESTS_PER_TURN,
            snapshot_threshold: c.snapshot_threshold,
            // Absolute, so logs and errors name the real place.
            data_dir: std::path::absolute(&c.data_dir).unwrap_or_else(|_| c.data_dir.clone()),
            members,
            // Outgoing connections leave from our own address when we have
            // one, so peers (and firewalls) see who is calling.
            local_ip: c.me().ip_address,
            cluster_state: match c.initial_cluster_state {
                InitialClusterState::New => ClusterState::New,
                InitialClusterState::Existing => ClusterState::Existing,
            },
            rpc_timeout: c.rpc_timeout,
        };
        ServeOptions {
            node,
            listen: c.listen_address,
            metrics_listen: c.metrics_address,
            max_message_bytes: usize::try_from(c.max_message_bytes).unwrap_or(usize::MAX),
            request_timeout: REQUEST_TIMEOUT,
            // A handover needs the target to catch up and win one election.
            handover_timeout: (c.election_timeout() * 2).max(Duration::from_secs(2)),
            tls: c.tls.clone(),
            admin_token_file: c.admin_token_file.clone(),
            max_connections: usize::try_from(c.max_connections)
                .unwrap_or(listener::DEFAULT_MAX_CONNECTIONS),
        }
    }
}

/// A running replica: its node, its gRPC and HTTP servers.
pub struct Server {
    pub handle: NodeHandle,
    node: Node,
    stop: tokio::sync::watch::Sender<bool>,
    grpc: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    reloader: Option<tokio::task::JoinHandle<()>>,
    handover_timeout: Duration,
}

impl Server {
    /// Opens the data directory, recovers, binds both listeners and starts
    /// serving. Errors say what could not be done and how to fix it.
    pub async fn start(options: ServeOptions) -> anyhow::Result<Server> {
        let node_config = options.node.clone();
        let identity = Identity {
            cluster_id: node_config.cluster_id.clone(),
            node_id: node_config.id,
        };
        let tls = match &options.tls {
            Some(files) => Some(Arc::new(
                Tls::load(files.paths(), files.client_cert_auth)
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            )),
            None => None,
        };
        let token = match &options.admin_token_file {
            Some(path) => Some(Arc::new(
                AdminToken::load(path).map_err(|e| anyhow::anyhow!(e))?,
            )),
            None => None,
        };
        let wal = Wal::open(&node_config.data_dir, identity, WalOptions::default())?;
        let metrics = Metrics::new();
        let (inbox_tx, inbox) = mpsc::channel(1024);
        let mut transport = TransportConfig::new(
            node_config.cluster_id.clone(),
            node_config.id,
            node_config.data_dir.join("incoming"),
        );
        transport.local_ip = node_config.local_ip;
        transport.connect_timeout = node_config.rpc_timeout;
        transport.max_message_bytes = options.max_message_bytes;
        transport.tls = tls.clone();
        transport.peers = node_config
            .members
            .iter()
            .map(|m| (m.id, m.address.clone()))
            .collect();
        let grpc = TcpListener::bind(options.listen).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} for gRPC: {e} (is another replica using the port?)",
                options.listen
            )
        })?;
        let http = TcpListener::bind(options.metrics_listen).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} for metrics and health: {e} (is another replica using the port?)",
                options.metrics_listen
            )
        })?;
        let node = Node::start(
            node_config.clone(),
            wal,
            transport.clone(),
            inbox,
            metrics.clone(),
        )
        .await?;
        let handle = node.handle.clone();
        let forwarder = Arc::new(Forwarder::new(
            handle.clone(),
            tls.clone(),
            Credentials::admin_token(token.clone()),
        ));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let authz = Arc::new(Authz::new(
            tls.is_some(),
            options
                .tls
                .as_ref()
                .map(|t| t.admin_names.clone())
                .unwrap_or_default(),
            token.clone(),
            members_of(&handle),
            Some(metrics.clone()),
        ));
        if !authz.enforces_admin() {
            tracing::warn!(
                "the admin API is open to every client: configure tls (client certificates) or \
                 admin_token_file to require the admin role for membership changes"
            );
        }

        let peer = PeerService::new(transport, inbox_tx)
            .with_metrics(handle.metrics.clone())
            .with_authz(authz.clone())
            .into_server();
        let kv = KvService::new(handle.clone(), forwarder.clone(), options.request_timeout)
            .into_server(options.max_message_bytes);
        let admin = AdminService::new(handle.clone(), forwarder, options.request_timeout)
            .with_authz(authz)
            .into_server();
        let mut grpc_stop = stop_rx.clone();
        let grpc_stopped = async move {
            let _ = grpc_stop.wait_for(|stop| *stop).await;
        };
        let routes = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .add_service(peer)
            .add_service(kv)
            .add_service(admin);
        let grpc_options = ListenerOptions {
            max_connections: options.max_connections,
            ..ListenerOptions::new("grpc")
        };
        let grpc = match &tls {
            Some(tls) => {
                let incoming = listener::tls(
                    grpc,
                    tls.clone(),
                    |a| a.grpc.clone(),
                    grpc_options,
                    metrics.clone(),
                );
                tokio::spawn(routes.serve_with_incoming_shutdown(incoming, grpc_stopped))
            }
            None => {
                let incoming = listener::plain(grpc, grpc_options, metrics.clone());
                tokio::spawn(routes.serve_with_incoming_shutdown(incoming, grpc_stopped))
            }
        };
        let reloader = (tls.is_some() || token.is_some())
            .then(|| reload::spawn_reloader(tls.clone(), token.clone(), metrics.clone()));
        let http_state = HttpState {
            metrics: metrics.clone(),
            heartbeat: handle.heartbeat.clone(),
            stall_after: node_config.tick * 20 + Duration::from_secs(2),
            readiness: handle.readiness.clone(),
            status: status_json(&handle),
        };
        let mut http_stop = stop_rx;
        let http_stopped = async move {
            let _ = http_stop.wait_for(|stop| *stop).await;
        };
        let http_options = ListenerOptions {
            max_connections: options.max_connections,
            ..ListenerOptions::new("http")
        };
        let http_tls = tls
            .clone()
            .filter(|_| options.tls.as_ref().is_some_and(|t| t.metrics));
        let http = match http_tls {
            Some(tls) => {
                let incoming =
                    listener::tls(http, tls, |a| a.http.clone(), http_options, metrics.clone());
                tokio::spawn(async move {
                    axum::serve(incoming, router(http_state))
                        .with_graceful_shutdown(http_stopped)
                        .await
                })
            }
            None => {
                let incoming = listener::plain(http, http_options, metrics.clone());
                tokio::spawn(async move {
                    axum::serve(incoming, router(http_state))
                        .with_graceful_shutdown(http_stopped)
                        .await
                })
            }
        };
        tracing::info!(
            name = %node_config.name,
            id = %node_config.id,
            grpc = %options.listen,
            http = %options.metrics_listen,
            groups = node_config.groups,
            tls = tls.is_some(),
            "replica serving"
        );
        Ok(Server {
            handle,
            node,
            stop,
            grpc,
            http,
            reloader,
            handover_timeout: options.handover_timeout,
        })
    }

    /// Hands leadership over, stops serving, flushes and waits for the end.
    pub async fn stop(self) -> anyhow::Result<()> {
        hand_over_leadership(&self.handle, self.handover_timeout).await;
        let _ = self.stop.send(true);
        if let Some(reloader) = &self.reloader {
            reloader.abort();
        }
        let stopped = self.node.stop().await;
        // Graceful: in-flight requests finish. Bounded: a client that keeps
        // a stream open must not hold the replica past its grace period.
        finish_or_abort("gRPC", self.grpc).await;
        finish_or_abort("HTTP", self.http).await;
        stopped.map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// How long the listeners may take to finish in-flight requests at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

async fn finish_or_abort<T>(what: &str, mut task: tokio::task::JoinHandle<T>) {
    if tokio::time::timeout(DRAIN_TIMEOUT, &mut task)
        .await
        .is_err()
    {
        tracing::warn!(
            "the {what} listener still had open requests after {DRAIN_TIMEOUT:?}; closing them"
        );
        task.abort();
        let _ = task.await;
    }
}

/// Runs the replica until SIGTERM or Ctrl-C; returns when it has stopped
/// (an error says why it could not start or had to stop).
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let server = Server::start(options).await?;
    tokio::select! {
        _ = shutdown_signal() => {}
        why = server.node.failed() => {
            // Serving without a node would only answer errors; exit so
            // the supervisor (kubelet, raft local, systemd) sees it.
            let _ = server.stop.send(true);
            finish_or_abort("gRPC", server.grpc).await;
            finish_or_abort("HTTP", server.http).await;
            anyhow::bail!("{why}");
        }
    }
    tracing::info!("shutting down: handing over leadership");
    server.stop().await?;
    tracing::info!("stopped");
    Ok(())
}

/// Moves leadership of every group led here to another voter, waiting at
/// most `timeout` for the groups to have new leaders.
async fn hand_over_leadership(handle: &NodeHandle, timeout: Duration) {
    let led: Vec<GroupId> = handle
        .status
        .borrow()
        .groups
        .iter()
        .filter(|g| g.status.role == Role::Leader)
        .map(|g| g.group)
        .collect();
    if led.is_empty() {
        return;
    }
    for &group in &led {
        if let Err(e) = handle
            .call(|reply| NodeRequest::TransferLeader {
                group,
                to: None,
                reply,
            })
            .await
        {
            tracing::warn!(%group, error = %e, "cannot hand over leadership");
        }
    }
    let mut status = handle.status.clone();
    let wait = async {
        loop {
            let still_leading = status
                .borrow()
                .groups
                .iter()
                .any(|g| led.contains(&g.group) && g.status.role == Role::Leader);
            if !still_leading || status.changed().await.is_err() {
                return;
            }
        }
    };
    if tokio::time::timeout(timeout, wait).await.is_err() {
        tracing::warn!(
            "leadership did not move within {timeout:?}; stopping anyway (the cluster elects a new leader)"
        );
    }
}

/// The current members, as the peer and admin checks see them.
fn members_of(handle: &NodeHandle) -> crate::security::authz::Members {
    let status = handle.status.clone();
    Arc::new(move || {
        status
            .borrow()
            .members
            .iter()
            .map(|m| MemberName {
                name: m.name.clone(),
                address: m.address.clone(),
            })
            .collect()
    })
}

/// The node's status as JSON for `/status`, kept current by a small task.
fn status_json(handle: &NodeHandle) -> tokio::sync::watch::Receiver<serde_json::Value> {
    let (tx, rx) = tokio::sync::watch::channel(serde_json::Value::Null);
    let mut status = handle.status.clone();
    let config = handle.config.clone();
    tokio::spawn(async move {
        loop {
            let value = {
                let s = status.borrow();
                serde_json::json!({
                    "id": config.id.0,
                    "name": config.name,
                    "cluster_id": config.cluster_id,
                    "ready": s.readiness.ready,
                    "readiness": s.readiness,
                    "members": s.members.iter().map(|m| serde_json::json!({
                        "id": m.id.0, "name": m.name, "address": m.address,
                    })).collect::<Vec<_>>(),
                    "groups": s.groups.iter().map(|g| serde_json::json!({
                        "group": g.group.0,
                        "role": format!("{:?}", g.status.role).to_lowercase(),
                        "term": g.status.term.0,
                        "leader": g.status.leader.map(|l| l.0),
                        "commit": g.status.commit.0,
                        "applied": g.status.applied.0,
                        "last_index": g.status.last_index.0,
                        "snapshot_index": g.snapshot_index.0,
                        "voters": g.status.conf_state.voters.iter().map(|n| n.0).collect::<Vec<_>>(),
                        "learners": g.status.conf_state.learners.iter().map(|n| n.0).collect::<Vec<_>>(),
                        "digest": g.digest,
                    })).collect::<Vec<_>>(),
                })
            };
            if tx.send(value).is_err() || status.changed().await.is_err() {
                return;
            }
        }
    });
    rx
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
