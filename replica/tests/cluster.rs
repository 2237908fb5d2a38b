//! Whole replicas (storage, node, transport, gRPC services) running in one
//! test process on their own loopback addresses, exercised through the real
//! client: the fast end-to-end check of the server. Multi-process tests with
//! kills live in the workspace `tests/`.

use kuberaft::cli::serve::{ServeOptions, Server};
use kuberaft::client::{Client, ClientOptions};
use kuberaft::node::{ClusterState, Member, NodeConfig};
use kuberaft::raft::{self, NodeId, Role};
use kuberaft_proto::admin as admin_pb;
use kuberaft_proto::kv::Consistency;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const PORT: u16 = 3264;
const METRICS_PORT: u16 = 9464;

struct Cluster {
    dir: PathBuf,
    subnet: u8,
    size: u64,
    groups: u32,
    servers: Vec<Option<Server>>,
}

impl Cluster {
    fn ip(&self, id: u64) -> String {
        format!("127.0.{}.{}", self.subnet, id)
    }

    fn options(&self, id: u64, state: ClusterState) -> ServeOptions {
        // A replica knows at least the initial members and itself.
        let members = (1..=self.size.max(id))
            .map(|i| Member {
                id: NodeId(i),
                name: format!("n{i}"),
                address: format!("{}:{PORT}", self.ip(i)),
            })
            .collect();
        let mut raft = raft::Config::new(NodeId(id));
        raft.election_ticks = 10;
        let node = NodeConfig {
            cluster_id: "test-cluster".into(),
            id: NodeId(id),
            name: format!("n{id}"),
            groups: self.groups,
            tick: Duration::from_millis(50),
            raft,
            aggregate: true,
            max_requests_per_turn: 1024,
            snapshot_threshold: 50,
            data_dir: self.dir.join(format!("n{id}")),
            members,
            local_ip: Some(self.ip(id).parse().unwrap()),
            cluster_state: state,
            rpc_timeout: Duration::from_secs(1),
        };
        ServeOptions {
            node,
            listen: format!("{}:{PORT}", self.ip(id))
                .parse::<SocketAddr>()
                .unwrap(),
            metrics_listen: format!("{}:{METRICS_PORT}", self.ip(id)).parse().unwrap(),
            max_message_bytes: 16 << 20,
            request_timeout: Duration::from_secs(10),
            handover_timeout: Duration::from_secs(2),
            tls: None,
            admin_token_file: None,
            max_connections: 4096,
        }
    }

