//! Checks a [`RawConfig`] and resolves it into a [`Config`], collecting every
//! problem (not just the first) with the key, the value and the fix.

use super::error::{ConfigError, Problem};
use super::file::{RawConfig, RawLogLevel, RawPeer, RawTls};
use super::{Config, InitialClusterState, LogFormat, LogLevel, Peer, TlsFiles};
use crate::kv::MAX_COMMAND_BYTES;
use crate::raft::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CLUSTER_ID: &str = "kuberaft";
pub const DEFAULT_TICK: Duration = Duration::from_millis(100);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_ELECTION_TICKS: u64 = 10;
/// The longest heartbeat interval: beyond it a dead leader stays unreplaced
/// for many minutes (and timeouts derived from it stop being durations).
pub const MAX_TICK: Duration = Duration::from_secs(60);
/// The most ticks in an election timeout (randomized up to twice that).
pub const MAX_ELECTION_TICKS: u64 = 1_000_000;
/// The longest RPC timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
pub const DEFAULT_GROUPS: u64 = 1;
pub const MAX_GROUPS: u64 = 1024;
pub const DEFAULT_LOG_LEVEL: LogLevel = LogLevel::Info;
pub const DEFAULT_SNAPSHOT_THRESHOLD: u64 = 10_000;
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 8 * 1024 * 1024;
/// A message must carry at least one maximal command and its framing.
pub const MIN_MAX_MESSAGE_BYTES: u64 = MAX_COMMAND_BYTES as u64 + 64 * 1024;
pub const MAX_MAX_MESSAGE_BYTES: u64 = 1024 * 1024 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: u64 = 4096;
/// Default metrics port = gRPC port + this.
pub const METRICS_PORT_OFFSET: u16 = 1000;

