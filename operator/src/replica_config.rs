//! The replica's configuration file, generated from a RaftCluster: what the
//! peer ConfigMap holds and what `raft serve -c` reads (the format is the one
//! documented at the top of `replica/src/config/mod.rs`).
//!
//! Every pod mounts the same file; each one sets `RAFT_NAME` from its pod
//! name, so the file itself names no replica.

use crate::crd::RaftCluster;
use crate::duration;
use crate::error::{Error, Result};
use crate::names::{self, Names};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// `initial_cluster_state` of the replica's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialClusterState {
    /// An empty volume bootstraps the cluster from `peers`.
    New,
    /// An empty volume waits to be added as a learner; never bootstraps.
    Existing,
}

/// One entry of `peers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerEntry {
    pub pid: u64,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub port: u16,
    pub metrics_port: u16,
}

/// The configuration file, field for field (keys as the replica spells
/// them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaConfig {
    pub cluster_id: String,
    pub initial_cluster_state: InitialClusterState,
    pub data_dir: String,
    pub groups: u32,
    pub tick: String,
    pub election_ticks: u32,
    pub timeout: String,
    pub aggregate: bool,
    pub log_level: String,
    pub listen_address: String,
    pub metrics_address: String,
    pub snapshot_threshold: u64,
    pub peers: Vec<PeerEntry>,
}

/// The Raft timing of a spec, checked and resolved into the replica's
/// units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub tick: Duration,
    pub election_ticks: u32,
    pub rpc_timeout: Duration,
}

/// Resolves `spec.raft`'s durations; the error names the field and the fix
/// (the schema's rules say the same, this holds when they were skipped).
pub fn timing(cluster: &RaftCluster) -> Result<Timing> {
    let raft = &cluster.spec.raft;
    let field = |name: &str, text: &str| {
        duration::parse(text).ok_or_else(|| {
            Error::InvalidSpec(format!(
                "raft.{name} {text:?} is not a duration: write e.g. 100ms, 1s or 1m30s"
            ))
        })
    };
    let tick = field("heartbeatInterval", &raft.heartbeat_interval)?;
    let election = field("electionTimeout", &raft.election_timeout)?;
    let rpc_timeout = field("rpcTimeout", &raft.rpc_timeout)?;
    if tick < Duration::from_millis(1) {
        return Err(Error::InvalidSpec(
            "raft.heartbeatInterval must be at least 1ms".to_string(),
        ));
    }
    let ticks = (election.as_secs_f64() / tick.as_secs_f64()).round();
    if ticks < 2.0 {
        return Err(Error::InvalidSpec(format!(
            "raft.electionTimeout ({}) must be at least twice raft.heartbeatInterval ({})",
            raft.election_timeout, raft.heartbeat_interval
        )));
    }
    Ok(Timing {
        tick,
        election_ticks: ticks.min(f64::from(u32::MAX)) as u32,
        rpc_timeout,
    })
}

