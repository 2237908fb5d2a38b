//! The builders' output for `deploy/examples/raftcluster.yaml`, object by
//! object, against the YAML files in `operator/tests/golden/`. A change to
//! a builder shows up here as a readable diff; after reviewing it,
//! regenerate with `UPDATE_GOLDEN=1 cargo test -p kuberaft-operator --test golden`.

use kuberaft_operator::builders::{config_map, pdb, service_monitor, services, statefulset};
use kuberaft_operator::crd::RaftCluster;
use kuberaft_operator::names::Names;
use kuberaft_operator::replica_config::{InitialClusterState, ReplicaConfig};
use serde::Serialize;
use std::path::Path;

fn example() -> RaftCluster {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/raftcluster.yaml");
    let text = std::fs::read_to_string(path).expect("the example exists");
    let mut c: RaftCluster = serde_saphyr::from_str(&text).expect("the example parses");
    c.metadata.uid = Some("6c1b1f8e-0000-4000-8000-000000000001".into());
    c.spec.monitoring.service_monitor = true;
    c
}

fn check(name: &str, object: &impl Serialize) {
    let text = serde_saphyr::to_string(object).expect("serializes");
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.yaml"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).expect("writable");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != text {
        let diff: Vec<String> = expected
            .lines()
            .zip(text.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(5)
            .map(|(i, (a, b))| format!("line {}: golden {a:?}, now {b:?}", i + 1))
            .collect();
        panic!(
            "{name}: the builder's output differs from {} ({} vs {} lines; {diff:?}).\n\
             If the change is intended: UPDATE_GOLDEN=1 cargo test -p kuberaft-operator --test golden",
            path.display(),
            expected.lines().count(),
            text.lines().count()
        );
    }
}

#[test]
fn builders_match_their_golden_files() {
    let c = example();
    let names = Names::new("kv", "default");
    check(
        "configmap",
        &config_map::config_map(&c, &names, 3, InitialClusterState::New).unwrap(),
    );
    check("service-peer", &services::peer_service(&c, &names).unwrap());
    check(
        "service-client",
        &services::client_service(&c, &names).unwrap(),
    );
    check(
        "service-leader",
        &services::leader_service(&c, &names).unwrap(),
    );
    let config = ReplicaConfig::for_cluster(&c, &names, 3, InitialClusterState::New).unwrap();
    let params = statefulset::StatefulSetParams {
        replicas: 3,
        config_hash: config.restart_hash(),
        termination_grace_seconds: 30,
    };
    check(
        "statefulset",
        &statefulset::statefulset(&c, &names, &params).unwrap(),
    );
    check("pdb", &pdb::pdb(&c, &names, 3).unwrap());
    check(
        "servicemonitor",
        &service_monitor::service_monitor(&c, &names).unwrap(),
    );
}

#[test]
fn pdb_never_allows_more_disruptions_than_the_quorum_tolerates() {
    let mut c = example();
    let names = Names::new("kv", "default");
    c.spec.pod_disruption_budget.max_unavailable = Some(4);
    for (voters, tolerated) in [(1, 0), (2, 0), (3, 1), (4, 1), (5, 2), (7, 3), (9, 4)] {
        let p = pdb::pdb(&c, &names, voters).unwrap();
        let max = p.spec.unwrap().max_unavailable.unwrap();
        assert_eq!(
            max,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(tolerated),
            "{voters} voters"
        );
    }
}

#[test]
fn statefulset_runs_a_hardened_container_with_probes_and_parallel_start() {
    let c = example();
    let names = Names::new("kv", "default");
    let params = statefulset::StatefulSetParams {
        replicas: 3,
        config_hash: "h".into(),
        termination_grace_seconds: 30,
    };
    let sts = statefulset::statefulset(&c, &names, &params).unwrap();
    let spec = sts.spec.unwrap();
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(
        spec.update_strategy.unwrap().type_.as_deref(),
        Some("OnDelete")
    );
    assert_eq!(spec.service_name.as_deref(), Some("kv-peer"));
    let pod = spec.template.spec.unwrap();
    let container = &pod.containers[0];
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(path(&container.readiness_probe).as_deref(), Some("/readyz"));
    assert_eq!(path(&container.liveness_probe).as_deref(), Some("/healthz"));
    assert!(
        pod.affinity.unwrap().pod_anti_affinity.is_some(),
        "anti-affinity by default"
    );
    assert_eq!(
        container.image.as_deref(),
        Some("ghcr.io/kuberaft/raft:0.1.0")
    );
}