struct Checker<'a> {
    overridden: &'a BTreeMap<String, String>,
    cli_name: bool,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn report(&mut self, key: &str, value: impl Into<String>, problem: &str, fix: &str) {
        let top = key.split(['.', '[']).next().unwrap_or(key);
        let from = if top == "name" && self.cli_name {
            Some("-n".to_string())
        } else {
            self.overridden
                .get(top)
                .or_else(|| self.overridden.get(&key.replace('.', "_")))
                .cloned()
        };
        self.problems.push(Problem {
            key: key.to_string(),
            value: value.into(),
            from,
            problem: problem.to_string(),
            fix: fix.to_string(),
        });
    }

    fn duration(
        &mut self,
        key: &str,
        value: Option<&String>,
        default: Duration,
        max: Duration,
    ) -> Duration {
        let Some(text) = value else { return default };
        match humantime::parse_duration(text.trim()) {
            Ok(d) if d > max => {
                self.report(
                    key,
                    quote(text),
                    &format!("must be at most {}", humantime::format_duration(max)),
                    &format!(
                        "write a duration like \"{}\"",
                        humantime::format_duration(default)
                    ),
                );
                default
            }
            Ok(d) if d.is_zero() => {
                self.report(
                    key,
                    quote(text),
                    "must be longer than zero",
                    &format!(
                        "write a duration like \"{}\"",
                        humantime::format_duration(default)
                    ),
                );
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.report(
                    key,
                    quote(text),
                    &format!("is not a duration ({e})"),
                    "write a number with a unit, like \"300ms\" or \"1s\"",
                );
                default
            }
        }
    }

    fn range(
        &mut self,
        key: &str,
        value: Option<u64>,
        default: u64,
        min: u64,
        max: u64,
        fix: &str,
    ) -> u64 {
        let v = value.unwrap_or(default);
        if v < min || v > max {
            let problem = if max >= u64::from(u32::MAX) {
                format!("must be at least {min}")
            } else {
                format!("must be between {min} and {max}")
            };
            self.report(key, v.to_string(), &problem, fix);
            return default;
        }
        v
    }

    fn port(&mut self, key: &str, value: u64) -> u16 {
        match u16::try_from(value) {
            Ok(p) if p != 0 => p,
            _ => {
                self.report(
                    key,
                    value.to_string(),
                    "is not a usable TCP port",
                    "use a port between 1 and 65535",
                );
                1
            }
        }
    }

    fn address(&mut self, key: &str, text: &str) -> Option<SocketAddr> {
        match text.trim().parse::<SocketAddr>() {
            Ok(a) if a.port() == 0 => {
                self.report(
                    key,
                    quote(text),
                    "has port 0, which would pick a random port nobody knows",
                    "give an explicit port, like \"0.0.0.0:3264\"",
                );
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                self.report(
                    key,
                    quote(text),
                    "is not an IP address and port",
                    "write it like \"0.0.0.0:3264\" or \"[::]:3264\"",
                );
                None
            }
        }
    }
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// Checks everything and builds the [`Config`].
pub fn resolve(
    raw: RawConfig,
    cli_name: Option<&str>,
    overridden: &BTreeMap<String, String>,
    path: &Path,
) -> Result<Config, ConfigError> {
    let mut c = Checker {
        overridden,
        cli_name: cli_name.is_some(),
        problems: Vec::new(),
    };

    let peers = peers(&mut c, raw.peers.as_deref());
    let known_names = || {
        let names: Vec<&str> = peers.values().map(|p| p.name.as_str()).collect();
        names.join(", ")
    };

    let name = cli_name.map(str::to_string).or(raw.name.clone());
    let me = match &name {
        None => {
            c.report(
                "name",
                "(not set)",
                "this replica's name is not set",
                &format!(
                    "set `name` in the file, RAFT_NAME in the environment, or pass -n NAME; \
                     one of: {}",
                    known_names()
                ),
            );
            None
        }
        Some(n) => {
            let me = peers.values().find(|p| &p.name == n).map(|p| p.id);
            if me.is_none() && !peers.is_empty() {
                c.report(
                    "name",
                    quote(n),
                    "is not the name of any peer",
                    &format!("use one of the peers' names: {}", known_names()),
                );
            }
            me
        }
    };

    let cluster_id = raw
        .cluster_id
        .clone()
        .unwrap_or_else(|| DEFAULT_CLUSTER_ID.to_string());
    if cluster_id.is_empty()
        || cluster_id.len() > 63
        || !cluster_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        c.report(
            "cluster_id",
            quote(&cluster_id),
            "is not a valid cluster id",
            "use 1 to 63 letters, digits, '-', '_' or '.'",
        );
    }

    let initial_cluster_state = match raw.initial_cluster_state.as_deref().map(str::trim) {
        None | Some("new") => InitialClusterState::New,
        Some("existing") => InitialClusterState::Existing,
        Some(other) => {
            c.report(
                "initial_cluster_state",
                quote(other),
                "is neither \"new\" nor \"existing\"",
                "use \"new\" to bootstrap a new cluster from `peers`, or \"existing\" to join a \
                 running one",
            );
            InitialClusterState::New
        }
    };

    let data_dir = match &raw.data_dir {
        Some(d) if d.as_os_str().is_empty() => {
            c.report(
                "data_dir",
                "\"\"",
                "is empty",
                "give the directory for the log and snapshots, like \"/var/lib/raft\"",
            );
            PathBuf::new()
        }
        Some(d) => d.clone(),
        None => PathBuf::from("data").join(name.as_deref().unwrap_or("replica")),
    };

    let groups = c.range(
        "groups",
        raw.groups,
        DEFAULT_GROUPS,
        1,
        MAX_GROUPS,
        "choose the number of Raft groups (shards) between 1 and 1024",
    ) as u32;
    let tick = c.duration("tick", raw.tick.as_ref(), DEFAULT_TICK, MAX_TICK);
    let election_ticks = c.range(
        "election_ticks",
        raw.election_ticks,
        DEFAULT_ELECTION_TICKS,
        2,
        MAX_ELECTION_TICKS,
        "the election timeout must span several heartbeats; use 10",
    ) as u32;
    let rpc_timeout = c.duration(
        "timeout",
        raw.timeout.as_ref(),
        DEFAULT_TIMEOUT,
        MAX_TIMEOUT,
    );
    let aggregate = raw.aggregate.unwrap_or(true);
    let log_level = log_level(&mut c, raw.log_level.as_ref());
    let log_format = match raw.log_format.as_deref().map(str::trim) {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            c.report(
                "log_format",
                quote(other),
                "is not a log format",
                "use \"text\" (for people) or \"json\" (for log collectors)",
            );
            LogFormat::Text
        }
    };
    let snapshot_threshold = c.range(
        "snapshot_threshold",
        raw.snapshot_threshold,
        DEFAULT_SNAPSHOT_THRESHOLD,
        1,
        u64::MAX,
        "set how many applied entries trigger a snapshot, like 10000",
    );
    let max_message_bytes = c.range(
        "max_message_bytes",
        raw.max_message_bytes,
        DEFAULT_MAX_MESSAGE_BYTES,
        MIN_MAX_MESSAGE_BYTES,
        MAX_MAX_MESSAGE_BYTES,
        &format!(
            "a message must fit the largest command ({MAX_COMMAND_BYTES} bytes); use at least \
             {MIN_MAX_MESSAGE_BYTES}, like {DEFAULT_MAX_MESSAGE_BYTES}"
        ),
    );
    let max_connections = c.range(
        "max_connections",
        raw.max_connections,
        DEFAULT_MAX_CONNECTIONS,
        16,
        1 << 20,
        "give the connections a listener may hold open, like 4096 (within the file descriptor limit)",
    );

    let own = me.and_then(|id| peers.get(&id));
    let listen_address = match &raw.listen_address {
        Some(text) => c.address("listen_address", text),
        None => own.map(|p| {
            let ip = p.ip_address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            SocketAddr::new(ip, p.port)
        }),
    };
    let metrics_address = match &raw.metrics_address {
        Some(text) => c.address("metrics_address", text),
        None => listen_address
            .zip(own)
            .map(|(listen, p)| SocketAddr::new(listen.ip(), p.metrics_port)),
    };
    if let (Some(l), Some(m)) = (listen_address, metrics_address)
        && l == m
    {
        c.report(
            "metrics_address",
            quote(&m.to_string()),
            "is the same as listen_address",
            "serve metrics on another port than gRPC",
        );
    }

    let tls = tls(&mut c, raw.tls.as_ref());
    let admin_token_file = admin_token_file(&mut c, raw.admin_token_file.as_ref());

    if !c.problems.is_empty() {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: c.problems,
        });
    }
    // Every missing value above was reported as a problem, so these are
    // all present; should that ever not hold, say so rather than panic.
    let (Some(name), Some(self_id), Some(listen_address), Some(metrics_address)) =
        (name, me, listen_address, metrics_address)
    else {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: vec![Problem {
                key: "name".into(),
                value: "(unresolved)".into(),
                from: None,
                problem: "this replica's own peer entry could not be resolved".into(),
                fix: "check `name` and `peers`".into(),
            }],
        });
    };
    Ok(Config {
        self_id,
        name,
        cluster_id,
        initial_cluster_state,
        data_dir,
        groups,
        tick,
        election_ticks,
        rpc_timeout,
        aggregate,
        log_level,
        log_format,
        listen_address,
        metrics_address,
        snapshot_threshold,
        max_message_bytes,
        max_connections,
        tls,
        admin_token_file,
        peers,
    })
}

