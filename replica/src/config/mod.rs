//! The replica's configuration: one file (JSON, TOML or YAML), overridden
//! by `RAFT_*` environment variables, then by the command line, checked and
//! resolved into what the node needs ([`Config`]).
//!
//! The original program's files keep working unchanged:
//!
//! ```json
//! { "tick": "300ms", "timeout": "100ms", "aggregate": true, "log_level": 5,
//!   "peers": [ {"pid": 1, "name": "alpha", "ip_address": "127.0.0.1",
//!               "domain": "localhost", "port": 3264}, ... ] }
//! ```
//!
//! # Keys
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `name` | (required; or `RAFT_NAME`, or `-n`) | this replica: one of the peers' names |
//! | `cluster_id` | `kuberaft` | carried by every peer message and stamped on the data dir |
//! | `initial_cluster_state` | `new` | `new`: bootstrap from `peers` on an empty data dir; `existing`: join a running cluster, never bootstrap |
//! | `data_dir` | `data/<name>` | the write-ahead log and snapshots |
//! | `groups` | 1 | Raft groups (shards), 1 to 1024 |
//! | `tick` | `100ms` | heartbeat interval; the unit of election timeouts; at most `1m` |
//! | `election_ticks` | 10 | election timeout in ticks (randomized up to twice that), 2 to 1000000 |
//! | `timeout` | `1s` | RPC timeout; at most `1h` |
//! | `aggregate` | `true` | batch concurrent client appends into one proposal |
//! | `log_level` | 3 | 0-5: off, error, warn, info, debug, trace (a name works too) |
//! | `log_format` | `text` | `text` for people, `json` (one object per line) for log collectors |
//! | `listen_address` | own `ip_address` (else `0.0.0.0`) and own `port` | the one gRPC port |
//! | `metrics_address` | listen host, own `metrics_port` (else `port` + 1000) | HTTP `/metrics` `/healthz` `/readyz` |
//! | `snapshot_threshold` | 10000 | entries applied between snapshots |
//! | `max_message_bytes` | 8 MiB | largest gRPC message; at least one maximal command |
//! | `max_connections` | 4096 | connections each listener (gRPC, HTTP) holds at most; more are closed at once |
//! | `tls.cert`, `tls.key` | none | PEM chain and private key (PKCS#8, PKCS#1 or SEC1) of this replica: the gRPC port's server certificate and the client certificate towards peers |
//! | `tls.ca` | (required with `tls`) | PEM CA bundle: peers are always mutual TLS, verified against it |
//! | `tls.client_cert_auth` | `false` | every client connection must present a certificate signed by `ca` |
//! | `tls.metrics` | `false` | the HTTP port (`/metrics`, health, `/status`) serves TLS too, with the same certificate |
//! | `tls.admin_names` | `["raft-operator", "admin"]` | a client certificate whose CN or a DNS SAN is one of these has the admin role |
//! | `admin_token_file` | none | a file whose contents (trimmed) as `authorization: Bearer <token>` grant the admin role |
//! | `peers` | (required) | `pid` (node id, >= 1), `name`, `ip_address` and/or `domain`, `port`, optional `metrics_port` |
//!
//! Durations are written like `300ms`, `1s`, `1m 30s`.
//!
//! # One port
//!
//! A replica serves the peer, client and admin gRPC services on a single
//! port (the peer's `port`); tonic routes by service. That keeps the
//! original format's one port per peer meaningful, gives Kubernetes one
//! port to expose, and lets TLS cover all three alike. Metrics and health
//! are plain HTTP on their own port for Prometheus and the kubelet, unless
//! `tls.metrics` is set.
//!
//! # Peer addresses
//!
//! A peer is dialled at its `ip_address` when given, else at its `domain`,
//! resolved when connecting (pods get new IPs when they restart, so the
//! operator writes stable DNS names and no IPs). [`Peer::socket_addr`] is
//! therefore only known for peers with an IP.

