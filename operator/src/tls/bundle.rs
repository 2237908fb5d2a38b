//! The two Secrets of TLS, key by key, both ways.
//!
//! `<cluster>-tls` (mounted by every replica at `/etc/raft/tls`):
//!
//! | key | what |
//! |---|---|
//! | `ca.crt` | the CA bundle: every CA whose certificates the replicas accept |
//! | `<pod>.crt` | the pod's certificate (PEM, leaf first) |
//! | `<pod>.key` | its private key (PEM) |
//!
//! `<cluster>-ca` (read only by the operator, never mounted; Automatic mode):
//!
//! | key | what |
//! |---|---|
//! | `ca.crt`, `ca.key` | the current CA |
//! | `previous-ca.crt` | the CA being rotated out, still in the bundle |
//! | `rotation-started` | unix seconds when the current CA entered the bundle |
//! | `operator.crt`, `operator.key` | the operator's client certificate |

use super::Pem;
use super::inspect::pem_blocks;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use std::collections::BTreeMap;

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const PREVIOUS_CA: &str = "previous-ca.crt";
pub const ROTATION_STARTED: &str = "rotation-started";
pub const OPERATOR_CERT: &str = "operator.crt";
pub const OPERATOR_KEY: &str = "operator.key";
/// The keys of a `kubernetes.io/tls` Secret.
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

/// A Secret's data as text (PEM is text; anything else is read lossily
/// and then fails to parse, with a message).
pub fn secret_text(secret: &Secret) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    if let Some(string_data) = &secret.string_data {
        out.extend(string_data.clone());
    }
    out
}

/// Secret data from text.
pub fn secret_data(text: &BTreeMap<String, String>) -> BTreeMap<String, ByteString> {
    text.iter()
        .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
        .collect()
}

/// Whether every certificate of `ca` is in the bundle `bundle`.
pub fn bundle_contains(bundle: &str, ca: &str) -> bool {
    match (pem_blocks(bundle), pem_blocks(ca)) {
        (Ok(have), Ok(want)) => want.iter().all(|w| have.contains(w)),
        _ => false,
    }
}

/// `<cluster>-tls`: what the replicas mount.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaBundle {
    /// PEM CA bundle.
    pub ca: String,
    /// By pod name.
    pub replicas: BTreeMap<String, Pem>,
}

impl ReplicaBundle {
    pub fn from_text(data: &BTreeMap<String, String>) -> ReplicaBundle {
        let replicas = data
            .iter()
            .filter_map(|(k, cert)| {
                let pod = k.strip_suffix(".crt")?;
                if pod == "ca" || pod == "tls" {
                    return None;
                }
                let key = data.get(&format!("{pod}.key"))?;
                Some((
                    pod.to_string(),
                    Pem {
                        cert: cert.clone(),
                        key: key.clone(),
                    },
                ))
            })
            .collect();
        ReplicaBundle {
            ca: data.get(CA_CERT).cloned().unwrap_or_default(),
            replicas,
        }
    }

    pub fn to_text(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::from([(CA_CERT.to_string(), self.ca.clone())]);
        for (pod, pem) in &self.replicas {
            out.insert(format!("{pod}.crt"), pem.cert.clone());
            out.insert(format!("{pod}.key"), pem.key.clone());
        }
        out
    }
}

/// `<cluster>-ca`: the operator's CA and client certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaStore {
    pub ca: Option<Pem>,
    pub previous: Option<String>,
    pub rotation_started: Option<i64>,
    pub operator: Option<Pem>,
}

fn pair(data: &BTreeMap<String, String>, cert: &str, key: &str) -> Option<Pem> {
    Some(Pem {
        cert: data.get(cert)?.clone(),
        key: data.get(key)?.clone(),
    })
}

impl CaStore {
    pub fn from_text(data: &BTreeMap<String, String>) -> CaStore {
        CaStore {
            ca: pair(data, CA_CERT, CA_KEY),
            previous: data
                .get(PREVIOUS_CA)
                .filter(|p| !p.trim().is_empty())
                .cloned(),
            rotation_started: data
                .get(ROTATION_STARTED)
                .and_then(|t| t.trim().parse().ok()),
            operator: pair(data, OPERATOR_CERT, OPERATOR_KEY),
        }
    }

    pub fn to_text(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(ca) = &self.ca {
            out.insert(CA_CERT.to_string(), ca.cert.clone());
            out.insert(CA_KEY.to_string(), ca.key.clone());
        }
        if let Some(previous) = &self.previous {
            out.insert(PREVIOUS_CA.to_string(), previous.clone());
        }
        if let Some(t) = self.rotation_started {
            out.insert(ROTATION_STARTED.to_string(), t.to_string());
        }
        if let Some(op) = &self.operator {
            out.insert(OPERATOR_CERT.to_string(), op.cert.clone());
            out.insert(OPERATOR_KEY.to_string(), op.key.clone());
        }
        out
    }

    /// The bundle the replicas trust: the current CA, then the one being
    /// rotated out.
    pub fn bundle(&self) -> String {
        let mut out = String::new();
        for pem in self
            .ca
            .as_ref()
            .map(|c| c.cert.as_str())
            .into_iter()
            .chain(self.previous.as_deref())
        {
            out.push_str(pem.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replica_bundle_round_trips_and_pairs_only_complete_entries() {
        let data = BTreeMap::from([
            ("ca.crt".to_string(), "CA".to_string()),
            ("kv-0.crt".to_string(), "C0".to_string()),
            ("kv-0.key".to_string(), "K0".to_string()),
            ("kv-1.crt".to_string(), "C1".to_string()),
        ]);
        let bundle = ReplicaBundle::from_text(&data);
        assert_eq!(bundle.ca, "CA");
        assert_eq!(bundle.replicas.len(), 1, "kv-1 has no key: not an entry");
        let back = bundle.to_text();
        assert_eq!(back.len(), 3);
        assert_eq!(back["kv-0.key"], "K0");
    }

    #[test]
    fn the_ca_store_round_trips() {
        let store = CaStore {
            ca: Some(Pem {
                cert: "C".into(),
                key: "K".into(),
            }),
            previous: Some("P".into()),
            rotation_started: Some(42),
            operator: None,
        };
        assert_eq!(CaStore::from_text(&store.to_text()), store);
        assert_eq!(store.bundle(), "C\nP\n");
    }
}
