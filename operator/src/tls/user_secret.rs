//! `spec.tls.mode: Secret`: checking the user's Secrets and copying the
//! replicas' one into the `<cluster>-tls` layout.
//!
//! The replicas' Secret holds either
//! - one certificate per replica: `ca.crt`, and `<pod>.crt`, `<pod>.key`
//!   for every pod (the layout of `<cluster>-tls` itself), or
//! - one certificate shared by every replica: `tls.crt`, `tls.key`,
//!   `ca.crt` (a `kubernetes.io/tls` Secret, e.g. from a corporate PKI),
//!   whose DNS names list every replica's peer name
//!   (`<pod>.<cluster>-peer.<namespace>.svc`); wildcards are not accepted
//!   by the replicas' member check.
//!
//! The operator's client certificate Secret holds `tls.crt` and `tls.key`
//! (`ca.crt` ignored), signed by the same CA, naming `raft-operator` (or
//! `admin`) as its common name or a DNS name.

use super::bundle::{CA_CERT, ReplicaBundle, TLS_CERT, TLS_KEY};
use super::inspect;
use super::{Pem, TlsError};
use crate::names::OPERATOR_CLIENT_NAME;
use std::collections::BTreeMap;

/// The names the replicas give the admin role by default.
const ADMIN_NAMES: [&str; 2] = [OPERATOR_CLIENT_NAME, "admin"];

fn check_cert(
    what: &str,
    pem: &Pem,
    ca: &str,
    must_name: &[String],
    now: i64,
) -> Result<(), TlsError> {
    let info = inspect::parse(&pem.cert).map_err(|e| TlsError(format!("{what}: {e}")))?;
    if !inspect::key_matches(&info, &pem.key) {
        return Err(TlsError(format!(
            "{what}: the key does not belong to the certificate (or is not a PEM private key)"
        )));
    }
    if !inspect::issued_by(&pem.cert, ca) {
        return Err(TlsError(format!(
            "{what}: the certificate is not signed by a CA in ca.crt"
        )));
    }
    if info.not_after <= now {
        return Err(TlsError(format!(
            "{what}: the certificate has expired; renew it"
        )));
    }
    let missing: Vec<&String> = must_name.iter().filter(|n| !info.names(n)).collect();
    if !missing.is_empty() {
        return Err(TlsError(format!(
            "{what}: the certificate does not name {}; add them as DNS names (the replicas only accept a peer whose certificate names a member)",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(())
}

/// The replicas' bundle from the user's Secret `name`. `pods` maps every
/// pod to its DNS names, the first being the host of its member address
/// (the one name its certificate must carry).
pub fn replica_bundle(
    name: &str,
    data: &BTreeMap<String, String>,
    pods: &BTreeMap<String, Vec<String>>,
    now: i64,
) -> Result<ReplicaBundle, TlsError> {
    let ca = data.get(CA_CERT).ok_or_else(|| {
        TlsError(format!(
            "Secret {name} has no key ca.crt: add the PEM CA certificate that signed the replicas' certificates"
        ))
    })?;
    inspect::parse_all(ca).map_err(|e| TlsError(format!("Secret {name} key ca.crt: {e}")))?;
    let mut bundle = ReplicaBundle {
        ca: ca.clone(),
        replicas: BTreeMap::new(),
    };
    if let Some(cert) = data.get(TLS_CERT) {
        let key = data.get(TLS_KEY).ok_or_else(|| {
            TlsError(format!(
                "Secret {name} has tls.crt but no tls.key: add the certificate's private key"
            ))
        })?;
        let pem = Pem {
            cert: cert.clone(),
            key: key.clone(),
        };
        let members: Vec<String> = pods.values().filter_map(|n| n.first().cloned()).collect();
        check_cert(
            &format!("Secret {name} key tls.crt"),
            &pem,
            ca,
            &members,
            now,
        )?;
        for pod in pods.keys() {
            bundle.replicas.insert(pod.clone(), pem.clone());
        }
        return Ok(bundle);
    }
    let missing: Vec<String> = pods
        .keys()
        .flat_map(|pod| [format!("{pod}.crt"), format!("{pod}.key")])
        .filter(|k| !data.contains_key(k))
        .collect();
    if !missing.is_empty() {
        return Err(TlsError(format!(
            "Secret {name} lacks the keys {}: give every replica its certificate and key (<pod>.crt, <pod>.key), or one shared certificate as tls.crt and tls.key",
            missing.join(", ")
        )));
    }
    for (pod, names) in pods {
        let pem = Pem {
            cert: data[&format!("{pod}.crt")].clone(),
            key: data[&format!("{pod}.key")].clone(),
        };
        let member: Vec<String> = names.first().cloned().into_iter().collect();
        check_cert(
            &format!("Secret {name} key {pod}.crt"),
            &pem,
            ca,
            &member,
            now,
        )?;
        bundle.replicas.insert(pod.clone(), pem);
    }
    Ok(bundle)
}

/// The operator's client certificate from the user's Secret `name`,
/// checked against the replicas' CA bundle `ca`.
pub fn operator_client(
    name: &str,
    data: &BTreeMap<String, String>,
    ca: &str,
    now: i64,
) -> Result<Pem, TlsError> {
    let (Some(cert), Some(key)) = (data.get(TLS_CERT), data.get(TLS_KEY)) else {
        return Err(TlsError(format!(
            "Secret {name} needs tls.crt and tls.key: the operator's client certificate (common name {OPERATOR_CLIENT_NAME}) and its key"
        )));
    };
    let pem = Pem {
        cert: cert.clone(),
        key: key.clone(),
    };
    let what = format!("Secret {name} (the operator's client certificate)");
    check_cert(&what, &pem, ca, &[], now)?;
    let info = inspect::parse(cert).map_err(|e| TlsError(format!("{what}: {e}")))?;
    if !ADMIN_NAMES.iter().any(|n| info.names(n)) {
        return Err(TlsError(format!(
            "{what}: it must name {} (common name or DNS name), an admin name of the replicas",
            ADMIN_NAMES.join(" or ")
        )));
    }
    Ok(pem)
}