mod env;
mod error;
mod file;
mod search;
mod validate;

pub use error::{ConfigError, Problem};
pub use file::Format;
pub use search::Sources;
pub use validate::METRICS_PORT_OFFSET;

use crate::raft::NodeId;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether this replica may bootstrap a new cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialClusterState {
    /// Bootstrap from the configured peers if the data dir is empty.
    New,
    /// Never bootstrap: an empty data dir waits to be added as a learner.
    Existing,
}

impl InitialClusterState {
    pub fn as_str(self) -> &'static str {
        match self {
            InitialClusterState::New => "new",
            InitialClusterState::Existing => "existing",
        }
    }
}

/// How much to log, 0 (off) to 5 (trace) as in the original program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl LogLevel {
    pub const ALL: [LogLevel; 6] = [
        LogLevel::Off,
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];

    /// The name, as `tracing`'s filters spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// TLS settings; the files were read and checked (parsable, key of the
/// certificate) when the configuration was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub client_cert_auth: bool,
    pub metrics: bool,
    pub admin_names: Vec<String>,
}

impl TlsFiles {
    pub fn paths(&self) -> crate::security::TlsPaths {
        crate::security::TlsPaths {
            cert: self.cert.clone(),
            key: self.key.clone(),
            ca: self.ca.clone(),
        }
    }
}

/// Admin names when `tls.admin_names` is not set.
pub const DEFAULT_ADMIN_NAMES: [&str; 2] = ["raft-operator", "admin"];

/// A member of the cluster as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub id: NodeId,
    pub name: String,
    pub ip_address: Option<IpAddr>,
    pub domain: Option<String>,
    /// The gRPC port (peer, client and admin services).
    pub port: u16,
    /// The HTTP metrics port: as configured, else `port` + 1000.
    pub metrics_port: u16,
}

impl Peer {
    /// The host to dial: the IP if known, else the domain.
    pub fn host(&self) -> String {
        match (&self.ip_address, &self.domain) {
            (Some(ip), _) => ip.to_string(),
            (None, Some(domain)) => domain.clone(),
            // Validation requires one of the two.
            (None, None) => String::new(),
        }
    }

    /// The address for peer traffic when the peer has an IP.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.ip_address.map(|ip| SocketAddr::new(ip, self.port))
    }

    /// `host:port`, with IPv6 in brackets: what a gRPC client dials.
    pub fn endpoint(&self) -> String {
        match self.ip_address {
            Some(ip) => SocketAddr::new(ip, self.port).to_string(),
            None => format!("{}:{}", self.host(), self.port),
        }
    }
}

/// The checked, resolved configuration of one replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This replica's id: the `pid` of the peer named `name`.
    pub self_id: NodeId,
    pub name: String,
    pub cluster_id: String,
    pub initial_cluster_state: InitialClusterState,
    pub data_dir: PathBuf,
    pub groups: u32,
    /// The heartbeat interval, the unit of election timeouts.
    pub tick: Duration,
    pub election_ticks: u32,
    /// RPC timeout (the original `timeout`).
    pub rpc_timeout: Duration,
    pub aggregate: bool,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
    pub listen_address: SocketAddr,
    pub metrics_address: SocketAddr,
    pub snapshot_threshold: u64,
    pub max_message_bytes: u64,
    pub max_connections: u64,
    pub tls: Option<TlsFiles>,
    /// Checked to hold a token when the configuration was loaded.
    pub admin_token_file: Option<PathBuf>,
    /// Every member, this replica included.
    pub peers: BTreeMap<NodeId, Peer>,
}

/// A configuration, where it was read from, and anything worth a warning.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub path: PathBuf,
    pub warnings: Vec<String>,
}

impl Config {
    /// This replica's own peer entry.
    pub fn me(&self) -> &Peer {
        &self.peers[&self.self_id]
    }