/// Checks only `peers` (what a client needs to find the cluster).
pub fn resolve_peers(
    raw: &RawConfig,
    overridden: &BTreeMap<String, String>,
    path: &Path,
) -> Result<BTreeMap<NodeId, Peer>, ConfigError> {
    let mut c = Checker {
        overridden,
        cli_name: false,
        problems: Vec::new(),
    };
    let peers = peers(&mut c, raw.peers.as_deref());
    if c.problems.is_empty() {
        Ok(peers)
    } else {
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: c.problems,
        })
    }
}

fn log_level(c: &mut Checker<'_>, raw: Option<&RawLogLevel>) -> LogLevel {
    let fix = "use 0-5 (off, error, warn, info, debug, trace) or one of those names";
    let number = |c: &mut Checker<'_>, n: u64, shown: String| match usize::try_from(n)
        .ok()
        .and_then(|i| LogLevel::ALL.get(i))
    {
        Some(l) => *l,
        None => {
            c.report("log_level", shown, "is not a log level", fix);
            DEFAULT_LOG_LEVEL
        }
    };
    match raw {
        None => DEFAULT_LOG_LEVEL,
        Some(RawLogLevel::Number(n)) => number(c, *n, n.to_string()),
        Some(RawLogLevel::Name(s)) => {
            let t = s.trim().to_ascii_lowercase();
            if let Ok(n) = t.parse::<u64>() {
                return number(c, n, quote(s));
            }
            match LogLevel::ALL.iter().find(|l| l.as_str() == t) {
                Some(l) => *l,
                None if t == "warning" => LogLevel::Warn,
                None => {
                    c.report("log_level", quote(s), "is not a log level", fix);
                    DEFAULT_LOG_LEVEL
                }
            }
        }
    }
}

