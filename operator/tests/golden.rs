//! The builders' output for `deploy/examples/raftcluster.yaml`, object by
//! object, against the YAML files in `operator/tests/golden/`. A change to
//! a builder shows up here as a readable diff; after reviewing it,
//! regenerate with `UPDATE_GOLDEN=1 cargo test -p kuberaft-operator --test golden`.

use kuberaft_operator::builders::{
    Transport, config_map, network_policy, pdb, service_monitor, services, statefulset,
};
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

fn transport() -> Transport {
    Transport {
        tls_secret: Some("kv-tls".into()),
        metrics_tls: false,
    }
}

fn pod_tls() -> Option<statefulset::PodTls> {
    Some(statefulset::PodTls {
        secret: "kv-tls".into(),
        client_cert_auth: false,
        metrics: false,
    })
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
    check(
        "service-peer",
        &services::peer_service(&c, &names, &transport()).unwrap(),
    );
    check(
        "service-client",
        &services::client_service(&c, &names, &transport()).unwrap(),
    );
    check(
        "service-leader",
        &services::leader_service(&c, &names, &transport()).unwrap(),
    );
    let config = ReplicaConfig::for_cluster(&c, &names, 3, InitialClusterState::New).unwrap();
    let params = statefulset::StatefulSetParams {
        replicas: 3,
        config_hash: config.restart_hash(),
        termination_grace_seconds: 30,
        tls: pod_tls(),
    };
    check(
        "statefulset",
        &statefulset::statefulset(&c, &names, &params).unwrap(),
    );
    check("pdb", &pdb::pdb(&c, &names, 3).unwrap());
    check(
        "servicemonitor",
        &service_monitor::service_monitor(&c, &names, &transport()).unwrap(),
    );
    check(
        "networkpolicy",
        &network_policy::network_policy(&c, &names).unwrap(),
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
        tls: pod_tls(),
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

#[test]
fn the_replica_pods_are_hardened_and_mount_their_certificates() {
    let c = example();
    let names = Names::new("kv", "default");
    let params = statefulset::StatefulSetParams {
        replicas: 3,
        config_hash: "h".into(),
        termination_grace_seconds: 30,
        tls: Some(statefulset::PodTls {
            secret: "kv-tls".into(),
            client_cert_auth: true,
            metrics: true,
        }),
    };
    let sts = statefulset::statefulset(&c, &names, &params).unwrap();
    let pod = sts.spec.unwrap().template.spec.unwrap();
    assert_eq!(
        pod.automount_service_account_token,
        Some(false),
        "replicas never talk to the API"
    );
    let psc = pod.security_context.as_ref().unwrap();
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(statefulset::RUN_AS_USER));
    assert_eq!(psc.run_as_group, Some(statefulset::RUN_AS_USER));
    assert_eq!(
        psc.fs_group,
        Some(statefulset::RUN_AS_USER),
        "the volume belongs to the replica's group"
    );
    assert_eq!(
        psc.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    let container = &pod.containers[0];
    let sc = container.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_ne!(sc.run_as_user, Some(0));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.privileged, None);
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    assert!(sc.capabilities.as_ref().unwrap().add.is_none());

    let env: Vec<(String, Option<String>)> = container
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect();
    for (name, value) in [
        ("RAFT_TLS_CERT", "/etc/raft/tls/$(POD_NAME).crt"),
        ("RAFT_TLS_KEY", "/etc/raft/tls/$(POD_NAME).key"),
        ("RAFT_TLS_CA", "/etc/raft/tls/ca.crt"),
        ("RAFT_TLS_CLIENT_CERT_AUTH", "true"),
        ("RAFT_TLS_METRICS", "true"),
    ] {
        assert!(
            env.contains(&(name.to_string(), Some(value.to_string()))),
            "{name}: {env:?}"
        );
    }
    let secret = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "tls")
        .and_then(|v| v.secret)
        .expect("the tls volume");
    assert_eq!(secret.secret_name.as_deref(), Some("kv-tls"));
    assert_eq!(
        secret.default_mode,
        Some(0o440),
        "keys readable by the replica's group only"
    );
    // With TLS on the metrics port the kubelet probes HTTPS.
    let scheme = container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .and_then(|h| h.scheme.clone());
    assert_eq!(scheme.as_deref(), Some("HTTPS"));
    assert!(statefulset::runs_tls(
        &statefulset::statefulset(&c, &names, &params).unwrap()
    ));
    let plain = statefulset::StatefulSetParams {
        tls: None,
        ..params
    };
    let plain = statefulset::statefulset(&c, &names, &plain).unwrap();
    assert!(!statefulset::runs_tls(&plain));
}

#[test]
fn the_network_policy_admits_peers_operator_clients_and_prometheus_only() {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let c = example();
    let names = Names::new("kv", "default");
    let np = network_policy::network_policy(&c, &names).unwrap();
    let spec = np.spec.unwrap();
    assert_eq!(
        spec.policy_types.as_deref(),
        Some(&["Ingress".to_string(), "Egress".to_string()][..])
    );
    assert_eq!(
        spec.pod_selector.unwrap().match_labels,
        Some(names.selector_labels())
    );
    let ingress = spec.ingress.unwrap();
    assert_eq!(ingress.len(), 2, "gRPC and metrics, nothing else");
    let grpc = &ingress[0];
    assert_eq!(
        grpc.ports.as_ref().unwrap()[0].port,
        Some(IntOrString::Int(7400))
    );
    let from = grpc.from.as_ref().unwrap();
    assert_eq!(
        from.len(),
        3,
        "peers, the operator, the example's one client selector"
    );
    assert_eq!(
        from[0].pod_selector.as_ref().unwrap().match_labels,
        Some(names.selector_labels())
    );
    assert!(
        from[0].namespace_selector.is_none(),
        "peers: this namespace only"
    );
    let op = from[1]
        .pod_selector
        .as_ref()
        .unwrap()
        .match_labels
        .as_ref()
        .unwrap();
    assert_eq!(op["app.kubernetes.io/name"], "kuberaft-operator");
    assert_eq!(
        from[2]
            .pod_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["app"],
        "kv-client"
    );
    let metrics = &ingress[1];
    assert_eq!(
        metrics.ports.as_ref().unwrap()[0].port,
        Some(IntOrString::Int(8400))
    );
    let prom = metrics.from.as_ref().unwrap();
    assert_eq!(prom.len(), 1);
    assert!(prom[0].namespace_selector.is_some() && prom[0].pod_selector.is_none());
    let egress = spec.egress.unwrap();
    assert_eq!(egress.len(), 2, "peers' gRPC and DNS");
    assert_eq!(
        egress[0].ports.as_ref().unwrap()[0].port,
        Some(IntOrString::Int(7400))
    );
    assert_eq!(
        egress[0].to.as_ref().unwrap()[0]
            .pod_selector
            .as_ref()
            .unwrap()
            .match_labels,
        Some(names.selector_labels())
    );
    let dns: Vec<_> = egress[1]
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.port.clone(), p.protocol.clone()))
        .collect();
    assert_eq!(
        dns,
        [
            (Some(IntOrString::Int(53)), Some("UDP".into())),
            (Some(IntOrString::Int(53)), Some("TCP".into()))
        ]
    );

    // Without a Prometheus selector the metrics port is closed (probes
    // are not subject to NetworkPolicy).
    let mut closed = example();
    closed.spec.network_policy.prometheus_namespace_selector = None;
    let np = network_policy::network_policy(&closed, &names).unwrap();
    assert_eq!(np.spec.unwrap().ingress.unwrap().len(), 1);
}
