//! The RaftCluster controller: one [`reconcile`] that observes (the cluster
//! object, its StatefulSet and pods, every replica's admin status), plans
//! one step ([`crate::membership::plan`]), applies the owned objects with
//! server-side apply, carries the step out, and writes the status.
//!
//! Nothing is remembered between reconciles except what the status holds
//! (`bootstrapped`, `bootstrapReplicas`): a restarted operator, or a new
//! lease holder, picks up where the last one stopped.

mod apply;
pub mod labels;
pub mod leader_watch;
mod observe;
pub mod status;
pub mod tls;

use crate::admin::{AdminEndpoint, AdminTls, ReplicaAdmin};
use crate::builders;
use crate::crd::RaftCluster;
use crate::error::{Error, Result};
use crate::membership::{self, ClusterView, Directory, Step};
use crate::metrics::Metrics;
use crate::names::{GRPC_PORT, Names};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use kuberaft_proto::admin as pb;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

pub use observe::Observation;

/// How soon to look again.
const BUSY_REQUEUE: Duration = Duration::from_secs(2);
const BLOCKED_REQUEUE: Duration = Duration::from_secs(10);
const IDLE_REQUEUE: Duration = Duration::from_secs(30);
const PAUSED_REQUEUE: Duration = Duration::from_secs(60);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub admin: Arc<dyn ReplicaAdmin>,
    pub metrics: Metrics,
    /// One recorder, so repeated events become a series instead of a flood.
    pub recorder: Recorder,
    /// The status-stream watchers that keep the leader label current.
    pub watches: leader_watch::Watches,
    /// Whether to run the status-stream watchers (off in scenario tests,
    /// whose replicas have no stream).
    pub watch_leaders: bool,
}

impl Context {
    pub fn new(client: Client, admin: Arc<dyn ReplicaAdmin>, metrics: Metrics) -> Context {
        let reporter = Reporter {
            controller: "kuberaft-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            admin,
            metrics,
            watches: leader_watch::Watches::default(),
            watch_leaders: true,
        }
    }
}

/// Pods as the operator reaches them: the admin API at the pod IP (no DNS
/// on the hot path), members by their stable DNS names. With TLS the
/// replica's certificate is checked under its peer DNS name.
pub struct PodDirectory {
    pub names: Names,
    pub ips: BTreeMap<u32, String>,
    pub tls: Option<Arc<AdminTls>>,
}

impl Directory for PodDirectory {
    fn admin_endpoint(&self, ordinal: u32) -> AdminEndpoint {
        let address = match self.ips.get(&ordinal) {
            Some(ip) if ip.contains(':') => format!("[{ip}]:{GRPC_PORT}"),
            Some(ip) => format!("{ip}:{GRPC_PORT}"),
            None => format!("{}:{GRPC_PORT}", self.names.pod_domain(ordinal)),
        };
        AdminEndpoint {
            address,
            tls: self
                .tls
                .clone()
                .map(|tls| (self.names.pod_domain(ordinal), tls)),
        }
    }

    fn member(&self, ordinal: u32) -> pb::Member {
        let address = format!("{}:{GRPC_PORT}", self.names.pod_domain(ordinal));
        pb::Member {
            id: crate::names::node_id(ordinal),
            name: self.names.pod(ordinal),
            address: address.clone(),
            client_address: address,
        }
    }
}

/// Publishes an event; a failure to publish is logged, never fatal.
async fn publish(
    ctx: &Context,
    cluster: &RaftCluster,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &cluster.object_ref(&())).await {
        warn!(error = %e, reason, "could not publish an event");
    }
    if let (Some(ns), name) = (cluster.namespace(), cluster.name_any()) {
        ctx.metrics
            .actions
            .with_label_values(&[&ns, &name, reason])
            .inc();
    }
}

