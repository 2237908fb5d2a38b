//! TLS in the reconcile: the operator's credentials towards the replicas
//! (read before observing them), and keeping `<cluster>-tls` current in
//! every mode (before the StatefulSet is applied, so a new pod's
//! certificate exists when the pod starts).
//!
//! A running cluster keeps the transport it runs with: if the spec asks
//! for the other one (only possible when the schema's rule was skipped,
//! or for a cluster created before `spec.tls` existed, which reads as
//! enabled by default), the operator changes nothing about TLS and says
//! so in the `TLSReady` condition, because switching would split the
//! quorum during the rolling restart.

use super::{Context, Observation, publish};
use crate::admin::AdminTls;
use crate::builders::statefulset::runs_tls;
use crate::builders::{Transport, child_meta};
use crate::crd::{RaftCluster, TlsMode};
use crate::error::{Error, Result};
use crate::names::{FIELD_MANAGER, Names};
use crate::tls::bundle::{CaStore, ReplicaBundle, secret_data, secret_text};
use crate::tls::cert_manager::{self, Assembled};
use crate::tls::rotation::{self, PROPAGATION_SECONDS, Wanted};
use crate::tls::{Pem, user_secret};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::events::EventType;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The `TLSReady` condition's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsCondition {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

impl TlsCondition {
    fn ok(reason: &'static str, message: String) -> TlsCondition {
        TlsCondition {
            ready: true,
            reason,
            message,
        }
    }
    fn problem(reason: &'static str, message: String) -> TlsCondition {
        TlsCondition {
            ready: false,
            reason,
            message,
        }
    }
}

/// What the TLS step decided.
pub struct TlsOutcome {
    pub transport: Transport,
    pub condition: TlsCondition,
}

/// Shortest certificate lifetime accepted: rotation must have time to
/// spread before a certificate expires.
const MIN_LIFETIME_SECONDS: i64 = 3600;

pub fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn secret(api: &Api<Secret>, name: &str) -> Result<Option<BTreeMap<String, String>>> {
    Ok(api.get_opt(name).await?.map(|s| secret_text(&s)))
}

/// The operator's credentials for this cluster's replicas, from what
/// exists now; `None` for a plain cluster or before the certificates exist.
pub async fn credentials(
    ctx: &Context,
    cluster: &RaftCluster,
    names: &Names,
) -> Result<Option<Arc<AdminTls>>> {
    let tls = &cluster.spec.tls;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    // The bundle exists exactly when the replicas serve TLS (it is only
    // made for them), whatever the spec says now.
    let Some(bundle) = secret(&secrets, &names.tls_secret()).await? else {
        return Ok(None);
    };
    let ca = ReplicaBundle::from_text(&bundle).ca;
    let identity = match (tls.mode, &tls.secret) {
        (TlsMode::Automatic, _) => secret(&secrets, &names.ca_secret())
            .await?
            .and_then(|d| CaStore::from_text(&d).operator),
        (TlsMode::Secret, Some(s)) => secret(&secrets, &s.operator_client_secret_name)
            .await?
            .and_then(|d| cert_manager::pair(&d)),
        (TlsMode::Secret, None) => None,
        (TlsMode::CertManager, _) => secret(&secrets, &names.operator_certificate())
            .await?
            .and_then(|d| cert_manager::pair(&d)),
    };
    Ok(identity.map(|identity| Arc::new(AdminTls { ca, identity })))
}

async fn apply_secret(
    ctx: &Context,
    cluster: &RaftCluster,
    name: String,
    data: &BTreeMap<String, String>,
) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(
        ctx.client.clone(),
        &crate::builders::names(cluster)?.namespace,
    );
    let secret = Secret {
        metadata: child_meta(cluster, name.clone())?,
        type_: Some("Opaque".to_string()),
        data: Some(secret_data(data)),
        ..Secret::default()
    };
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&secret),
    )
    .await?;
    Ok(())
}

/// The pods that need a certificate, with their names.
fn pods(names: &Names, replicas: u32) -> BTreeMap<String, Vec<String>> {
    (0..replicas)
        .map(|o| (names.pod(o), names.replica_dns_names(o)))
        .collect()
}

fn lifetime(field: &str, text: &str) -> std::result::Result<i64, String> {
    let seconds = crate::duration::parse(text)
        .map(|d| d.as_secs() as i64)
        .ok_or_else(|| {
            format!("spec.tls.automatic.{field} {text:?} is not a duration: write e.g. 2160h")
        })?;
    if seconds < MIN_LIFETIME_SECONDS {
        return Err(format!(
            "spec.tls.automatic.{field} is {text}: use at least 1h, so that a rotation spreads ({PROPAGATION_SECONDS} s) well before expiry"
        ));
    }
    Ok(seconds)
}

