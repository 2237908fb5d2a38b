//! `spec.tls.mode: CertManager`: one cert-manager `Certificate` per
//! replica and one for the operator's client certificate, as dynamic
//! objects (cert-manager may not be installed, and the operator does not
//! depend on its types); their Secrets are assembled into `<cluster>-tls`.

use super::bundle::{CA_CERT, ReplicaBundle, TLS_CERT, TLS_KEY};
use super::inspect::pem_blocks;
use super::{Pem, TlsError};
use crate::builders::child_meta;
use crate::crd::{CertManagerTls, IssuerKind, RaftCluster};
use crate::error::Result;
use crate::names::{Names, OPERATOR_CLIENT_NAME};
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;
use std::collections::BTreeMap;

pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
        "certificates",
    )
}

fn certificate(
    cluster: &RaftCluster,
    spec: &CertManagerTls,
    name: String,
    common_name: &str,
    dns_names: &[String],
    usages: &[&str],
) -> Result<DynamicObject> {
    let mut object = DynamicObject::new(&name, &api_resource());
    object.metadata = child_meta(cluster, name.clone())?;
    let kind = match spec.issuer_ref.kind {
        IssuerKind::Issuer => "Issuer",
        IssuerKind::ClusterIssuer => "ClusterIssuer",
    };
    let mut body = json!({
        "secretName": name,
        "commonName": common_name,
        "usages": usages,
        "privateKey": {"algorithm": "ECDSA", "size": 256, "encoding": "PKCS8", "rotationPolicy": "Always"},
        "issuerRef": {"name": spec.issuer_ref.name, "kind": kind, "group": spec.issuer_ref.group},
    });
    if !dns_names.is_empty() {
        body["dnsNames"] = json!(dns_names);
    }
    if let Some(d) = &spec.duration {
        body["duration"] = json!(d);
    }
    object.data = json!({ "spec": body });
    Ok(object)
}

/// The Certificate of the replica at `ordinal` (Secret of the same name).
pub fn replica_certificate(
    cluster: &RaftCluster,
    names: &Names,
    spec: &CertManagerTls,
    ordinal: u32,
) -> Result<DynamicObject> {
    certificate(
        cluster,
        spec,
        names.replica_certificate(ordinal),
        &names.pod(ordinal),
        &names.replica_dns_names(ordinal),
        &[
            "digital signature",
            "key encipherment",
            "server auth",
            "client auth",
        ],
    )
}

/// The Certificate of the operator's client certificate.
pub fn operator_certificate(
    cluster: &RaftCluster,
    names: &Names,
    spec: &CertManagerTls,
) -> Result<DynamicObject> {
    certificate(
        cluster,
        spec,
        names.operator_certificate(),
        OPERATOR_CLIENT_NAME,
        &[],
        &["digital signature", "key encipherment", "client auth"],
    )
}

/// The pair of a cert-manager Secret (`tls.crt`, `tls.key`).
pub fn pair(data: &BTreeMap<String, String>) -> Option<Pem> {
    Some(Pem {
        cert: data.get(TLS_CERT).filter(|c| !c.is_empty())?.clone(),
        key: data.get(TLS_KEY).filter(|k| !k.is_empty())?.clone(),
    })
}

/// What assembling found.
#[derive(Debug, PartialEq, Eq)]
pub enum Assembled {
    /// Every Secret is there.
    Complete(ReplicaBundle),
    /// cert-manager has not issued these yet; the bundle has the others.
    Waiting(ReplicaBundle, Vec<String>),
}

/// The cert-manager Secrets as found, by pod: the Secret's name and its
/// data (`None`: the Secret does not exist yet).
pub type IssuedSecrets = BTreeMap<String, (String, Option<BTreeMap<String, String>>)>;

/// `<cluster>-tls` from the cert-manager Secrets. The CA bundle is every
/// distinct `ca.crt`.
pub fn assemble(secrets: &IssuedSecrets) -> Result<Assembled, TlsError> {
    let mut bundle = ReplicaBundle::default();
    let mut cas: Vec<Vec<u8>> = Vec::new();
    let mut waiting = Vec::new();
    for (pod, (secret_name, data)) in secrets {
        let Some(data) = data else {
            waiting.push(secret_name.clone());
            continue;
        };
        let Some(pem) = pair(data) else {
            waiting.push(secret_name.clone());
            continue;
        };
        let ca = data.get(CA_CERT).filter(|c| !c.trim().is_empty()).ok_or_else(|| {
            TlsError(format!(
                "Secret {secret_name} (from cert-manager) has no ca.crt: the issuer does not publish its CA (ACME issuers do not); use a CA, Vault or private-CA issuer"
            ))
        })?;
        for block in
            pem_blocks(ca).map_err(|e| TlsError(format!("Secret {secret_name} ca.crt: {e}")))?
        {
            if !cas.contains(&block) {
                cas.push(block.clone());
                bundle.ca.push_str(&pem_text(&block));
            }
        }
        bundle.replicas.insert(pod.clone(), pem);
    }
    Ok(if waiting.is_empty() {
        Assembled::Complete(bundle)
    } else {
        Assembled::Waiting(bundle, waiting)
    })
}

/// DER as a PEM CERTIFICATE block.
fn pem_text(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}