/// What the schema's CEL rules guard, checked again against what exists:
/// the number of groups and the storage cannot change after creation.
fn rejected_change(cluster: &RaftCluster, observation: &Observation) -> Option<String> {
    let groups = observation
        .observed
        .replicas
        .values()
        .filter_map(|r| r.status.as_ref())
        .map(|s| s.groups.len())
        .find(|n| *n > 0);
    if let Some(n) = groups
        && n as i32 != cluster.spec.groups
    {
        return Some(format!(
            "spec.groups is {} but the replicas host {n} groups: groups cannot change after creation; set it back to {n}",
            cluster.spec.groups
        ));
    }
    let claim = observation
        .statefulset
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.volume_claim_templates.as_ref())
        .and_then(|t| t.first())
        .and_then(|c| c.spec.as_ref());
    if let Some(claim) = claim {
        let size = claim
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"));
        let storage = &cluster.spec.storage;
        if size.is_some_and(|s| *s != storage.size)
            || claim.storage_class_name != storage.storage_class_name
        {
            return Some(format!(
                "spec.storage changed, but a StatefulSet's volumes cannot: set it back to size {} class {}",
                size.map_or("?", |s| s.0.as_str()),
                claim.storage_class_name.as_deref().unwrap_or("(default)")
            ));
        }
    }
    None
}

