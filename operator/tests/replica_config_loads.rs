//! The ConfigMap the operator generates is a configuration the replica
//! accepts: loaded with the replica's own loader, with `RAFT_NAME` set as
//! each pod sets it.

use kuberaft::config::{Format, InitialClusterState, Sources, load_text};
use kuberaft_operator::builders::config_map::config_map;
use kuberaft_operator::crd::{RaftCluster, RaftClusterSpec};
use kuberaft_operator::names::{CONFIG_FILE, Names};
use kuberaft_operator::replica_config::InitialClusterState as State;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

fn cluster(spec: RaftClusterSpec) -> RaftCluster {
    let mut c = RaftCluster::new("kv", spec);
    c.metadata.namespace = Some("prod".into());
    c.metadata.uid = Some("6c1b1f8e-0000-4000-8000-000000000001".into());
    c
}

fn load(text: &str, pod: &str) -> kuberaft::config::Config {
    let sources = Sources {
        env: BTreeMap::from([("RAFT_NAME".to_string(), pod.to_string())]),
        ..Sources::default()
    };
    load_text(
        text,
        Format::Json,
        Path::new("/etc/kuberaft/raft.json"),
        &sources,
    )
    .unwrap_or_else(|e| panic!("the replica refuses the generated configuration: {e}\n{text}"))
    .config
}

#[test]
fn every_pod_loads_the_shared_configuration_as_itself() {
    let mut spec = RaftClusterSpec {
        groups: 8,
        ..RaftClusterSpec::default()
    };
    spec.raft.heartbeat_interval = "50ms".into();
    spec.raft.election_timeout = "750ms".into();
    spec.raft.snapshot_threshold = 5000;
    spec.log_level = kuberaft_operator::crd::LogLevel::Debug;
    let names = Names::new("kv", "prod");
    let cm = config_map(&cluster(spec), &names, 5, State::New).expect("builds");
    let text = &cm.data.expect("data")[CONFIG_FILE];
    for ordinal in 0..5 {
        let pod = names.pod(ordinal);
        let config = load(text, &pod);
        assert_eq!(config.name, pod);
        assert_eq!(config.self_id.0, u64::from(ordinal) + 1);
        assert_eq!(config.groups, 8);
        assert_eq!(config.tick, Duration::from_millis(50));
        assert_eq!(config.election_ticks, 15);
        assert_eq!(config.snapshot_threshold, 5000);
        assert_eq!(config.data_dir, Path::new("/data"));
        assert_eq!(config.listen_address.port(), 7400);
        assert_eq!(config.metrics_address.port(), 8400);
        assert_eq!(config.cluster_id, "prod.kv");
        assert_eq!(config.initial_cluster_state, InitialClusterState::New);
        assert_eq!(config.peers.len(), 5);
        let me = config.me();
        assert_eq!(
            me.domain.as_deref(),
            Some(names.pod_domain(ordinal).as_str())
        );
        assert_eq!(
            me.ip_address, None,
            "pods get new IPs: peers are named, never by IP"
        );
    }
}

#[test]
fn after_bootstrap_an_empty_volume_cannot_start_a_second_cluster() {
    let names = Names::new("kv", "prod");
    let cm = config_map(
        &cluster(RaftClusterSpec::default()),
        &names,
        3,
        State::Existing,
    )
    .unwrap();
    let config = load(&cm.data.unwrap()[CONFIG_FILE], "kv-2");
    assert_eq!(config.initial_cluster_state, InitialClusterState::Existing);
}
