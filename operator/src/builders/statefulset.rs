//! The StatefulSet that runs the replicas.
//!
//! `podManagementPolicy: Parallel` because a quorum must start together;
//! `updateStrategy: OnDelete` because the operator, not the StatefulSet
//! controller, decides which pod restarts next (followers first, the leader
//! last, each caught up before the next); the replica count is the
//! reconciler's decision (never below the members still in the Raft
//! configuration), not the spec's.

use super::child_meta;
use crate::crd::RaftCluster;
use crate::error::Result;
use crate::names::{
    CONFIG_DIR, CONFIG_FILE, CONFIG_HASH_ANNOTATION, DATA_DIR, GRPC_PORT, METRICS_PORT, Names,
    TLS_CA_KEY, TLS_DIR,
};
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, Lifecycle, LifecycleHandler, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource,
    SecurityContext, SleepAction, TopologySpreadConstraint, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// The user the replica runs as (no root, no privilege).
pub const RUN_AS_USER: i64 = 65532;

/// How the replicas serve TLS (see the replica's TLS configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodTls {
    /// The Secret mounted at [`TLS_DIR`]: `ca.crt`, `<pod>.crt`, `<pod>.key`.
    pub secret: String,
    pub client_cert_auth: bool,
    pub metrics: bool,
}

/// What the StatefulSet builder needs besides the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatefulSetParams {
    /// The replica count the reconciler decided on.
    pub replicas: u32,
    /// [`ReplicaConfig::restart_hash`](crate::replica_config::ReplicaConfig::restart_hash).
    pub config_hash: String,
    /// The grace period: long enough for a leader to hand over and flush.
    pub termination_grace_seconds: i64,
    /// `None`: plain gRPC (only for clusters created without TLS).
    pub tls: Option<PodTls>,
}

/// The environment variable that says whether a StatefulSet's replicas
/// serve TLS (how the reconciler tells a running cluster's mode).
pub const TLS_CA_ENV: &str = "RAFT_TLS_CA";

/// Whether a StatefulSet (as built here) runs its replicas with TLS.
pub fn runs_tls(statefulset: &StatefulSet) -> bool {
    statefulset
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.iter().find(|c| c.name == "raft"))
        .and_then(|c| c.env.as_ref())
        .is_some_and(|env| env.iter().any(|e| e.name == TLS_CA_ENV))
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn value_env(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value),
        ..EnvVar::default()
    }
}

/// `RAFT_NAME` from the pod name, and with TLS the certificate files of
/// this pod (`$(POD_NAME)` is expanded by the kubelet).
fn env(tls: Option<&PodTls>) -> Vec<EnvVar> {
    let mut env = vec![field_env("RAFT_NAME", "metadata.name")];
    if let Some(tls) = tls {
        env.push(field_env("POD_NAME", "metadata.name"));
        env.push(value_env(
            "RAFT_TLS_CERT",
            format!("{TLS_DIR}/$(POD_NAME).crt"),
        ));
        env.push(value_env(
            "RAFT_TLS_KEY",
            format!("{TLS_DIR}/$(POD_NAME).key"),
        ));
        env.push(value_env(TLS_CA_ENV, format!("{TLS_DIR}/{TLS_CA_KEY}")));
        if tls.client_cert_auth {
            env.push(value_env("RAFT_TLS_CLIENT_CERT_AUTH", "true".to_string()));
        }
        if tls.metrics {
            env.push(value_env("RAFT_TLS_METRICS", "true".to_string()));
        }
    }
    env
}

fn default_affinity(names: &Names) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        label_selector: Some(LabelSelector {
                            match_labels: Some(names.selector_labels()),
                            ..LabelSelector::default()
                        }),
                        topology_key: "kubernetes.io/hostname".to_string(),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

fn default_spread(names: &Names) -> Vec<TopologySpreadConstraint> {
    vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: "topology.kubernetes.io/zone".to_string(),
        when_unsatisfiable: "ScheduleAnyway".to_string(),
        label_selector: Some(LabelSelector {
            match_labels: Some(names.selector_labels()),
            ..LabelSelector::default()
        }),
        ..TopologySpreadConstraint::default()
    }]
}