/// Reconciles one RaftCluster.
pub async fn reconcile(cluster: Arc<RaftCluster>, ctx: Arc<Context>) -> Result<Action> {
    let names = builders::names(&cluster)?;
    let labels = [names.namespace.as_str(), names.cluster.as_str()];
    ctx.metrics.reconciles.with_label_values(&labels).inc();
    let _timer = ctx
        .metrics
        .duration
        .with_label_values(&labels)
        .start_timer();

    if cluster.metadata.deletion_timestamp.is_some() {
        // Owner references garbage-collect every child; PVCs follow the
        // StatefulSet's retention policy.
        ctx.watches.stop(&names);
        ctx.metrics.forget(&names.namespace, &names.cluster);
        return Ok(Action::await_change());
    }

    let admin_tls = tls::credentials(&ctx, &cluster, &names).await?;
    let observation = observe::observe(&ctx, &cluster, &names, admin_tls).await?;
    let plan = membership::plan(&observation.observed);
    let view = ClusterView::build(&observation.observed);
    let was_available = cluster
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == status::AVAILABLE))
        .is_some_and(|c| c.status == "True");
    let was_paused = cluster
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == status::PAUSED))
        .is_some_and(|c| c.status == "True");

    let mut problem = rejected_change(&cluster, &observation).map(|m| ("SpecRejected", m));
    if problem.is_none()
        && let Err(e) = crate::replica_config::timing(&cluster)
    {
        problem = Some(("InvalidSpec", e.to_string()));
    }

    let paused = cluster.spec.paused;
    let mut tls_condition = None;
    let requeue = if paused {
        if !was_paused {
            publish(
                &ctx,
                &cluster,
                EventType::Warning,
                "ReconciliationPaused",
                "Pause",
                "spec.paused is true: no objects, members or labels are changed until it is false"
                    .into(),
            )
            .await;
        }
        PAUSED_REQUEUE
    } else if let Some((reason, message)) = &problem {
        publish(
            &ctx,
            &cluster,
            EventType::Warning,
            reason,
            "Validate",
            message.clone(),
        )
        .await;
        PAUSED_REQUEUE
    } else {
        tls_condition =
            Some(apply::apply_children(&ctx, &cluster, &names, &observation, &plan, &view).await?);
        labels::label_leader(
            &ctx.client,
            &names,
            &observation.pods,
            view.groups.get(&0).map(|g| g.leader),
        )
        .await?;
        if ctx.watch_leaders {
            ctx.watches
                .ensure(&ctx, &names, observation.endpoints(&names));
        }
        let mut requeue = execute(&ctx, &cluster, &names, &observation, &plan.step, &view).await?;
        if requeue == IDLE_REQUEUE && plan.progress.is_some() {
            requeue = BUSY_REQUEUE;
        }
        if plan.blocked.is_some() {
            requeue = requeue.min(BLOCKED_REQUEUE);
        }
        requeue
    };

    let new_status = status::build(&status::StatusInput {
        cluster: &cluster,
        names: &names,
        observed: &observation.observed,
        view: &view,
        plan: &plan,
        problem,
        tls: tls_condition,
        now: Time(jiff_now()),
    });
    let available = view.available();
    if was_available && !available {
        let message = new_status
            .conditions
            .iter()
            .find(|c| c.type_ == status::AVAILABLE)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        publish(
            &ctx,
            &cluster,
            EventType::Warning,
            "QuorumLost",
            "Observe",
            format!("the cluster lost its healthy quorum: {message}"),
        )
        .await;
    }
    if let Some(b) = &plan.blocked
        && !paused
    {
        warn!(cluster = %names.cluster, namespace = %names.namespace, reason = b.reason, "{}", b.message);
    }
    ctx.metrics
        .available
        .with_label_values(&labels)
        .set(i64::from(available));
    ctx.metrics
        .ready_replicas
        .with_label_values(&labels)
        .set(i64::from(new_status.ready_replicas));
    ctx.metrics.members.with_label_values(&labels).set(
        view.groups
            .get(&0)
            .map_or(0, |g| (g.voters.len() + g.learners.len()) as i64),
    );
    ctx.metrics
        .healthy_members
        .with_label_values(&labels)
        .set(view.healthy.len() as i64);

    if cluster.status.as_ref() != Some(&new_status) {
        let api: Api<RaftCluster> = Api::namespaced(ctx.client.clone(), &names.namespace);
        let body = serde_json::json!({
            "apiVersion": "kuberaft.io/v1alpha1",
            "kind": "RaftCluster",
            "status": new_status,
        });
        api.patch_status(
            &names.cluster,
            &PatchParams::apply(crate::names::FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
    }
    Ok(Action::requeue(requeue))
}

fn jiff_now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

/// Carries out the planned step and records its event; the next requeue.
async fn execute(
    ctx: &Context,
    cluster: &RaftCluster,
    names: &Names,
    observation: &Observation,
    step: &Step,
    view: &ClusterView,
) -> Result<Duration> {
    if *step == Step::None {
        return Ok(IDLE_REQUEUE);
    }
    info!(cluster = %names.cluster, namespace = %names.namespace, step = %step, "reconcile step");
    let directory = observation.directory(names);
    if let Step::DeletePod { ordinal } = *step {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
        match pods
            .delete(&names.pod(ordinal), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        publish(
            ctx,
            cluster,
            EventType::Normal,
            step.event_reason(),
            "RestartPod",
            format!("restarting {} on the new pod template", names.pod(ordinal)),
        )
        .await;
        return Ok(BUSY_REQUEUE);
    }
    match membership::execute(step, view, ctx.admin.as_ref(), &directory).await {
        Ok(_) => {
            publish(
                ctx,
                cluster,
                EventType::Normal,
                step.event_reason(),
                "Membership",
                format!("{step}"),
            )
            .await;
            Ok(BUSY_REQUEUE)
        }
        Err(e) => {
            publish(
                ctx,
                cluster,
                EventType::Warning,
                "MembershipChangeFailed",
                "Membership",
                format!("could not {step}: {e}"),
            )
            .await;
            Err(Error::Admin {
                replica: step.to_string(),
                endpoint: e.endpoint.clone(),
                message: e.message,
            })
        }
    }
}

/// What to do when a reconcile fails: log, count, and retry soon (admin
/// errors usually mean a change is still settling).
pub fn error_policy(cluster: Arc<RaftCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(cluster = %cluster.name_any(), error = %error, "reconcile failed");
    ctx.metrics
        .failures
        .with_label_values(&[
            &cluster.namespace().unwrap_or_default(),
            &cluster.name_any(),
            error.metric_label(),
        ])
        .inc();
    match error {
        Error::Admin { .. } => Action::requeue(Duration::from_secs(3)),
        _ => Action::requeue(Duration::from_secs(15)),
    }
}

/// Runs the controller until a shutdown signal.
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let clusters: Api<RaftCluster> = Api::all(client.clone());
    let config = watcher::Config::default().any_semantic();
    let pods = watcher::Config::default().labels("app.kubernetes.io/name=kuberaft");
    let trigger = ctx.watches.trigger_stream();
    Controller::new(clusters, config.clone())
        .owns(Api::<StatefulSet>::all(client.clone()), config.clone())
        .owns(Api::<ConfigMap>::all(client.clone()), config.clone())
        .owns(Api::<Service>::all(client.clone()), config.clone())
        .owns(
            Api::<PodDisruptionBudget>::all(client.clone()),
            config.clone(),
        )
        .watches(Api::<Pod>::all(client.clone()), pods, |pod| {
            let instance = pod.labels().get("app.kubernetes.io/instance")?.clone();
            Some(ObjectRef::new(&instance).within(&pod.namespace()?))
        })
        .reconcile_all_on(trigger)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "controller");
            }
        })
        .await;
}