fn tls(c: &mut Checker<'_>, raw: Option<&RawTls>) -> Option<TlsFiles> {
    let raw = raw?;
    let mut file = |key: &str, path: Option<&PathBuf>, fix: &str| -> Option<PathBuf> {
        match path {
            None => {
                c.report(key, "(not set)", "is required when TLS is configured", fix);
                None
            }
            Some(p) if !p.is_file() => {
                c.report(
                    key,
                    quote(&p.display().to_string()),
                    "is not a readable file",
                    "give the path of an existing PEM file",
                );
                None
            }
            Some(p) => Some(p.clone()),
        }
    };
    let pair = "give both tls.cert and tls.key (PEM files), or remove the tls section";
    let cert = file("tls.cert", raw.cert.as_ref(), pair);
    let key = file("tls.key", raw.key.as_ref(), pair);
    let ca = file(
        "tls.ca",
        raw.ca.as_ref(),
        "give the PEM bundle of the CA that signs the replicas' certificates: peers always \
         verify each other (mutual TLS)",
    );
    let admin_names = match &raw.admin_names {
        None => super::DEFAULT_ADMIN_NAMES.map(str::to_string).to_vec(),
        Some(names) => {
            for (i, n) in names.iter().enumerate() {
                if n.is_empty()
                    || n.len() > 253
                    || n.chars()
                        .any(|ch| ch.is_whitespace() || ch.is_control() || ch == ',')
                {
                    c.report(
                        &format!("tls.admin_names[{i}]"),
                        quote(n),
                        "is not a certificate name",
                        "list the CNs or DNS names of the admin client certificates, like \
                         [\"raft-operator\", \"admin\"]",
                    );
                }
            }
            names.clone()
        }
    };
    let files = TlsFiles {
        cert: cert?,
        key: key?,
        ca: ca?,
        client_cert_auth: raw.client_cert_auth.unwrap_or(false),
        metrics: raw.metrics.unwrap_or(false),
        admin_names,
    };
    // Read and check them now, so a bad file stops the start with its name.
    if let Err(e) = crate::security::Material::load(&files.paths()) {
        c.report(
            e.key,
            quote(&e.path.display().to_string()),
            &e.problem,
            &e.fix,
        );
        return None;
    }
    Some(files)
}

fn admin_token_file(c: &mut Checker<'_>, path: Option<&PathBuf>) -> Option<PathBuf> {
    let path = path?;
    match crate::security::reload::read_token(path) {
        Ok(_) => Some(path.clone()),
        Err(e) => {
            c.report(
                "admin_token_file",
                quote(&path.display().to_string()),
                &e,
                "point it at a readable file that holds the admin token",
            );
            None
        }
    }
}

