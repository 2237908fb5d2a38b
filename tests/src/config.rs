//! The configuration file the harness writes for each replica, in the
//! format of `replica/src/config/mod.rs` (JSON).

use crate::error::HarnessError;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// Every replica's gRPC port (each has its own address).
pub const GRPC_PORT: u16 = 3264;
/// Every replica's HTTP port: the configuration's default, `port` + 1000.
pub const HTTP_PORT: u16 = GRPC_PORT + 1000;

/// The names of replicas 1, 2, 3...: the original program's.
pub const NAMES: [&str; 9] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
];

/// The name of replica `id` (1-based).
pub fn name_of(id: u64) -> String {
    usize::try_from(id)
        .ok()
        .and_then(|i| NAMES.get(i.wrapping_sub(1)))
        .map_or_else(|| format!("replica{id}"), |n| (*n).to_string())
}

/// A member as written in `peers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEntry {
    pub id: u64,
    pub name: String,
    pub ip: Ipv4Addr,
}

impl PeerEntry {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "pid": self.id,
            "name": self.name,
            "ip_address": self.ip.to_string(),
            "port": GRPC_PORT,
        })
    }
}

/// What one replica's configuration says.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub cluster_id: String,
    pub name: String,
    /// `true`: `initial_cluster_state: new`.
    pub new_cluster: bool,
    pub data_dir: std::path::PathBuf,
    pub groups: u32,
    pub tick: Duration,
    pub election_ticks: u32,
    pub snapshot_threshold: Option<u64>,
    pub log_level: u8,
    pub peers: Vec<PeerEntry>,
    /// Keys written last, over everything above (tests of odd settings).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ReplicaConfig {
    pub fn json(&self) -> serde_json::Value {
        let mut c = serde_json::json!({
            "cluster_id": self.cluster_id,
            "name": self.name,
            "initial_cluster_state": if self.new_cluster { "new" } else { "existing" },
            "data_dir": self.data_dir,
            "groups": self.groups,
            "tick": format!("{}ms", self.tick.as_millis()),
            "election_ticks": self.election_ticks,
            "timeout": "1s",
            "aggregate": true,
            "log_level": self.log_level,
            "peers": self.peers.iter().map(PeerEntry::json).collect::<Vec<_>>(),
        });
        if let (Some(t), Some(map)) = (self.snapshot_threshold, c.as_object_mut()) {
            map.insert("snapshot_threshold".into(), t.into());
        }
        if let Some(map) = c.as_object_mut() {
            for (k, v) in &self.extra {
                map.insert(k.clone(), v.clone());
            }
        }
        c
    }

    /// Writes the file (replacing it atomically: a replica being restarted
    /// never reads half of it).
    pub fn write(&self, path: &Path) -> Result<(), HarnessError> {
        let mut text = serde_json::to_string_pretty(&self.json())
            .map_err(|e| HarnessError::io("cannot encode a configuration", e.into()))?;
        text.push('\n');
        write_atomically(path, text.as_bytes())
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), HarnessError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .map_err(|e| HarnessError::io(format!("cannot write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| HarnessError::io(format!("cannot write {}", path.display()), e))
}