    async fn start(subnet: u8, size: u64, groups: u32) -> Cluster {
        let dir =
            std::env::temp_dir().join(format!("kuberaft-cluster-{}-{subnet}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut c = Cluster {
            dir,
            subnet,
            size,
            groups,
            servers: Vec::new(),
        };
        for id in 1..=size {
            let server = Server::start(c.options(id, ClusterState::New))
                .await
                .expect("replica starts");
            c.servers.push(Some(server));
        }
        c
    }

    async fn restart(&mut self, id: u64) {
        let server = Server::start(self.options(id, ClusterState::Existing))
            .await
            .expect("replica restarts");
        let slot = (id - 1) as usize;
        if slot >= self.servers.len() {
            self.servers.resize_with(slot + 1, || None);
        }
        self.servers[slot] = Some(server);
    }

    fn server(&self, id: u64) -> &Server {
        self.servers[(id - 1) as usize]
            .as_ref()
            .expect("the replica runs")
    }

    /// Waits until replica `id` has applied `index` in every group.
    async fn applied(&self, id: u64, index: impl Fn(usize) -> u64) {
        for _ in 0..400 {
            let status = self.server(id).handle.status.borrow().clone();
            if !status.groups.is_empty()
                && status
                    .groups
                    .iter()
                    .enumerate()
                    .all(|(i, g)| g.status.applied.0 >= index(i))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("replica {id} did not catch up");
    }

    async fn stop(&mut self, id: u64) {
        if let Some(s) = self.servers[(id - 1) as usize].take() {
            s.stop().await.expect("clean stop");
        }
    }

    fn client(&self) -> Client {
        let endpoints: Vec<String> = (1..=self.size)
            .map(|i| format!("{}:{PORT}", self.ip(i)))
            .collect();
        Client::new(
            &endpoints,
            ClientOptions {
                timeout: Duration::from_secs(20),
                ..ClientOptions::default()
            },
        )
        .unwrap()
    }

    /// The replica leading group 0, once one does.
    async fn leader(&self) -> u64 {
        for _ in 0..400 {
            for (i, s) in self.servers.iter().enumerate() {
                if let Some(s) = s {
                    let status = s.handle.status.borrow().clone();
                    if status
                        .groups
                        .first()
                        .is_some_and(|g| g.status.role == Role::Leader)
                    {
                        return i as u64 + 1;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no leader elected");
    }

    async fn shutdown(mut self) {
        for id in 1..=self.size {
            self.stop(id).await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_reads_survive_leader_loss_and_a_full_restart() {
    // RUST_LOG=debug shows what the replicas do.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let mut c = Cluster::start(31, 3, 4).await;
    let client = c.client();
    for i in 0..100 {
        client
            .put(
                format!("key-{i:03}").as_bytes(),
                format!("value-{i}").as_bytes(),
            )
            .await
            .expect("write");
    }
    let got = client
        .get(b"key-007", Consistency::Linearizable)
        .await
        .unwrap();
    assert!(got.found);
    assert_eq!(got.value.as_ref(), b"value-7");
    let missing = client
        .get(b"nope", Consistency::Serializable)
        .await
        .unwrap();
    assert!(!missing.found);

    // Compare-and-swap: wrong expectation refused, right one applied.
    let r = client
        .compare_and_swap(b"key-001", Some(b"wrong"), b"x")
        .await
        .unwrap();
    assert!(!r.swapped);
    assert_eq!(r.current.as_deref(), Some(&b"value-1"[..]));
    let r = client
        .compare_and_swap(b"key-001", Some(b"value-1"), b"x")
        .await
        .unwrap();
    assert!(r.swapped);
    let r = client.compare_and_swap(b"fresh", None, b"y").await.unwrap();
    assert!(r.swapped);
    assert!(client.delete(b"key-002").await.unwrap().deleted);

    // A scan merges all groups in key order.
    let page = client
        .scan(b"key-00", 5, b"", Consistency::Linearizable)
        .await
        .unwrap();
    let keys: Vec<String> = page
        .pairs
        .iter()
        .map(|p| String::from_utf8_lossy(&p.key).into_owned())
        .collect();
    assert_eq!(
        keys,
        ["key-000", "key-001", "key-003", "key-004", "key-005"]
    );
    assert!(page.more);

    // Lose the leader of group 0: the others elect one and keep serving.
    let leader = c.leader().await;
    c.stop(leader).await;
    for i in 100..120 {
        client
            .put(format!("key-{i:03}").as_bytes(), b"after")
            .await
            .expect("write after the leader left");
    }
    c.restart(leader).await;

    // Restart everything: every acknowledged write is still there.
    for id in 1..=3 {
        c.stop(id).await;
    }
    for id in 1..=3 {
        c.restart(id).await;
    }
    let client = c.client();
    for i in [0, 1, 2, 7, 50, 99, 100, 119] {
        let got = client
            .get(format!("key-{i:03}").as_bytes(), Consistency::Linearizable)
            .await
            .unwrap();
        match i {
            1 => assert_eq!(got.value.as_ref(), b"x"),
            2 => assert!(!got.found),
            100.. => assert_eq!(got.value.as_ref(), b"after"),
            _ => assert_eq!(got.value.as_ref(), format!("value-{i}").as_bytes()),
        }
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_replica_joins_through_the_member_directory() {
    let mut c = Cluster::start(32, 3, 2).await;
    let client = c.client();
    for i in 0..20 {
        client
            .put(format!("k{i}").as_bytes(), b"before")
            .await
            .expect("write");
    }
    // Replica 4 starts empty in an existing cluster: nobody knows its
    // address until the admin API records it.
    c.restart(4).await;
    let admin = |req| async {
        let mut a = client.admin();
        a.add_learner(req).await.expect("add learner").into_inner()
    };
    let added = admin(admin_pb::AddLearnerRequest {
        member: Some(admin_pb::Member {
            id: 4,
            name: "n4".into(),
            address: format!("{}:{PORT}", c.ip(4)),
            client_address: String::new(),
        }),
        group: None,
    })
    .await;
    assert_eq!(added.committed.len(), 2, "added to every group");
    c.applied(4, |g| added.committed[&(g as u64)]).await;
    let status = c.server(4).handle.status.borrow().clone();
    assert!(
        status.members.iter().any(|m| m.id == NodeId(4)),
        "the directory names the new member"
    );
    assert!(
        status
            .groups
            .iter()
            .all(|g| g.status.conf_state.learners.contains(&NodeId(4)))
    );

    let mut a = client.admin();
    a.promote(admin_pb::MemberRequest { id: 4, group: None })
        .await
        .expect("promote");
    a.remove_member(admin_pb::MemberRequest { id: 1, group: None })
        .await
        .expect("remove");
    c.stop(1).await;
    for i in 20..30 {
        client
            .put(format!("k{i}").as_bytes(), b"after")
            .await
            .expect("write without replica 1");
    }
    let leader = c.leader().await;
    let status = c.server(leader).handle.status.borrow().clone();
    for g in &status.groups {
        assert_eq!(
            g.status.conf_state.voters,
            vec![NodeId(2), NodeId(3), NodeId(4)],
            "group {}",
            g.group
        );
    }
    assert!(
        !status.members.iter().any(|m| m.id == NodeId(1)),
        "a removed member leaves the directory: {:?}",
        status.members
    );
    let got = Client::new(&[format!("{}:{PORT}", c.ip(4))], ClientOptions::default())
        .unwrap()
        .get(b"k3", Consistency::Serializable)
        .await
        .unwrap();
    assert_eq!(got.value.as_ref(), b"before");
    c.size = 4;
    c.shutdown().await;
}