fn http_probe(path: &str, period: i32, failures: i32, https: bool) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String("metrics".to_string()),
            // The kubelet does not verify the certificate of an HTTPS probe.
            scheme: https.then(|| "HTTPS".to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn container(cluster: &RaftCluster, tls: Option<&PodTls>) -> Container {
    let spec = &cluster.spec;
    let https = tls.is_some_and(|t| t.metrics);
    let mut mounts = vec![
        VolumeMount {
            name: "data".to_string(),
            mount_path: DATA_DIR.to_string(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "config".to_string(),
            mount_path: CONFIG_DIR.to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "tmp".to_string(),
            mount_path: "/tmp".to_string(),
            ..VolumeMount::default()
        },
    ];
    if tls.is_some() {
        mounts.push(VolumeMount {
            name: "tls".to_string(),
            mount_path: TLS_DIR.to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    Container {
        name: "raft".to_string(),
        image: Some(format!("{}:{}", spec.image, spec.version)),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_string()),
        args: Some(vec![
            "serve".to_string(),
            "-c".to_string(),
            format!("{CONFIG_DIR}/{CONFIG_FILE}"),
        ]),
        env: Some(env(tls)),
        ports: Some(vec![
            ContainerPort {
                name: Some("grpc".to_string()),
                container_port: i32::from(GRPC_PORT),
                protocol: Some("TCP".to_string()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("metrics".to_string()),
                container_port: i32::from(METRICS_PORT),
                protocol: Some("TCP".to_string()),
                ..ContainerPort::default()
            },
        ]),
        resources: spec.resources.clone(),
        // Log replay on a large volume can take a while: the startup probe
        // gives it five minutes before liveness applies.
        startup_probe: Some(http_probe("/healthz", 5, 60, https)),
        liveness_probe: Some(http_probe("/healthz", 10, 3, https)),
        readiness_probe: Some(http_probe("/readyz", 5, 2, https)),
        // Let endpoints drop the pod before the replica stops answering;
        // on SIGTERM the replica itself hands its leaderships over.
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: 2 }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS_USER),
            run_as_group: Some(RUN_AS_USER),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_string()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

fn volumes(names: &Names, tls: Option<&PodTls>) -> Vec<Volume> {
    let mut volumes = vec![
        Volume {
            name: "config".to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: names.config_map(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".to_string(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    if let Some(tls) = tls {
        volumes.push(Volume {
            name: "tls".to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tls.secret.clone()),
                // Owner and group (fsGroup) read, nobody else.
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    volumes
}

/// The StatefulSet of `params.replicas` replicas.
pub fn statefulset(
    cluster: &RaftCluster,
    names: &Names,
    params: &StatefulSetParams,
) -> Result<StatefulSet> {
    let spec = &cluster.spec;
    let pod_labels = names.labels();
    let annotations = BTreeMap::from([
        (
            CONFIG_HASH_ANNOTATION.to_string(),
            params.config_hash.clone(),
        ),
        (
            "kubectl.kubernetes.io/default-container".to_string(),
            "raft".to_string(),
        ),
    ]);
    let mut claim_labels = names.selector_labels();
    claim_labels.insert("app.kubernetes.io/component".into(), "replica".into());
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".to_string()),
            labels: Some(claim_labels),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            storage_class_name: spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    spec.storage.size.clone(),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };
    let retention = &spec.persistent_volume_claim_retention_policy;
    Ok(StatefulSet {
        metadata: child_meta(cluster, names.statefulset())?,
        spec: Some(StatefulSetSpec {
            replicas: Some(params.replicas as i32),
            service_name: Some(names.peer_service()),
            pod_management_policy: Some("Parallel".to_string()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_string()),
                ..StatefulSetUpdateStrategy::default()
            }),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_scaled: Some(retention.when_scaled.as_str().to_string()),
                    when_deleted: Some(retention.when_deleted.as_str().to_string()),
                },
            ),
            selector: LabelSelector {
                match_labels: Some(names.selector_labels()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container(cluster, params.tls.as_ref())],
                    affinity: Some(
                        spec.affinity
                            .clone()
                            .unwrap_or_else(|| default_affinity(names)),
                    ),
                    tolerations: spec.tolerations.clone(),
                    node_selector: spec.node_selector.clone(),
                    topology_spread_constraints: Some(
                        spec.topology_spread_constraints
                            .clone()
                            .unwrap_or_else(|| default_spread(names)),
                    ),
                    termination_grace_period_seconds: Some(params.termination_grace_seconds),
                    enable_service_links: Some(false),
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS_USER),
                        run_as_group: Some(RUN_AS_USER),
                        fs_group: Some(RUN_AS_USER),
                        fs_group_change_policy: Some("OnRootMismatch".to_string()),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_string(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    volumes: Some(volumes(names, params.tls.as_ref())),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    })
}
