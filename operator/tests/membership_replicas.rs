//! The membership logic against real replica processes: `raft serve`
//! processes on loopback (each on its own 127.0.x.y address), driven through
//! their real admin API by the operator's own planner and executor, with
//! only the Kubernetes side simulated (the StatefulSet's size, pod
//! restarts, volumes).
//!
//! One scenario, with a write load running throughout: bootstrap 3,
//! scale to 5, lose a voter's volume, roll every pod to a new revision,
//! scale back to 3. Checked all along: the Raft configuration never holds a
//! member the spec did not ask for, never has fewer voters than the smaller
//! of the old and new size, and no acknowledged write is lost.
//!
//! Needs the `raft` binary of this workspace (built by `cargo test
//! --workspace`; otherwise `cargo build --release -p kuberaft-replica`).

use kuberaft::client::{Client, ClientOptions};
use kuberaft_operator::admin::{AdminEndpoint, GrpcAdmin, ReplicaAdmin};
use kuberaft_operator::crd::{RaftCluster, RaftClusterSpec};
use kuberaft_operator::membership::{
    self, ClusterView, Directory, Observed, PodView, ReplicaView, Step,
};
use kuberaft_operator::names::node_id;
use kuberaft_operator::replica_config::{InitialClusterState, PeerEntry, ReplicaConfig};
use kuberaft_proto::admin as pb;
use kuberaft_proto::kv::Consistency;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const GROUPS: u32 = 2;
/// Loopback subnet of this test: 127.0.SUBNET.(ordinal + 1).
const SUBNET: u8 = 57;
const PORT: u16 = 17400;

fn raft_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("RAFT_BIN") {
        return PathBuf::from(path);
    }
    // target/<profile>/deps/<this test> -> target/<profile>/raft
    let exe = std::env::current_exe().expect("the test knows its path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("in target/<profile>/deps");
    let raft = profile.join("raft");
    assert!(
        raft.is_file(),
        "{} is missing: build it with `cargo build --release -p kuberaft-replica --bin raft` \
         (cargo test --workspace does), or point RAFT_BIN at a raft binary",
        raft.display()
    );
    raft
}

fn ip(ordinal: u32) -> String {
    format!("127.0.{SUBNET}.{}", ordinal + 1)
}

fn endpoint(ordinal: u32) -> String {
    format!("{}:{PORT}", ip(ordinal))
}

struct Loopback;

impl Directory for Loopback {
    fn admin_endpoint(&self, ordinal: u32) -> AdminEndpoint {
        AdminEndpoint::plain(endpoint(ordinal))
    }
    fn member(&self, ordinal: u32) -> pb::Member {
        pb::Member {
            id: node_id(ordinal),
            name: format!("kv-{ordinal}"),
            address: endpoint(ordinal),
            client_address: endpoint(ordinal),
        }
    }
}

/// A running replica process and the pod-template revision it runs.
struct Process {
    child: Child,
    revision: u32,
}

