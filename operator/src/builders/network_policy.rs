//! The cluster's NetworkPolicy (`spec.networkPolicy`): the replicas accept
//! the gRPC port from their own cluster's replicas, the operator and the
//! allowed clients, the metrics port from Prometheus' namespaces, and
//! nothing else; they reach out only to their peers' gRPC port and DNS.
//! Kubelet probes are not subject to NetworkPolicy.

use super::child_meta;
use crate::crd::{NetworkPolicyPeerSpec, RaftCluster};
use crate::error::Result;
use crate::names::{GRPC_PORT, METRICS_PORT, Names};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// The label of the operator's pods (chart and deploy/operator.yaml).
pub const OPERATOR_POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "kuberaft-operator");

fn port(number: u16, protocol: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(number))),
        protocol: Some(protocol.to_string()),
        ..NetworkPolicyPort::default()
    }
}

fn peer(spec: &NetworkPolicyPeerSpec) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: spec.pod_selector.clone(),
        namespace_selector: spec.namespace_selector.clone(),
        ..NetworkPolicyPeer::default()
    }
}

fn replicas(names: &Names) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(names.selector_labels()),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

/// The operator's pods in any namespace, unless the spec says otherwise.
fn operator(spec: Option<&NetworkPolicyPeerSpec>) -> NetworkPolicyPeer {
    match spec {
        Some(s) => peer(s),
        None => NetworkPolicyPeer {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    OPERATOR_POD_LABEL.0.to_string(),
                    OPERATOR_POD_LABEL.1.to_string(),
                )])),
                ..LabelSelector::default()
            }),
            namespace_selector: Some(LabelSelector::default()),
            ..NetworkPolicyPeer::default()
        },
    }
}

pub fn network_policy(cluster: &RaftCluster, names: &Names) -> Result<NetworkPolicy> {
    let spec = &cluster.spec.network_policy;
    let mut grpc_from = vec![replicas(names), operator(spec.operator.as_ref())];
    grpc_from.extend(spec.clients.iter().map(peer));
    let mut ingress = vec![NetworkPolicyIngressRule {
        from: Some(grpc_from),
        ports: Some(vec![port(GRPC_PORT, "TCP")]),
    }];
    if let Some(selector) = &spec.prometheus_namespace_selector {
        ingress.push(NetworkPolicyIngressRule {
            from: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(selector.clone()),
                ..NetworkPolicyPeer::default()
            }]),
            ports: Some(vec![port(METRICS_PORT, "TCP")]),
        });
    }
    let egress = vec![
        NetworkPolicyEgressRule {
            to: Some(vec![replicas(names)]),
            ports: Some(vec![port(GRPC_PORT, "TCP")]),
        },
        // DNS, wherever the cluster's resolver runs.
        NetworkPolicyEgressRule {
            to: None,
            ports: Some(vec![port(53, "UDP"), port(53, "TCP")]),
        },
    ];
    Ok(NetworkPolicy {
        metadata: child_meta(cluster, names.network_policy())?,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(names.selector_labels()),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_string(), "Egress".to_string()]),
            ingress: Some(ingress),
            egress: Some(egress),
        }),
    })
}
