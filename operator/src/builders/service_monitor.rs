//! The Prometheus Operator ServiceMonitor (`monitoring.coreos.com/v1`),
//! built as a dynamic object: its CRD may not exist, and the operator must
//! not depend on its types.

use super::{Transport, child_meta};
use crate::crd::RaftCluster;
use crate::error::{Error, Result};
use crate::names::Names;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};

/// The ServiceMonitor's API resource.
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("monitoring.coreos.com", "v1", "ServiceMonitor"),
        "servicemonitors",
    )
}

/// Scrapes `/metrics` of every replica through the peer Service (which
/// lists every pod, ready or not: a replica that is not ready is the one
/// whose metrics matter most).
///
/// With `transport.metrics_tls` it scrapes HTTPS, verifying the replicas
/// against the cluster's CA bundle under the peer Service's name (every
/// replica certificate carries it).
pub fn service_monitor(
    cluster: &RaftCluster,
    names: &Names,
    transport: &Transport,
) -> Result<DynamicObject> {
    let mut meta = child_meta(cluster, names.service_monitor())?;
    let monitoring = &cluster.spec.monitoring;
    if let Some(labels) = meta.labels.as_mut() {
        labels.extend(monitoring.labels.clone());
    }
    let mut endpoint = serde_json::json!({"port": "metrics", "path": "/metrics", "scheme": "http"});
    if let (true, Some(secret)) = (transport.metrics_tls, &transport.tls_secret) {
        endpoint["scheme"] = "https".into();
        endpoint["tlsConfig"] = serde_json::json!({
            "ca": {"secret": {"name": secret, "key": crate::names::TLS_CA_KEY}},
            "serverName": format!("{}.{}.svc", names.peer_service(), names.namespace),
        });
    }
    if let Some(interval) = &monitoring.interval {
        endpoint["interval"] = serde_json::Value::String(interval.clone());
    }
    let mut selector = names.selector_labels();
    selector.insert(crate::names::SERVICE_LABEL.into(), "peer".into());
    let mut object = DynamicObject::new(&names.service_monitor(), &api_resource());
    object.metadata = meta;
    object.data = serde_json::json!({
        "spec": {
            "selector": {"matchLabels": selector},
            "namespaceSelector": {"matchNames": [names.namespace]},
            "endpoints": [endpoint],
            "targetLabels": ["app.kubernetes.io/instance"],
        }
    });
    // Catch a selector that could never serialize before it reaches the API.
    serde_json::to_string(&object).map_err(|e| Error::Serialize {
        what: "ServiceMonitor",
        message: e.to_string(),
    })?;
    Ok(object)
}