/// The simulated Kubernetes side: a StatefulSet of replica processes.
struct Sim {
    bin: PathBuf,
    dir: tempfile::TempDir,
    cluster: RaftCluster,
    admin: GrpcAdmin,
    running: BTreeMap<u32, Process>,
    revision: u32,
    statefulset: u32,
    bootstrapped: bool,
    /// Every step carried out, with the group-0 leader when it was planned.
    steps: Vec<(Step, Option<u32>)>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        for p in self.running.values_mut() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

impl Sim {
    fn new() -> Sim {
        let spec = RaftClusterSpec {
            replicas: 3,
            groups: GROUPS as i32,
            raft: kuberaft_operator::crd::RaftTuning {
                heartbeat_interval: "50ms".into(),
                election_timeout: "500ms".into(),
                rpc_timeout: "1s".into(),
                ..Default::default()
            },
            ..RaftClusterSpec::default()
        };
        Sim {
            bin: raft_binary(),
            dir: tempfile::tempdir().expect("a temp dir"),
            cluster: RaftCluster::new("kv", spec),
            admin: GrpcAdmin::new(Duration::from_secs(2), Duration::from_secs(10)),
            running: BTreeMap::new(),
            revision: 1,
            statefulset: 0,
            bootstrapped: false,
            steps: Vec::new(),
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("raft.json")
    }

    fn data_dir(&self, ordinal: u32) -> PathBuf {
        self.dir.path().join("data").join(format!("kv-{ordinal}"))
    }

    /// The shared configuration, as the ConfigMap would hold it.
    fn write_config(&self, peers: u32) {
        let entries = (0..peers)
            .map(|o| PeerEntry {
                pid: node_id(o),
                name: format!("kv-{o}"),
                ip_address: Some(ip(o)),
                domain: None,
                port: PORT,
                metrics_port: PORT + 1000,
            })
            .collect();
        let state = if self.bootstrapped {
            InitialClusterState::Existing
        } else {
            InitialClusterState::New
        };
        let mut config = ReplicaConfig::with_peers(&self.cluster, "test.kv".into(), entries, state)
            .expect("valid");
        config.log_level = "warn".into();
        std::fs::write(self.config_path(), config.to_json()).expect("writable");
    }

    fn start(&mut self, ordinal: u32) {
        let log = std::fs::File::create(self.dir.path().join(format!("kv-{ordinal}.log")))
            .expect("log file");
        let child = Command::new(&self.bin)
            .current_dir(self.dir.path())
            .arg("serve")
            .arg("-c")
            .arg(self.config_path())
            .arg("-n")
            .arg(format!("kv-{ordinal}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("raft serve starts");
        self.running.insert(
            ordinal,
            Process {
                child,
                revision: self.revision,
            },
        );
    }

    /// SIGTERM, as the kubelet does, then SIGKILL after a grace period.
    fn stop(&mut self, ordinal: u32) {
        let Some(mut p) = self.running.remove(&ordinal) else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(p.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = p.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = p.child.kill();
        let _ = p.child.wait();
    }

    /// The StatefulSet controller: pods `0..n` run, the rest are deleted
    /// with their volumes (`whenScaled: Delete`).
    fn resize(&mut self, n: u32) {
        if n != self.statefulset {
            self.write_config(n.max(self.statefulset));
        }
        let extra: Vec<u32> = self.running.keys().copied().filter(|o| *o >= n).collect();
        for o in extra {
            self.stop(o);
            let _ = std::fs::remove_dir_all(self.data_dir(o));
        }
        self.statefulset = n;
        self.write_config(n);
        for o in 0..n {
            if !self.running.contains_key(&o) {
                self.start(o);
            }
        }
    }

    async fn observe(&mut self, desired: u32) -> Observed {
        let mut replicas = BTreeMap::new();
        for (&o, p) in self.running.iter_mut() {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("replica {o} exited with {status}; see its log in the temp dir");
            }
            let status = self
                .admin
                .status(&AdminEndpoint::plain(endpoint(o)))
                .await
                .ok();
            replicas.insert(
                o,
                ReplicaView {
                    pod: Some(PodView {
                        ready: status.as_ref().is_some_and(|s| s.ready),
                        updated: p.revision == self.revision,
                        terminating: false,
                    }),
                    status,
                },
            );
        }
        Observed {
            desired,
            groups: GROUPS,
            statefulset_replicas: self.statefulset,
            bootstrapped: self.bootstrapped,
            bootstrap_replicas: 3,
            replicas,
        }
    }

    /// Reconciles until the cluster is settled at `desired` replicas, all
    /// on the current revision, checking on every look that no group holds
    /// a member at or beyond `bound` or fewer than `min_voters` voters.
    async fn converge(&mut self, desired: u32, min_voters: usize, bound: u32) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(
                Instant::now() < deadline,
                "not settled at {desired} replicas in time; steps so far: {:?}",
                self.steps
            );
            let observed = self.observe(desired).await;
            let view = ClusterView::build(&observed);
            if self.bootstrapped {
                for g in view.groups.values() {
                    assert!(
                        g.voters.iter().chain(&g.learners).all(|m| *m < bound),
                        "group {} holds a member at or beyond {bound}: {g:?}",
                        g.group
                    );
                    assert!(
                        g.voters.len() >= min_voters,
                        "group {} has {} voters, fewer than {min_voters}: {g:?}",
                        g.group,
                        g.voters.len()
                    );
                }
            }
            let plan = membership::plan(&observed);
            if !self.bootstrapped && view.available() {
                self.bootstrapped = true;
                self.write_config(self.statefulset);
            }
            if plan.statefulset_replicas != self.statefulset {
                self.resize(plan.statefulset_replicas);
            }
            let leader = view.groups.get(&0).map(|g| g.leader);
            match &plan.step {
                Step::None => {}
                Step::DeletePod { ordinal } => {
                    self.steps.push((plan.step.clone(), leader));
                    let o = *ordinal;
                    self.stop(o);
                    self.start(o);
                }
                step => {
                    self.steps.push((step.clone(), leader));
                    if let Err(e) = membership::execute(step, &view, &self.admin, &Loopback).await {
                        // A change racing an election: observe and retry.
                        eprintln!("{step}: {e}");
                    }
                }
            }
            let settled = self.bootstrapped
                && plan.step == Step::None
                && plan.progress.is_none()
                && plan.blocked.is_none()
                && self.statefulset == desired
                && view.all_groups_led()
                && view.healthy == (0..desired).collect::<BTreeSet<u32>>()
                && view.groups.values().all(|g| {
                    g.voters == (0..desired).collect::<BTreeSet<u32>>() && g.learners.is_empty()
                })
                && self.running.values().all(|p| p.revision == self.revision);
            if settled {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Wipes a replica's volume and restarts it, as a lost PV would.
    fn lose_volume(&mut self, ordinal: u32) {
        self.stop(ordinal);
        std::fs::remove_dir_all(self.data_dir(ordinal)).expect("the volume existed");
        self.start(ordinal);
    }
}

/// Writes `key-i = value-i` one after another until told to stop (or a
/// bound is hit), and returns the indexes whose write was acknowledged.
async fn write_load(stop: Arc<AtomicBool>) -> Vec<u64> {
    let endpoints: Vec<String> = (0..5).map(endpoint).collect();
    let client = Client::new(
        &endpoints,
        ClientOptions {
            timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(2),
            ..ClientOptions::default()
        },
    )
    .expect("a client");
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut acked = Vec::new();
    for i in 0..20_000u64 {
        if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
            break;
        }
        let key = format!("key-{i}");
        if client
            .put(key.as_bytes(), format!("value-{i}").as_bytes())
            .await
            .is_ok()
        {
            acked.push(i);
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_replace_upgrade_and_scale_in_keep_every_acknowledged_write() {
    let mut sim = Sim::new();
    sim.write_config(3);
    sim.resize(3);
    sim.converge(3, 3, 3).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(write_load(stop.clone()));

    // 3 -> 5: learners added one at a time, each promoted once caught up.
    sim.converge(5, 3, 5).await;
    let added: Vec<u32> = sim
        .steps
        .iter()
        .filter_map(|(s, _)| match s {
            Step::AddLearner { ordinal, .. } => Some(*ordinal),
            _ => None,
        })
        .collect();
    assert_eq!(
        added.iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([&3, &4])
    );
    let promoted = sim
        .steps
        .iter()
        .filter(|(s, _)| matches!(s, Step::Promote { .. }))
        .count();
    assert!(promoted >= 2, "{:?}", sim.steps);

    // A voter loses its volume: removed, added back as a learner, promoted.
    sim.steps.clear();
    sim.lose_volume(2);
    // One voter fewer while it is replaced.
    sim.converge(5, 4, 5).await;
    assert!(
        sim.steps.iter().any(|(s, _)| matches!(
            s,
            Step::Remove {
                ordinal: 2,
                replacing: true,
                ..
            }
        )),
        "{:?}",
        sim.steps
    );
    assert!(
        sim.steps
            .iter()
            .any(|(s, _)| matches!(s, Step::AddLearner { ordinal: 2, .. }))
    );

    // A new pod template: every pod restarts once, never while it leads.
    sim.steps.clear();
    sim.revision = 2;
    sim.converge(5, 5, 5).await;
    let restarts: Vec<u32> = sim
        .steps
        .iter()
        .filter_map(|(s, leader)| match s {
            Step::DeletePod { ordinal } => {
                assert_ne!(Some(*ordinal), *leader, "restarted the leader of group 0");
                Some(*ordinal)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        restarts.iter().collect::<BTreeSet<_>>().len(),
        5,
        "{restarts:?}"
    );
    assert_eq!(restarts.len(), 5, "one restart per pod: {restarts:?}");

    // 5 -> 3: the highest ordinals leave the configuration, then the pods go.
    sim.steps.clear();
    sim.converge(3, 3, 5).await;
    let removed: Vec<u32> = sim
        .steps
        .iter()
        .filter_map(|(s, _)| match s {
            Step::Remove { ordinal, .. } => Some(*ordinal),
            _ => None,
        })
        .collect();
    assert_eq!(removed.first(), Some(&4), "{:?}", sim.steps);
    assert!(
        !sim.data_dir(4).exists(),
        "whenScaled: Delete removed the volume"
    );

    stop.store(true, Ordering::Relaxed);
    let acked = load.await.expect("the load task");
    assert!(
        acked.len() > 20,
        "the load made progress: {} writes",
        acked.len()
    );

    let client = Client::new(
        &(0..3).map(endpoint).collect::<Vec<_>>(),
        ClientOptions::default(),
    )
    .expect("a client");
    for i in &acked {
        let r = client
            .get(format!("key-{i}").as_bytes(), Consistency::Linearizable)
            .await
            .expect("a read");
        assert!(r.found, "acknowledged write key-{i} is lost");
        assert_eq!(r.value, format!("value-{i}").into_bytes());
    }
    eprintln!(
        "membership test: {} acknowledged writes survived 3 -> 5, a lost volume, a rolling update and 5 -> 3",
        acked.len()
    );
}
