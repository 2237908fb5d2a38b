//! Pure builders: a RaftCluster (plus what the reconciler decided, such as
//! the StatefulSet's replica count) in, one Kubernetes object out. No I/O;
//! the reconciler applies what they return with server-side apply.

pub mod config_map;
pub mod network_policy;
pub mod pdb;
pub mod service_monitor;
pub mod services;
pub mod statefulset;

use crate::crd::RaftCluster;
use crate::error::{Error, Result};
use crate::names::Names;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use kube::ResourceExt;

/// What speaks TLS, as the reconciler decided: the spec for a new
/// cluster, what the replicas already do for a running one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transport {
    /// The Secret with the replicas' certificates; `None`: plain gRPC.
    pub tls_secret: Option<String>,
    /// The HTTP port serves TLS too.
    pub metrics_tls: bool,
}

impl Transport {
    pub fn grpc_tls(&self) -> bool {
        self.tls_secret.is_some()
    }
}

/// The names of a cluster's objects (name and namespace must be set).
pub fn names(cluster: &RaftCluster) -> Result<Names> {
    let namespace = cluster
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    Ok(Names::new(&cluster.name_any(), &namespace))
}

/// The controller owner reference that lets Kubernetes garbage collect a
/// child with its cluster.
pub fn owner(cluster: &RaftCluster) -> Result<OwnerReference> {
    cluster
        .controller_owner_ref(&())
        .ok_or(Error::MissingObjectKey("metadata.uid"))
}

/// Metadata of a child object: name, namespace, labels, owner.
pub fn child_meta(cluster: &RaftCluster, name: String) -> Result<ObjectMeta> {
    let n = names(cluster)?;
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(n.namespace.clone()),
        labels: Some(n.labels()),
        owner_references: Some(vec![owner(cluster)?]),
        ..ObjectMeta::default()
    })
}

/// The number of voters' failures a quorum of `replicas` tolerates.
pub fn tolerated_failures(replicas: u32) -> u32 {
    replicas.saturating_sub(1) / 2
}

#[cfg(test)]
pub(crate) mod test_cluster {
    use crate::crd::{RaftCluster, RaftClusterSpec};

    /// A cluster as the API server would hand it over.
    pub fn cluster(name: &str, spec: RaftClusterSpec) -> RaftCluster {
        let mut c = RaftCluster::new(name, spec);
        c.metadata.namespace = Some("default".into());
        c.metadata.uid = Some("0b7e2b9e-5f4b-4c39-9d0e-3c4b2f1a0001".into());
        c.metadata.generation = Some(1);
        c
    }
}