    /// The base election timeout (`tick` x `election_ticks`).
    pub fn election_timeout(&self) -> Duration {
        self.tick * self.election_ticks
    }

    /// The configuration as a complete JSON file (every default written
    /// out) that loads back to the same configuration, e.g. for
    /// `raft local` to write `<dir>/raft.json`.
    pub fn to_json_pretty(&self) -> String {
        let raw = validate::to_raw(self);
        serde_json::to_string_pretty(&raw).expect("plain data with string keys always serializes")
    }
}

/// Finds, reads, overrides and checks the configuration.
pub fn load(sources: &Sources) -> Result<Loaded, ConfigError> {
    let (path, format, text, mut warnings) = read(sources)?;
    let mut loaded = load_text(&text, format, &path, sources)?;
    warnings.append(&mut loaded.warnings);
    loaded.warnings = warnings;
    Ok(loaded)
}

/// The peers of the configuration found from `sources`, checked: what a
/// client needs to find the cluster. Unlike [`load`] it needs no `name`.
pub fn load_peers(sources: &Sources) -> Result<(PathBuf, BTreeMap<NodeId, Peer>), ConfigError> {
    let (path, format, text, _) = read(sources)?;
    let mut raw = file::parse(&text, format, &path)?;
    let (overridden, _) = env::apply(&mut raw, &sources.env)?;
    let peers = validate::resolve_peers(&raw, &overridden, &path)?;
    Ok((path, peers))
}

/// What a client takes from a configuration file: the peers, and the TLS
/// files and admin token file as written (not checked: the client reports
/// a file it cannot use when it reads it).
#[derive(Clone, Debug)]
pub struct ClientView {
    pub path: PathBuf,
    pub peers: BTreeMap<NodeId, Peer>,
    /// `tls.ca`, `tls.cert`, `tls.key`.
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
}

/// Like [`load_peers`], with the TLS section a client uses to connect.
pub fn load_client(sources: &Sources) -> Result<ClientView, ConfigError> {
    let (path, format, text, _) = read(sources)?;
    let mut raw = file::parse(&text, format, &path)?;
    let (overridden, _) = env::apply(&mut raw, &sources.env)?;
    let peers = validate::resolve_peers(&raw, &overridden, &path)?;
    let tls = raw.tls.unwrap_or_default();
    Ok(ClientView {
        path,
        peers,
        ca: tls.ca,
        cert: tls.cert,
        key: tls.key,
        admin_token_file: raw.admin_token_file,
    })
}

/// Finds and reads the file; warns about candidates it shadows.
fn read(sources: &Sources) -> Result<(PathBuf, Format, String, Vec<String>), ConfigError> {
    let mut warnings = Vec::new();
    let path = match &sources.path {
        Some(path) => path.clone(),
        None => {
            let candidates = sources.candidates();
            let mut found = candidates.iter().filter(|p| p.is_file());
            let Some(first) = found.next() else {
                return Err(ConfigError::NotFound { tried: candidates });
            };
            for other in found {
                warnings.push(format!(
                    "ignoring {}: {} comes first in the search order",
                    other.display(),
                    first.display()
                ));
            }
            first.clone()
        }
    };
    let format = Format::from_path(&path)
        .ok_or_else(|| ConfigError::UnknownFormat { path: path.clone() })?;
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    Ok((path, format, text, warnings))
}

/// Like [`load`] for text already in hand; `path` is only for messages.
/// The sources' `path` and search directories are not used.
pub fn load_text(
    text: &str,
    format: Format,
    path: &Path,
    sources: &Sources,
) -> Result<Loaded, ConfigError> {
    let mut raw = file::parse(text, format, path)?;
    let (overridden, warnings) = env::apply(&mut raw, &sources.env)?;
    let config = validate::resolve(raw, sources.name.as_deref(), &overridden, path)?;
    Ok(Loaded {
        config,
        path: path.to_path_buf(),
        warnings,
    })
}