fn millis(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

impl ReplicaConfig {
    /// The configuration for a cluster's pods, listing `peers` replicas
    /// (ordinals `0..peers`) by their stable DNS names.
    pub fn for_cluster(
        cluster: &RaftCluster,
        names: &Names,
        peers: u32,
        state: InitialClusterState,
    ) -> Result<ReplicaConfig> {
        let entries = (0..peers)
            .map(|ordinal| PeerEntry {
                pid: names::node_id(ordinal),
                name: names.pod(ordinal),
                ip_address: None,
                domain: Some(names.pod_domain(ordinal)),
                port: names::GRPC_PORT,
                metrics_port: names::METRICS_PORT,
            })
            .collect();
        let mut config = ReplicaConfig::with_peers(cluster, names.cluster_id(), entries, state)?;
        config.data_dir = names::DATA_DIR.to_string();
        config.listen_address = format!("0.0.0.0:{}", names::GRPC_PORT);
        config.metrics_address = format!("0.0.0.0:{}", names::METRICS_PORT);
        Ok(config)
    }

    /// The configuration with explicit peers (pods use DNS names; the
    /// membership tests use loopback addresses). Listen addresses default
    /// to each peer's own entry; the data dir to `data/<name>`.
    pub fn with_peers(
        cluster: &RaftCluster,
        cluster_id: String,
        peers: Vec<PeerEntry>,
        state: InitialClusterState,
    ) -> Result<ReplicaConfig> {
        let timing = timing(cluster)?;
        let spec = &cluster.spec;
        let groups = u32::try_from(spec.groups)
            .ok()
            .filter(|g| (1..=1024).contains(g))
            .ok_or_else(|| {
                Error::InvalidSpec(format!("groups is {}: use 1 to 1024", spec.groups))
            })?;
        let snapshot_threshold = u64::try_from(spec.raft.snapshot_threshold)
            .ok()
            .filter(|t| *t >= 1)
            .ok_or_else(|| {
                Error::InvalidSpec(format!(
                    "raft.snapshotThreshold is {}: use a positive number of entries",
                    spec.raft.snapshot_threshold
                ))
            })?;
        Ok(ReplicaConfig {
            cluster_id,
            initial_cluster_state: state,
            data_dir: String::new(),
            groups,
            tick: millis(timing.tick),
            election_ticks: timing.election_ticks,
            timeout: millis(timing.rpc_timeout),
            aggregate: spec.raft.aggregate,
            log_level: spec.log_level.as_str().to_string(),
            listen_address: String::new(),
            metrics_address: String::new(),
            snapshot_threshold,
            peers,
        })
    }

    /// The file's text: pretty JSON, keys in a fixed order.
    pub fn to_json(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            // Empty means "the replica's default".
            for key in ["data_dir", "listen_address", "metrics_address"] {
                if object.get(key).and_then(|v| v.as_str()) == Some("") {
                    object.remove(key);
                }
            }
        }
        let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
        text.push('\n');
        text
    }

    /// A digest of what a running replica only reads at start and that
    /// must therefore restart it when it changes. The peer list and
    /// `initial_cluster_state` are left out: members are learned through
    /// the admin API, and a restart would not change a non-empty volume.
    pub fn restart_hash(&self) -> String {
        let mut stable = self.clone();
        stable.peers.clear();
        stable.initial_cluster_state = InitialClusterState::New;
        let digest = Sha256::digest(stable.to_json().as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::RaftClusterSpec;

    fn cluster(spec: RaftClusterSpec) -> RaftCluster {
        RaftCluster::new("kv", spec)
    }

    #[test]
    fn election_timeout_becomes_whole_ticks() {
        let mut spec = RaftClusterSpec::default();
        spec.raft.heartbeat_interval = "200ms".into();
        spec.raft.election_timeout = "1s".into();
        let t = timing(&cluster(spec)).expect("valid timing");
        assert_eq!(t.tick, Duration::from_millis(200));
        assert_eq!(t.election_ticks, 5);
    }

    #[test]
    fn too_short_an_election_timeout_is_refused_with_the_fix() {
        let mut spec = RaftClusterSpec::default();
        spec.raft.heartbeat_interval = "1s".into();
        spec.raft.election_timeout = "1s".into();
        let e = timing(&cluster(spec)).expect_err("must refuse");
        assert!(e.to_string().contains("at least twice"), "{e}");
    }

    #[test]
    fn peers_are_left_out_of_the_restart_hash() {
        let c = cluster(RaftClusterSpec::default());
        let names = Names::new("kv", "ns");
        let three = ReplicaConfig::for_cluster(&c, &names, 3, InitialClusterState::New).unwrap();
        let five =
            ReplicaConfig::for_cluster(&c, &names, 5, InitialClusterState::Existing).unwrap();
        assert_eq!(three.restart_hash(), five.restart_hash());
        let spec = RaftClusterSpec {
            log_level: crate::crd::LogLevel::Debug,
            ..RaftClusterSpec::default()
        };
        let debug = ReplicaConfig::for_cluster(&cluster(spec), &names, 3, InitialClusterState::New)
            .unwrap();
        assert_ne!(three.restart_hash(), debug.restart_hash());
    }
}
