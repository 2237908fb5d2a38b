//! The CRD copies under `deploy/` and `charts/` are exactly what
//! `raft-operator crd` prints, and the CRD says what the issue asks of it.

use kube::CustomResourceExt;
use kuberaft_operator::crd::{RaftCluster, crd_yaml};
use std::path::Path;

const COPIES: [&str; 2] = [
    "deploy/crd.yaml",
    "charts/kuberaft-operator/crds/raftcluster.yaml",
];

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the operator is in the workspace")
}

#[test]
fn checked_in_crd_copies_match_the_generated_crd() {
    let generated = crd_yaml();
    for copy in COPIES {
        let path = workspace().join(copy);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            text == generated,
            "{copy} is out of date with operator/src/crd.rs; regenerate both copies with:\n  \
             cargo run -p kuberaft-operator -- crd > deploy/crd.yaml && \
             cp deploy/crd.yaml charts/kuberaft-operator/crds/raftcluster.yaml"
        );
    }
}

#[test]
fn generated_yaml_reads_back_as_the_same_crd() {
    let text = crd_yaml();
    let parsed: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_saphyr::from_str(&text).expect("the printed CRD is valid YAML");
    assert_eq!(parsed, RaftCluster::crd());
}

#[test]
fn crd_has_the_names_subresources_and_columns_users_rely_on() {
    let crd = RaftCluster::crd();
    assert_eq!(crd.spec.group, "kuberaft.io");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["raft".to_string()]));
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    let sub = version.subresources.as_ref().expect("subresources");
    assert!(sub.status.is_some(), "status subresource");
    let scale = sub
        .scale
        .as_ref()
        .expect("scale subresource for kubectl scale");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let columns: Vec<(&str, i32)> = version
        .additional_printer_columns
        .as_ref()
        .expect("printer columns")
        .iter()
        .map(|c| (c.name.as_str(), c.priority.unwrap_or(0)))
        .collect();
    for name in [
        "Desired",
        "Ready",
        "Leader",
        "Term",
        "Available",
        "Progressing",
        "Age",
    ] {
        assert!(
            columns.contains(&(name, 0)),
            "column {name} in `kubectl get`: {columns:?}"
        );
    }
    assert!(
        columns.iter().any(|(_, p)| *p == 1),
        "more columns with -o wide"
    );
}

/// Every CEL rule is where it guards, with its message; `oldSelf` rules
/// (transition rules) only on fields that exist at creation.
#[test]
fn cel_rules_are_present_and_well_formed() {
    let crd = serde_json::to_value(RaftCluster::crd()).expect("serializes");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let rules = |v: &serde_json::Value| -> Vec<(String, String)> {
        v["x-kubernetes-validations"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        (
                            r["rule"].as_str().unwrap_or_default().to_string(),
                            r["message"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let storage = rules(&spec["properties"]["storage"]);
    assert_eq!(storage.len(), 1);
    assert_eq!(storage[0].0, "self == oldSelf");
    assert!(storage[0].1.contains("storage is immutable"));
    let groups = rules(&spec["properties"]["groups"]);
    assert_eq!(groups[0].0, "self == oldSelf");
    let raft = rules(&spec["properties"]["raft"]);
    assert!(raft[0].0.contains("duration(self.electionTimeout)"));
    let top = rules(spec);
    assert!(top[0].0.contains("self.podDisruptionBudget.maxUnavailable"));
    // Balanced parentheses and quotes in every rule.
    for (rule, message) in storage.iter().chain(&groups).chain(&raft).chain(&top) {
        assert_eq!(
            rule.matches('(').count(),
            rule.matches(')').count(),
            "{rule}"
        );
        assert_eq!(rule.matches('\'').count() % 2, 0, "{rule}");
        assert!(!message.is_empty(), "{rule} has a message");
    }
}
