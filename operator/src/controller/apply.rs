//! Applying the owned objects with server-side apply, in dependency order:
//! configuration and Services before the StatefulSet that uses them.

use super::tls::{TlsCondition, TlsOutcome, reconcile_tls};
use super::{Context, Observation, publish};
use crate::builders::statefulset::{PodTls, StatefulSetParams};
use crate::builders::{self};
use crate::crd::RaftCluster;
use crate::error::{Error, Result};
use crate::membership::{ClusterView, Plan};
use crate::names::{FIELD_MANAGER, Names};
use crate::replica_config::{InitialClusterState, ReplicaConfig};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde::Serialize;
use std::fmt::Debug;

async fn apply<K>(api: &Api<K>, name: &str, object: &K) -> Result<()>
where
    K: kube::Resource + Clone + Debug + Serialize + serde::de::DeserializeOwned,
{
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await?;
    Ok(())
}

/// Deletes `name` if it exists (a read first, so that a cluster without
/// the object costs no write on every reconcile).
async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: kube::Resource + Clone + Debug + serde::de::DeserializeOwned,
{
    if api.get_opt(name).await?.is_none() {
        return Ok(());
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The grace period a replica gets to hand over leadership and flush:
/// a few election timeouts, at least 30 s.
fn grace_seconds(cluster: &RaftCluster) -> i64 {
    crate::replica_config::timing(cluster)
        .map(|t| (t.tick * t.election_ticks * 5).as_secs() as i64)
        .unwrap_or(0)
        .max(30)
}

/// Applies every owned object; the TLS step's condition.
pub async fn apply_children(
    ctx: &Context,
    cluster: &RaftCluster,
    names: &Names,
    observation: &Observation,
    plan: &Plan,
    view: &ClusterView,
) -> Result<TlsCondition> {
    let client = ctx.client.clone();
    let ns = names.namespace.as_str();
    // Certificates before the pods that mount them.
    let TlsOutcome {
        transport,
        condition,
    } = reconcile_tls(ctx, cluster, names, observation, plan.statefulset_replicas).await?;
    let state = if observation.observed.bootstrapped || view.available() {
        InitialClusterState::Existing
    } else {
        InitialClusterState::New
    };
    let peers = plan.statefulset_replicas;

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let config_map = builders::config_map::config_map(cluster, names, peers, state)?;
    apply(&config_maps, &names.config_map(), &config_map).await?;

    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    for service in [
        builders::services::peer_service(cluster, names, &transport)?,
        builders::services::client_service(cluster, names, &transport)?,
        builders::services::leader_service(cluster, names, &transport)?,
    ] {
        let name = service.metadata.name.clone().unwrap_or_default();
        apply(&services, &name, &service).await?;
    }

    let config = ReplicaConfig::for_cluster(cluster, names, peers, state)?;
    let params = StatefulSetParams {
        replicas: plan.statefulset_replicas,
        config_hash: config.restart_hash(),
        termination_grace_seconds: grace_seconds(cluster),
        tls: transport.tls_secret.clone().map(|secret| PodTls {
            secret,
            client_cert_auth: cluster.spec.tls.client_cert_auth,
            metrics: transport.metrics_tls,
        }),
    };
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let statefulset = builders::statefulset::statefulset(cluster, names, &params)?;
    apply(&statefulsets, &names.statefulset(), &statefulset).await?;

    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
    if cluster.spec.network_policy.enabled {
        let policy = builders::network_policy::network_policy(cluster, names)?;
        apply(&policies, &names.network_policy(), &policy).await?;
    } else {
        delete_if_present(&policies, &names.network_policy()).await?;
    }

    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    if cluster.spec.pod_disruption_budget.enabled {
        // Budget for the voters there are now (a scale-in in progress
        // still has them all), never for more than the spec wants.
        let voters = view
            .groups
            .get(&0)
            .map_or(observation.observed.desired, |g| g.voters.len() as u32);
        let pdb = builders::pdb::pdb(cluster, names, voters.max(1))?;
        apply(&pdbs, &names.pdb(), &pdb).await?;
    } else {
        delete_if_present(&pdbs, &names.pdb()).await?;
    }

    let monitors: Api<DynamicObject> =
        Api::namespaced_with(client, ns, &builders::service_monitor::api_resource());
    let result = if cluster.spec.monitoring.service_monitor {
        let monitor = builders::service_monitor::service_monitor(cluster, names, &transport)?;
        apply(&monitors, &names.service_monitor(), &monitor).await
    } else {
        delete_if_present(&monitors, &names.service_monitor()).await
    };
    match result {
        Ok(()) => Ok(condition),
        // No ServiceMonitor CRD: nothing to apply or delete.
        Err(Error::Kube(kube::Error::Api(e))) if e.code == 404 => {
            if cluster.spec.monitoring.service_monitor {
                publish(
                    ctx,
                    cluster,
                    EventType::Warning,
                    "ServiceMonitorUnavailable",
                    "Apply",
                    "spec.monitoring.serviceMonitor is true but the ServiceMonitor CRD (monitoring.coreos.com/v1) is not installed; \
                     install the Prometheus Operator or set it to false".into(),
                )
                .await;
            }
            Ok(condition)
        }
        Err(e) => Err(e),
    }
}
