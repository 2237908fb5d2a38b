//! The names, labels and ports every object of a RaftCluster shares, so
//! builders, the reconciler and the tests never spell them twice.
//!
//! Replica `k` of cluster `c` is pod `c-k`, Raft node id `k + 1`, reachable
//! at `c-k.c-peer.<namespace>.svc`.

use std::collections::BTreeMap;

/// The one gRPC port of a replica: peer, client and admin services.
pub const GRPC_PORT: u16 = 7400;
/// HTTP `/metrics`, `/healthz`, `/readyz` of a replica.
pub const METRICS_PORT: u16 = 8400;
/// Where the replica keeps its log and snapshots (the PVC's mount).
pub const DATA_DIR: &str = "/data";
/// Where the generated configuration is mounted.
pub const CONFIG_DIR: &str = "/etc/kuberaft";
/// The file name of the configuration inside the ConfigMap.
pub const CONFIG_FILE: &str = "raft.json";
/// Where the replicas' TLS Secret is mounted.
pub const TLS_DIR: &str = "/etc/raft/tls";
/// The CA bundle's key in the TLS Secret.
pub const TLS_CA_KEY: &str = "ca.crt";
/// The common name of the operator's client certificate (an admin name of
/// every replica).
pub const OPERATOR_CLIENT_NAME: &str = "raft-operator";

/// The label the operator keeps on the pod leading group 0.
pub const ROLE_LABEL: &str = "kuberaft.io/role";
pub const ROLE_LEADER: &str = "leader";
/// Tells the peer Service (the one with every pod's metrics port) apart.
pub const SERVICE_LABEL: &str = "kuberaft.io/service";
/// The pod-template annotation that changes when the configuration changes
/// in a way that needs a restart (so it starts a rolling update).
pub const CONFIG_HASH_ANNOTATION: &str = "kuberaft.io/config-hash";
/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "kuberaft-operator";

/// Names of one cluster's objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub cluster: String,
    pub namespace: String,
}

impl Names {
    pub fn new(cluster: &str, namespace: &str) -> Names {
        Names {
            cluster: cluster.to_string(),
            namespace: namespace.to_string(),
        }
    }

    pub fn statefulset(&self) -> String {
        self.cluster.clone()
    }
    /// The headless Service that gives every pod its DNS name.
    pub fn peer_service(&self) -> String {
        format!("{}-peer", self.cluster)
    }
    /// Ready replicas, for clients.
    pub fn client_service(&self) -> String {
        self.cluster.clone()
    }
    /// The pod labelled as leader of group 0.
    pub fn leader_service(&self) -> String {
        format!("{}-leader", self.cluster)
    }
    pub fn config_map(&self) -> String {
        format!("{}-config", self.cluster)
    }
    pub fn pdb(&self) -> String {
        self.cluster.clone()
    }
    pub fn service_monitor(&self) -> String {
        self.cluster.clone()
    }
    pub fn network_policy(&self) -> String {
        self.cluster.clone()
    }
    /// The Secret every replica mounts: `ca.crt` and `<pod>.crt`,
    /// `<pod>.key` per pod.
    pub fn tls_secret(&self) -> String {
        format!("{}-tls", self.cluster)
    }
    /// The operator's own Secret: the CA's key and the operator's client
    /// certificate. Never mounted in a pod.
    pub fn ca_secret(&self) -> String {
        format!("{}-ca", self.cluster)
    }
    /// The cert-manager Certificate (and its Secret) of one replica.
    pub fn replica_certificate(&self, ordinal: u32) -> String {
        format!("{}-tls", self.pod(ordinal))
    }
    /// The cert-manager Certificate (and its Secret) of the operator's
    /// client certificate.
    pub fn operator_certificate(&self) -> String {
        format!("{}-operator-tls", self.cluster)
    }
    /// Every DNS name a replica's certificate carries: its peer names (the
    /// host part of its member address first), its pod name, and the
    /// cluster's Service names.
    pub fn replica_dns_names(&self, ordinal: u32) -> Vec<String> {
        let pod = self.pod(ordinal);
        let peer = self.peer_service();
        let ns = &self.namespace;
        let mut out = vec![
            self.pod_domain(ordinal),
            format!("{pod}.{peer}.{ns}.svc.cluster.local"),
            format!("{pod}.{peer}.{ns}"),
            format!("{pod}.{peer}"),
            pod,
        ];
        for service in [self.client_service(), self.leader_service(), peer] {
            out.push(format!("{service}.{ns}.svc"));
            out.push(format!("{service}.{ns}.svc.cluster.local"));
            out.push(format!("{service}.{ns}"));
            out.push(service);
        }
        out
    }
    pub fn pod(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.cluster)
    }
    /// The stable DNS name of a replica's pod.
    pub fn pod_domain(&self, ordinal: u32) -> String {
        format!(
            "{}.{}.{}.svc",
            self.pod(ordinal),
            self.peer_service(),
            self.namespace
        )
    }
    /// The ordinal of one of this cluster's pods, from its name.
    pub fn ordinal_of(&self, pod: &str) -> Option<u32> {
        pod.strip_prefix(&self.cluster)?
            .strip_prefix('-')?
            .parse()
            .ok()
    }

    /// The labels that select this cluster's replica pods.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "kuberaft".to_string()),
            (
                "app.kubernetes.io/instance".to_string(),
                self.cluster.clone(),
            ),
        ])
    }

    /// The selector as the scale subresource wants it.
    pub fn selector_string(&self) -> String {
        self.selector_labels()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The labels on every object the operator makes.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert(
            "app.kubernetes.io/managed-by".to_string(),
            FIELD_MANAGER.to_string(),
        );
        labels.insert(
            "app.kubernetes.io/component".to_string(),
            "replica".to_string(),
        );
        labels
    }

    /// The cluster id stamped on every data directory and peer message:
    /// namespace and name, so a RaftCluster recreated under the same name
    /// picks up volumes that were retained, and no other cluster can.
    pub fn cluster_id(&self) -> String {
        let raw = format!("{}.{}", self.namespace, self.cluster);
        let mut id: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        id.truncate(63);
        id
    }
}

/// Raft node id of the replica at `ordinal`.
pub fn node_id(ordinal: u32) -> u64 {
    u64::from(ordinal) + 1
}

/// Ordinal of the replica with Raft node id `id` (ids start at 1).
pub fn ordinal(id: u64) -> Option<u32> {
    id.checked_sub(1).and_then(|o| u32::try_from(o).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_map_to_ordinals_and_ids() {
        let n = Names::new("kv", "prod");
        assert_eq!(n.pod(2), "kv-2");
        assert_eq!(n.ordinal_of("kv-2"), Some(2));
        assert_eq!(n.ordinal_of("kv-peer"), None);
        assert_eq!(n.ordinal_of("kvx-1"), None);
        assert_eq!(n.pod_domain(0), "kv-0.kv-peer.prod.svc");
        assert_eq!(node_id(0), 1);
        assert_eq!(ordinal(1), Some(0));
        assert_eq!(ordinal(0), None);
    }

    #[test]
    fn cluster_id_is_valid_for_the_replica() {
        let long = "x".repeat(100);
        let id = Names::new(&long, "ns").cluster_id();
        assert_eq!(id.len(), 63);
        assert!(id.starts_with("ns.xxx"));
    }
}
