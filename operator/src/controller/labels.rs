//! The leader label: `kuberaft.io/role=leader` on the pod leading group 0
//! and on no other pod, so the leader Service routes to it. Corrected on
//! every reconcile and whenever a status stream reports a new leader.

use crate::error::Result;
use crate::names::{Names, ROLE_LABEL, ROLE_LEADER};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use std::collections::BTreeMap;

/// The label patches that make `leader` (an ordinal; `None`: no known
/// leader) the only labelled pod: `(pod name, new value)`.
pub fn label_changes(
    names: &Names,
    pods: &BTreeMap<u32, Pod>,
    leader: Option<u32>,
) -> Vec<(String, Option<&'static str>)> {
    pods.iter()
        .filter_map(|(&ordinal, pod)| {
            let has = pod
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(ROLE_LABEL))
                .map(String::as_str);
            let want = (Some(ordinal) == leader).then_some(ROLE_LEADER);
            (has != want).then(|| (names.pod(ordinal), want))
        })
        .collect()
}

/// Applies [`label_changes`] with JSON merge patches (the pods belong to
/// the StatefulSet; only this one label is the operator's).
pub async fn label_leader(
    client: &Client,
    names: &Names,
    pods: &BTreeMap<u32, Pod>,
    leader: Option<u32>,
) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &names.namespace);
    for (pod, value) in label_changes(names, pods, leader) {
        let patch = serde_json::json!({"metadata": {"labels": {ROLE_LABEL: value}}});
        match api
            .patch(&pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            // The pod went away meanwhile: nothing to label.
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
