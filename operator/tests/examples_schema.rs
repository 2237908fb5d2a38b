//! Every example under `deploy/examples/` against the generated CRD's
//! schema: the good ones (and `raftcluster.yaml`) pass; each bad one is
//! rejected with the message its first line expects (`# expect: ...`).
//! Examples whose rule is a CEL rule (`# expect-cel: ...`) pass the schema
//! and are checked against the rule's message and the reconciler's own
//! check of the same thing.

use kube::CustomResourceExt;
use kuberaft_operator::crd::RaftCluster;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn examples(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

fn schema() -> Value {
    let crd = serde_json::to_value(RaftCluster::crd()).expect("serializes");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn read(path: &Path) -> (String, Value) {
    let text = std::fs::read_to_string(path).expect("readable");
    let value: Value = serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    (text, value)
}

/// The schema's errors for an instance, as "path: message" lines.
fn errors(instance: &Value) -> Vec<String> {
    let schema = schema();
    let validator =
        jsonschema::validator_for(&schema).expect("the CRD schema is a valid JSON schema");
    validator
        .iter_errors(instance)
        .map(|e| {
            let path = e
                .instance_path()
                .to_string()
                .trim_start_matches('/')
                .replace('/', ".");
            format!("{path}: {e}")
        })
        .collect()
}

#[test]
fn good_examples_pass_the_schema_and_deserialize() {
    let mut files = examples("good");
    files.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/raftcluster.yaml"));
    assert!(files.len() >= 4);
    for path in files {
        let (_, value) = read(&path);
        let errs = errors(&value);
        assert!(errs.is_empty(), "{} rejected: {errs:?}", path.display());
        let cluster: RaftCluster = serde_json::from_value(value)
            .unwrap_or_else(|e| panic!("{} does not deserialize: {e}", path.display()));
        kuberaft_operator::replica_config::timing(&cluster)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

#[test]
fn bad_examples_are_rejected_with_the_expected_message() {
    let files = examples("bad");
    assert!(files.len() >= 6);
    for path in files {
        let (text, value) = read(&path);
        let first = text.lines().next().unwrap_or_default();
        if let Some(expected) = first.strip_prefix("# expect: ") {
            let errs = errors(&value);
            assert!(
                errs.iter().any(|e| e.contains(expected.trim())),
                "{}: expected an error containing {expected:?}, got {errs:?}",
                path.display()
            );
        } else if let Some(expected) = first.strip_prefix("# expect-cel: ") {
            // Beyond the schema: the CEL rule carries the message...
            let crd = serde_json::to_string(&RaftCluster::crd()).expect("serializes");
            assert!(
                crd.contains(expected.trim()),
                "{}: no CEL rule says {expected:?}",
                path.display()
            );
            // ...and the operator refuses the same spec on its own.
            let cluster: RaftCluster = serde_json::from_value(value).expect("deserializes");
            let refused = kuberaft_operator::replica_config::timing(&cluster).is_err()
                || cluster.spec.tls.problem().is_some()
                || kuberaft_operator::builders::pdb::pdb(
                    &cluster_with_keys(cluster.clone()),
                    &kuberaft_operator::names::Names::new("x", "default"),
                    cluster.spec.replicas as u32,
                )
                .map(|p| {
                    let max = p.spec.and_then(|s| s.max_unavailable);
                    max != cluster
                        .spec
                        .pod_disruption_budget
                        .max_unavailable
                        .map(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int)
                })
                .unwrap_or(true);
            assert!(
                refused,
                "{}: the operator would carry this spec out as written",
                path.display()
            );
        } else {
            panic!(
                "{}: the first line must be `# expect: ...` or `# expect-cel: ...`",
                path.display()
            );
        }
    }
}

fn cluster_with_keys(mut c: RaftCluster) -> RaftCluster {
    c.metadata.namespace = Some("default".into());
    c.metadata.uid = Some("00000000-0000-4000-8000-000000000000".into());
    c
}