fn peers(c: &mut Checker<'_>, raw: Option<&[RawPeer]>) -> BTreeMap<NodeId, Peer> {
    let mut out = BTreeMap::new();
    let raw = match raw {
        Some(r) if !r.is_empty() => r,
        _ => {
            c.report(
                "peers",
                "[]",
                "no peers are configured",
                "list every replica of the cluster (this one included) with pid, name, \
                 ip_address or domain, and port",
            );
            return out;
        }
    };
    let mut names = BTreeSet::new();
    let mut addresses = BTreeSet::new();
    for (i, p) in raw.iter().enumerate() {
        let key = |field: &str| format!("peers[{i}].{field}");
        if p.pid == 0 {
            c.report(
                &key("pid"),
                "0",
                "node ids start at 1",
                "give every peer a distinct pid of 1 or more",
            );
        } else if out.contains_key(&NodeId(p.pid)) {
            c.report(
                &key("pid"),
                p.pid.to_string(),
                "is used by another peer",
                "give every peer a distinct pid",
            );
        }
        let name = p.name.trim();
        if name.is_empty() || name != p.name || p.name.chars().any(char::is_whitespace) {
            c.report(
                &key("name"),
                quote(&p.name),
                "is not a usable peer name",
                "use a non-empty name without spaces, like \"alpha\"",
            );
        } else if !names.insert(p.name.clone()) {
            c.report(
                &key("name"),
                quote(&p.name),
                "is used by another peer",
                "give every peer a distinct name",
            );
        }
        let port = c.port(&key("port"), p.port);
        let ip_address = match p.ip_address.as_deref().map(str::trim) {
            None => None,
            Some(text) => match text.parse::<IpAddr>() {
                Ok(ip) if ip.is_unspecified() => {
                    c.report(
                        &key("ip_address"),
                        quote(text),
                        "is the unspecified address, which other replicas cannot dial",
                        "give the address other replicas reach this one at, or use domain",
                    );
                    None
                }
                Ok(ip) => Some(ip),
                Err(_) => {
                    c.report(
                        &key("ip_address"),
                        quote(text),
                        "is not an IP address",
                        "write an IPv4 or IPv6 address, or put a host name in domain",
                    );
                    None
                }
            },
        };
        let domain = match p.domain.as_deref() {
            Some(d)
                if d.trim().is_empty() || d.chars().any(char::is_whitespace) || d.len() > 253 =>
            {
                c.report(
                    &key("domain"),
                    quote(d),
                    "is not a host name",
                    "write a DNS name like \"raft-0.raft-peers.default.svc\"",
                );
                None
            }
            d => d.map(str::to_string),
        };
        if p.ip_address.is_none() && p.domain.is_none() {
            c.report(
                &format!("peers[{i}]"),
                quote(&p.name),
                "has neither ip_address nor domain",
                "give the peer an ip_address, a domain, or both",
            );
        }
        let host = ip_address
            .map(|ip| ip.to_string())
            .or_else(|| domain.as_ref().map(|d| d.to_ascii_lowercase()));
        if let Some(host) = host
            && !addresses.insert((host.clone(), port))
        {
            c.report(
                &key("port"),
                port.to_string(),
                &format!("{host}:{port} is the address of another peer"),
                "give every peer its own host and port",
            );
        }
        let metrics_port = match p.metrics_port {
            Some(m) => c.port(&key("metrics_port"), m),
            None => port.checked_add(METRICS_PORT_OFFSET).unwrap_or_else(|| {
                c.report(
                    &key("metrics_port"),
                    "(not set)",
                    &format!("the default, port + {METRICS_PORT_OFFSET}, is past 65535"),
                    "set metrics_port for this peer",
                );
                1
            }),
        };
        if p.pid != 0 {
            out.entry(NodeId(p.pid)).or_insert(Peer {
                id: NodeId(p.pid),
                name: p.name.clone(),
                ip_address,
                domain,
                port,
                metrics_port,
            });
        }
    }
    out
}

/// The file form of a resolved configuration, every value written out.
pub fn to_raw(config: &Config) -> RawConfig {
    let duration = |d: Duration| humantime::format_duration(d).to_string();
    RawConfig {
        name: Some(config.name.clone()),
        cluster_id: Some(config.cluster_id.clone()),
        initial_cluster_state: Some(config.initial_cluster_state.as_str().to_string()),
        data_dir: Some(config.data_dir.clone()),
        groups: Some(u64::from(config.groups)),
        tick: Some(duration(config.tick)),
        election_ticks: Some(u64::from(config.election_ticks)),
        timeout: Some(duration(config.rpc_timeout)),
        aggregate: Some(config.aggregate),
        log_level: Some(RawLogLevel::Number(config.log_level as u64)),
        log_format: Some(config.log_format.as_str().to_string()),
        listen_address: Some(config.listen_address.to_string()),
        metrics_address: Some(config.metrics_address.to_string()),
        snapshot_threshold: Some(config.snapshot_threshold),
        max_message_bytes: Some(config.max_message_bytes),
        max_connections: Some(config.max_connections),
        tls: config.tls.as_ref().map(|t| RawTls {
            cert: Some(t.cert.clone()),
            key: Some(t.key.clone()),
            ca: Some(t.ca.clone()),
            client_cert_auth: Some(t.client_cert_auth),
            metrics: Some(t.metrics),
            admin_names: Some(t.admin_names.clone()),
        }),
        admin_token_file: config.admin_token_file.clone(),
        peers: Some(
            config
                .peers
                .values()
                .map(|p| RawPeer {
                    pid: p.id.0,
                    name: p.name.clone(),
                    ip_address: p.ip_address.map(|ip| ip.to_string()),
                    domain: p.domain.clone(),
                    port: u64::from(p.port),
                    metrics_port: Some(u64::from(p.metrics_port)),
                })
                .collect(),
        ),
    }
}