/// Keeps the TLS material current for `replicas` pods and says how the
/// pods serve.
pub async fn reconcile_tls(
    ctx: &Context,
    cluster: &RaftCluster,
    names: &Names,
    observation: &Observation,
    replicas: u32,
) -> Result<TlsOutcome> {
    let spec = &cluster.spec.tls;
    let running = observation.statefulset.as_ref().map(runs_tls);
    let enabled = running.unwrap_or(spec.enabled);
    let transport = Transport {
        tls_secret: enabled.then(|| names.tls_secret()),
        metrics_tls: enabled && spec.metrics,
    };
    if running.is_some_and(|r| r != spec.enabled) {
        let message = if enabled {
            "the replicas run with TLS but spec.tls.enabled is false: switching a running cluster would split the quorum during the restart, so TLS stays on; set spec.tls.enabled back to true"
        } else {
            "the replicas run without TLS (the cluster was created without it) but spec.tls.enabled is true: switching a running cluster would split the quorum during the restart, so it stays plain; set spec.tls.enabled: false, or create a new cluster with TLS and move the data"
        };
        if enabled {
            // Keep the certificates of a TLS cluster current all the same.
            maintain(ctx, cluster, names, replicas).await?;
        }
        return Ok(TlsOutcome {
            transport,
            condition: TlsCondition::problem("TLSChangeRefused", message.to_string()),
        });
    }
    if !enabled {
        return Ok(TlsOutcome {
            transport,
            condition: TlsCondition::ok(
                "Disabled",
                "spec.tls.enabled is false: peers, clients and the operator speak plain gRPC"
                    .into(),
            ),
        });
    }
    let condition = maintain(ctx, cluster, names, replicas).await?;
    Ok(TlsOutcome {
        transport,
        condition,
    })
}

async fn maintain(
    ctx: &Context,
    cluster: &RaftCluster,
    names: &Names,
    replicas: u32,
) -> Result<TlsCondition> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let observed = secret(&secrets, &names.tls_secret()).await?;
    let bundle = observed
        .as_ref()
        .map(ReplicaBundle::from_text)
        .unwrap_or_default();
    let now = now_seconds();
    let pods = pods(names, replicas);
    let tls = &cluster.spec.tls;
    if let Some(problem) = tls.problem() {
        return Ok(TlsCondition::problem("InvalidSpec", problem.to_string()));
    }
    match tls.mode {
        TlsMode::Automatic => automatic(ctx, cluster, names, &secrets, bundle, pods, now).await,
        TlsMode::Secret => {
            let Some(user) = &tls.secret else {
                return Ok(TlsCondition::problem(
                    "SecretNotNamed",
                    "spec.tls.mode is Secret but spec.tls.secret is missing: name the Secret with the replicas' certificates (secret.name) and the operator's client certificate (secret.operatorClientSecretName)".into(),
                ));
            };
            let Some(data) = secret(&secrets, &user.name).await? else {
                return Ok(TlsCondition::problem(
                    "SecretMissing",
                    format!(
                        "Secret {} does not exist in namespace {}: create it with ca.crt and <pod>.crt/<pod>.key for every pod (or one shared tls.crt/tls.key)",
                        user.name, names.namespace
                    ),
                ));
            };
            let wanted = match user_secret::replica_bundle(&user.name, &data, &pods, now) {
                Ok(b) => b,
                Err(e) => return Ok(TlsCondition::problem("SecretInvalid", e.0)),
            };
            let client = secret(&secrets, &user.operator_client_secret_name).await?;
            let client = match client {
                None => Err(crate::tls::TlsError(format!(
                    "Secret {} (spec.tls.secret.operatorClientSecretName) does not exist in namespace {}: create it with the operator's client certificate as tls.crt and tls.key",
                    user.operator_client_secret_name, names.namespace
                ))),
                Some(d) => user_secret::operator_client(
                    &user.operator_client_secret_name,
                    &d,
                    &wanted.ca,
                    now,
                ),
            };
            if wanted != bundle {
                apply_secret(ctx, cluster, names.tls_secret(), &wanted.to_text()).await?;
            }
            Ok(match client {
                Ok(_) => TlsCondition::ok(
                    "SecretValid",
                    format!(
                        "the certificates of Secret {} are valid for every pod and copied into {}",
                        user.name,
                        names.tls_secret()
                    ),
                ),
                Err(e) => TlsCondition::problem("OperatorClientSecretInvalid", e.0),
            })
        }
        TlsMode::CertManager => {
            cert_manager_mode(ctx, cluster, names, &secrets, bundle, replicas).await
        }
    }
}

