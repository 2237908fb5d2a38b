//! The peer ConfigMap: the replicas' shared configuration file.

use super::child_meta;
use crate::crd::RaftCluster;
use crate::error::Result;
use crate::names::{CONFIG_FILE, Names};
use crate::replica_config::{InitialClusterState, ReplicaConfig};
use k8s_openapi::api::core::v1::ConfigMap;
use std::collections::BTreeMap;

/// The ConfigMap listing `peers` replicas. `state` is `New` only until the
/// cluster has first been Available.
pub fn config_map(
    cluster: &RaftCluster,
    names: &Names,
    peers: u32,
    state: InitialClusterState,
) -> Result<ConfigMap> {
    let config = ReplicaConfig::for_cluster(cluster, names, peers, state)?;
    Ok(ConfigMap {
        metadata: child_meta(cluster, names.config_map())?,
        data: Some(BTreeMap::from([(
            CONFIG_FILE.to_string(),
            config.to_json(),
        )])),
        ..ConfigMap::default()
    })
}
