//! The CRD's CEL rules (`x-kubernetes-validations`), evaluated client-side
//! with kube-cel as the API server would: after defaulting, and with the
//! old object for transition rules (`oldSelf`).

use kube::CustomResourceExt;
use kuberaft_operator::crd::RaftCluster;
use serde_json::{Value, json};
use std::path::Path;

fn schema() -> Value {
    let crd = serde_json::to_value(RaftCluster::crd()).expect("serializes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// The object as the API server stores it: every default filled in.
fn defaulted(object: &Value) -> Value {
    let cluster: RaftCluster = serde_json::from_value(object.clone()).expect("deserializes");
    serde_json::to_value(cluster).expect("serializes")
}

fn messages(object: &Value, old: Option<&Value>) -> Vec<String> {
    let object = defaulted(object);
    let old = old.map(defaulted);
    match kube_cel::Validator::new().validate(&schema(), &object, old.as_ref()) {
        Ok(()) => vec![],
        Err(errors) => errors.as_slice().iter().map(ToString::to_string).collect(),
    }
}

fn example(path: &str) -> Value {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples")
        .join(path);
    let text = std::fs::read_to_string(&full).expect("the example exists");
    serde_saphyr::from_str(&text).expect("YAML")
}

fn cluster(spec: Value) -> Value {
    json!({"apiVersion": "kuberaft.io/v1alpha1", "kind": "RaftCluster",
           "metadata": {"name": "kv", "namespace": "default"}, "spec": spec})
}

#[test]
fn good_examples_pass_every_rule() {
    for path in [
        "raftcluster.yaml",
        "good/minimal.yaml",
        "good/five-replicas-monitored.yaml",
        "good/single-paused.yaml",
        "good/tls-cert-manager.yaml",
        "good/tls-own-secret.yaml",
    ] {
        let errs = messages(&example(path), None);
        assert!(errs.is_empty(), "{path}: {errs:?}");
    }
}

#[test]
fn cel_examples_are_rejected_with_their_rule_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/bad");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).expect("bad examples") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        let Some(expected) = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect-cel: "))
        else {
            continue;
        };
        let object: Value = serde_saphyr::from_str(&text).expect("YAML");
        let errs = messages(&object, None);
        assert!(
            errs.iter().any(|e| e.contains(expected.trim())),
            "{}: expected {expected:?}, got {errs:?}",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 2);
}

#[test]
fn groups_and_storage_cannot_change_but_everything_else_can() {
    let old = cluster(json!({"replicas": 3, "groups": 4, "storage": {"size": "10Gi"}}));
    let more_groups = cluster(json!({"replicas": 3, "groups": 8, "storage": {"size": "10Gi"}}));
    let bigger = cluster(json!({"replicas": 3, "groups": 4, "storage": {"size": "20Gi"}}));
    let other_class = cluster(
        json!({"replicas": 3, "groups": 4, "storage": {"size": "10Gi", "storageClassName": "fast"}}),
    );
    let scaled = cluster(
        json!({"replicas": 5, "groups": 4, "storage": {"size": "10Gi"},
                                "version": "0.2.0", "logLevel": "debug"}),
    );
    let errs = messages(&more_groups, Some(&old));
    assert!(
        errs.iter().any(|e| e.contains("groups cannot change")),
        "{errs:?}"
    );
    for changed in [&bigger, &other_class] {
        let errs = messages(changed, Some(&old));
        assert!(
            errs.iter().any(|e| e.contains("storage is immutable")),
            "{errs:?}"
        );
    }
    assert_eq!(messages(&scaled, Some(&old)), Vec::<String>::new());
    // On creation there is no old object: transition rules do not apply.
    assert_eq!(messages(&more_groups, None), Vec::<String>::new());
}

#[test]
fn disruption_budget_rule_follows_the_replica_count() {
    let three = cluster(json!({"replicas": 3, "podDisruptionBudget": {"maxUnavailable": 1}}));
    let five = cluster(json!({"replicas": 5, "podDisruptionBudget": {"maxUnavailable": 2}}));
    let one = cluster(json!({"replicas": 1, "podDisruptionBudget": {"maxUnavailable": 1}}));
    assert!(messages(&three, None).is_empty());
    assert!(messages(&five, None).is_empty());
    assert_eq!(messages(&one, None).len(), 1);
}

#[test]
fn tls_is_on_for_a_new_cluster_and_cannot_be_switched_later() {
    let new = defaulted(&cluster(json!({"replicas": 3})));
    assert_eq!(new["spec"]["tls"]["enabled"], true, "TLS on by default");
    assert_eq!(new["spec"]["tls"]["mode"], "Automatic");
    let with_tls = cluster(json!({"replicas": 3, "tls": {"enabled": true}}));
    let without = cluster(json!({"replicas": 3, "tls": {"enabled": false}}));
    for (old, new) in [(&with_tls, &without), (&without, &with_tls)] {
        let errs = messages(new, Some(old));
        assert!(
            errs.iter().any(
                |e| e.contains("spec.tls.enabled cannot change after creation")
                    && e.contains("quorum would split")
            ),
            "{errs:?}"
        );
    }
    // Nor can the source of the certificates...
    let other_mode = cluster(json!({"replicas": 3, "tls": {"enabled": true,
        "mode": "CertManager", "certManager": {"issuerRef": {"name": "ca"}}}}));
    let errs = messages(&other_mode, Some(&with_tls));
    assert!(
        errs.iter()
            .any(|e| e.contains("spec.tls.mode cannot change after creation")),
        "{errs:?}"
    );
    // ...but lifetimes and client-certificate authentication can.
    let tuned = cluster(json!({"replicas": 3, "tls": {"enabled": true,
        "automatic": {"certificateLifetime": "720h"}, "clientCertAuth": true}}));
    assert_eq!(messages(&tuned, Some(&with_tls)), Vec::<String>::new());
    // Creating a cluster without TLS is allowed.
    assert_eq!(messages(&without, None), Vec::<String>::new());
}

#[test]
fn tls_modes_need_their_settings() {
    let secret = cluster(json!({"tls": {"mode": "Secret"}}));
    let errs = messages(&secret, None);
    assert!(
        errs.iter()
            .any(|e| e.contains("spec.tls.mode Secret needs spec.tls.secret.name")),
        "{errs:?}"
    );
    let cert_manager = cluster(json!({"tls": {"mode": "CertManager"}}));
    let errs = messages(&cert_manager, None);
    assert!(
        errs.iter()
            .any(|e| e.contains("spec.tls.mode CertManager needs spec.tls.certManager.issuerRef")),
        "{errs:?}"
    );
    let complete = cluster(json!({"tls": {"mode": "Secret",
        "secret": {"name": "certs", "operatorClientSecretName": "op"}}}));
    assert_eq!(messages(&complete, None), Vec::<String>::new());
}