async fn automatic(
    ctx: &Context,
    cluster: &RaftCluster,
    names: &Names,
    secrets: &Api<Secret>,
    bundle: ReplicaBundle,
    pods: BTreeMap<String, Vec<String>>,
    now: i64,
) -> Result<TlsCondition> {
    let auto = &cluster.spec.tls.automatic;
    let lifetimes = lifetime("certificateLifetime", &auto.certificate_lifetime)
        .and_then(|c| Ok((c, lifetime("caLifetime", &auto.ca_lifetime)?)));
    let (certificate_lifetime, ca_lifetime) = match lifetimes {
        Ok(l) => l,
        Err(message) => return Ok(TlsCondition::problem("InvalidSpec", message)),
    };
    let store = secret(secrets, &names.ca_secret())
        .await?
        .map(|d| CaStore::from_text(&d))
        .unwrap_or_default();
    let wanted = Wanted {
        id: names.cluster_id(),
        replicas: pods,
        certificate_lifetime,
        ca_lifetime,
    };
    let decision = rotation::decide(&store, &bundle, &wanted, now);
    if !decision.is_empty() {
        let (new_store, new_bundle) =
            match rotation::carry_out(&decision, &store, &bundle, &wanted, now) {
                Ok(x) => x,
                Err(e) => return Ok(TlsCondition::problem("IssueFailed", e.0)),
            };
        // The CA first: a crash in between leaves certificates the
        // bundle (re-derived from it next time) trusts.
        if new_store != store {
            apply_secret(ctx, cluster, names.ca_secret(), &new_store.to_text()).await?;
        }
        if new_bundle != bundle {
            apply_secret(ctx, cluster, names.tls_secret(), &new_bundle.to_text()).await?;
        }
        publish(
            ctx,
            cluster,
            EventType::Normal,
            "CertificatesIssued",
            "TLS",
            decision.summary(),
        )
        .await;
    }
    Ok(TlsCondition::ok(
        "CertificatesIssued",
        format!(
            "the operator's CA ({}) issued the certificates of {} replicas and of the operator",
            names.ca_secret(),
            wanted.replicas.len()
        ),
    ))
}

async fn cert_manager_mode(
    ctx: &Context,
    cluster: &RaftCluster,
    names: &Names,
    secrets: &Api<Secret>,
    bundle: ReplicaBundle,
    replicas: u32,
) -> Result<TlsCondition> {
    let Some(spec) = &cluster.spec.tls.cert_manager else {
        return Ok(TlsCondition::problem(
            "CertManagerNotConfigured",
            "spec.tls.mode is CertManager but spec.tls.certManager.issuerRef is missing: name the Issuer or ClusterIssuer".into(),
        ));
    };
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &names.namespace,
        &cert_manager::api_resource(),
    );
    let mut objects = vec![cert_manager::operator_certificate(cluster, names, spec)?];
    for o in 0..replicas {
        objects.push(cert_manager::replica_certificate(cluster, names, spec, o)?);
    }
    for object in &objects {
        let name = object.metadata.name.clone().unwrap_or_default();
        match api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(object),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {
                return Ok(TlsCondition::problem(
                    "CertManagerMissing",
                    "spec.tls.mode is CertManager but the cert-manager.io/v1 Certificate CRD is not installed: install cert-manager (https://cert-manager.io/docs/installation/), or use mode Automatic".into(),
                ));
            }
            Err(e) => return Err(Error::Kube(e)),
        }
    }
    // Certificates of pods that are gone.
    for pod in bundle.replicas.keys() {
        if let Some(o) = names.ordinal_of(pod)
            && o >= replicas
        {
            match api
                .delete(&names.replica_certificate(o), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(Error::Kube(e)),
            }
        }
    }
    let mut found = BTreeMap::new();
    for o in 0..replicas {
        let name = names.replica_certificate(o);
        let data = secret(secrets, &name).await?;
        found.insert(names.pod(o), (name, data));
    }
    let (assembled, waiting) = match cert_manager::assemble(&found) {
        Ok(Assembled::Complete(b)) => (b, Vec::new()),
        Ok(Assembled::Waiting(b, w)) => (b, w),
        Err(e) => return Ok(TlsCondition::problem("CertManagerSecretInvalid", e.0)),
    };
    if assembled != bundle {
        apply_secret(ctx, cluster, names.tls_secret(), &assembled.to_text()).await?;
    }
    let operator: Option<Pem> = secret(secrets, &names.operator_certificate())
        .await?
        .and_then(|d| cert_manager::pair(&d));
    let mut waiting = waiting;
    if operator.is_none() {
        waiting.push(names.operator_certificate());
    }
    if !waiting.is_empty() {
        return Ok(TlsCondition::problem(
            "WaitingForCertManager",
            format!(
                "cert-manager has not issued {} yet: see `kubectl describe certificate` for the issuer's answer",
                waiting.join(", ")
            ),
        ));
    }
    Ok(TlsCondition::ok(
        "CertificatesIssued",
        format!(
            "cert-manager issued the certificates of {replicas} replicas and of the operator; assembled into {}",
            names.tls_secret()
        ),
    ))
}
