//! Observing a cluster: its StatefulSet, its pods, and the admin status of
//! every replica whose pod has an address, asked concurrently with a
//! timeout each (a replica that does not answer is simply unreachable).

use super::{Context, PodDirectory};
use crate::admin::{AdminEndpoint, AdminTls};
use crate::crd::RaftCluster;
use crate::error::Result;
use crate::membership::{Directory, Observed, PodView, ReplicaView};
use crate::names::Names;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The label the StatefulSet controller puts on each pod.
const REVISION_LABEL: &str = "controller-revision-hash";

/// One observation of a cluster.
pub struct Observation {
    pub observed: Observed,
    pub statefulset: Option<StatefulSet>,
    /// This cluster's pods by ordinal.
    pub pods: BTreeMap<u32, Pod>,
    /// Pod IPs by ordinal.
    pub ips: BTreeMap<u32, String>,
    /// The operator's TLS credentials towards this cluster.
    pub tls: Option<Arc<AdminTls>>,
}

impl Observation {
    pub fn directory(&self, names: &Names) -> PodDirectory {
        PodDirectory {
            names: names.clone(),
            ips: self.ips.clone(),
            tls: self.tls.clone(),
        }
    }

    /// Admin endpoints of the replicas that answered.
    pub fn endpoints(&self, names: &Names) -> Vec<AdminEndpoint> {
        let directory = self.directory(names);
        self.observed
            .replicas
            .iter()
            .filter(|(_, r)| r.status.is_some())
            .filter(|(o, _)| self.ips.contains_key(o))
            .map(|(o, _)| directory.admin_endpoint(*o))
            .collect()
    }
}

fn pod_view(pod: &Pod, update_revision: Option<&str>) -> PodView {
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let revision = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map(String::as_str);
    PodView {
        ready,
        updated: match (update_revision, revision) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        },
        terminating: pod.metadata.deletion_timestamp.is_some(),
    }
}

pub async fn observe(
    ctx: &Context,
    cluster: &RaftCluster,
    names: &Names,
    tls: Option<Arc<AdminTls>>,
) -> Result<Observation> {
    let statefulsets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let statefulset = statefulsets.get_opt(&names.statefulset()).await?;
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let list = pods_api
        .list(&ListParams::default().labels(&names.selector_string()))
        .await?;
    let update_revision = statefulset
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.update_revision.clone());

    let mut pods = BTreeMap::new();
    let mut ips = BTreeMap::new();
    for pod in list.items {
        let Some(ordinal) = pod
            .metadata
            .name
            .as_deref()
            .and_then(|n| names.ordinal_of(n))
        else {
            continue;
        };
        if let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) {
            ips.insert(ordinal, ip);
        }
        pods.insert(ordinal, pod);
    }

    let directory = PodDirectory {
        names: names.clone(),
        ips: ips.clone(),
        tls: tls.clone(),
    };
    let asks = ips.keys().map(|&ordinal| {
        let endpoint = directory.admin_endpoint(ordinal);
        let admin = ctx.admin.clone();
        async move { (ordinal, admin.status(&endpoint).await) }
    });
    let statuses: BTreeMap<u32, _> = futures::future::join_all(asks)
        .await
        .into_iter()
        .filter_map(|(ordinal, result)| match result {
            Ok(status) => Some((ordinal, status)),
            Err(e) => {
                tracing::debug!(ordinal, error = %e, "replica did not answer");
                None
            }
        })
        .collect();

    let replicas = pods
        .iter()
        .map(|(&ordinal, pod)| {
            (
                ordinal,
                ReplicaView {
                    pod: Some(pod_view(pod, update_revision.as_deref())),
                    status: statuses.get(&ordinal).cloned(),
                },
            )
        })
        .collect();
    let previous = cluster.status.as_ref();
    let observed = Observed {
        desired: u32::try_from(cluster.spec.replicas).unwrap_or(1).max(1),
        groups: u32::try_from(cluster.spec.groups).unwrap_or(1).max(1),
        statefulset_replicas: statefulset
            .as_ref()
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.replicas)
            .and_then(|r| u32::try_from(r).ok())
            .unwrap_or(0),
        bootstrapped: previous.is_some_and(|s| s.bootstrapped),
        bootstrap_replicas: previous
            .and_then(|s| s.bootstrap_replicas)
            .and_then(|r| u32::try_from(r).ok())
            .unwrap_or_else(|| u32::try_from(cluster.spec.replicas).unwrap_or(1).max(1)),
        replicas,
    };
    Ok(Observation {
        observed,
        statefulset,
        pods,
        ips,
        tls,
    })
}
