//! The three Services of a cluster: headless peer discovery, client access
//! to ready replicas, and the leader of group 0.

use super::{Transport, child_meta};
use crate::crd::RaftCluster;
use crate::error::Result;
use crate::names::{GRPC_PORT, METRICS_PORT, Names, ROLE_LABEL, ROLE_LEADER, SERVICE_LABEL};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn port(name: &str, number: u16, tls: bool) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port: i32::from(number),
        target_port: Some(IntOrString::String(name.to_string())),
        protocol: Some("TCP".to_string()),
        app_protocol: Some(
            match (name == "grpc", tls) {
                (true, false) => "kubernetes.io/h2c",
                (false, false) => "http",
                (_, true) => "https",
            }
            .to_string(),
        ),
        ..ServicePort::default()
    }
}

/// Headless, and publishing addresses of pods that are not ready: peers
/// must find each other before any of them can be ready.
pub fn peer_service(
    cluster: &RaftCluster,
    names: &Names,
    transport: &Transport,
) -> Result<Service> {
    let mut metadata = child_meta(cluster, names.peer_service())?;
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert(SERVICE_LABEL.to_string(), "peer".to_string());
    }
    Ok(Service {
        metadata,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names.selector_labels()),
            ports: Some(vec![
                port("grpc", GRPC_PORT, transport.grpc_tls()),
                port("metrics", METRICS_PORT, transport.metrics_tls),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// Every ready replica: any of them serves reads and forwards writes.
pub fn client_service(
    cluster: &RaftCluster,
    names: &Names,
    transport: &Transport,
) -> Result<Service> {
    Ok(Service {
        metadata: child_meta(cluster, names.client_service())?,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(names.selector_labels()),
            ports: Some(vec![port("grpc", GRPC_PORT, transport.grpc_tls())]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// The pod the operator labels `kuberaft.io/role=leader` (group 0's leader):
/// a direct route for clients that want to skip the forwarding hop.
pub fn leader_service(
    cluster: &RaftCluster,
    names: &Names,
    transport: &Transport,
) -> Result<Service> {
    let mut selector = names.selector_labels();
    selector.insert(ROLE_LABEL.to_string(), ROLE_LEADER.to_string());
    Ok(Service {
        metadata: child_meta(cluster, names.leader_service())?,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(selector),
            ports: Some(vec![port("grpc", GRPC_PORT, transport.grpc_tls())]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}
