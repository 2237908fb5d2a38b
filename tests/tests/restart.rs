//! Restarts of every replica: one at a time with SIGTERM (a rolling
//! restart, writes in between; a leader hands its groups over before it
//! exits), then all at once with SIGKILL (a power
//! loss). After each, every acknowledged write is back and the replicas
//! converge on one state.

use kuberaft_proto::kv::Consistency;
use kuberaft_tests::cluster::DataDir;
use kuberaft_tests::log_scan;
use kuberaft_tests::wait::{group, is_leader};
use kuberaft_tests::{Cluster, ClusterOptions, bounded};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

const GROUPS: u32 = 3;

async fn check_all(cluster: &Cluster, data: &BTreeMap<String, String>) {
    let client = cluster.client();
    for (k, v) in data {
        let r = client
            .get(k.as_bytes(), Consistency::Linearizable)
            .await
            .expect("get");
        assert!(r.found, "{k} is lost");
        assert_eq!(r.value.as_ref(), v.as_bytes(), "{k} has another value");
    }
}

/// A replica stopped by SIGTERM while leading `led` handed each of those
/// groups to a new leader before it exited: the new leader's election is
/// logged no later than the old one's last line.
async fn check_handover(cluster: &Cluster, stopped: u64, led: &[u64], since: SystemTime) {
    let old_log = cluster.replica(stopped).expect("replica").log();
    assert!(
        !old_log.contains("cannot hand over") && !old_log.contains("did not move"),
        "replica {stopped} failed to hand over:\n{old_log}"
    );
    let exited = log_scan::first_after(&old_log, since, &["kuberaft::cli::serve: stopped"])
        .expect("the stopped replica logs its stop");
    for &g in led {
        let new = cluster.wait_leader(g).await.expect("a new leader");
        assert_ne!(new, stopped);
        let log = cluster.replica(new).expect("replica").log();
        let group_field = format!("group={g} ");
        let won =
            log_scan::first_after(&log, since, &["leader known", &group_field, "role=Leader"])
                .expect("the new leader logs its election");
        assert!(
            won <= exited,
            "group {g}: replica {new} became leader only after replica {stopped} had exited \
             (it waited for an election timeout instead of a handover)"
        );
    }
}

/// Every replica has applied the same state of every group.
async fn converged(cluster: &Cluster) {
    let ids = cluster.ids();
    for g in 0..u64::from(GROUPS) {
        cluster.wait_converged(&ids, g).await.expect("converged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_restarted_brings_all_data_back() {
    bounded(Duration::from_secs(150), async {
        let mut cluster = Cluster::start(
            "restart",
            ClusterOptions {
                groups: GROUPS,
                // Snapshots happen, so restarts recover from one plus a log.
                snapshot_threshold: Some(40),
                ..ClusterOptions::default()
            },
        )
        .await
        .expect("the cluster starts");
        let mut data = BTreeMap::new();
        let client = cluster.client();
        for i in 0..150 {
            let (k, v) = (format!("r/{i}"), format!("value {i}"));
            client.put(k.as_bytes(), v.as_bytes()).await.expect("put");
            data.insert(k, v);
        }
        drop(client);

        // Rolling restart: SIGTERM, which a leader answers by handing over.
        // Every replica is stopped in turn, so some stop meets a leader.
        let mut handovers = 0;
        for id in cluster.ids() {
            let led: Vec<u64> = cluster
                .status(id)
                .await
                .expect("status")
                .groups
                .iter()
                .filter(|g| is_leader(g))
                .map(|g| g.group)
                .collect();
            let stopping = SystemTime::now();
            let status = cluster.stop(id).await.expect("stops on SIGTERM");
            assert!(
                status.success(),
                "replica {id} exits cleanly on SIGTERM: {status:?}"
            );
            check_handover(&cluster, id, &led, stopping).await;
            handovers += led.len();
            let client = cluster.client();
            for i in 0..10 {
                let (k, v) = (format!("r/while-{id}-down/{i}"), format!("{id}/{i}"));
                client
                    .put(k.as_bytes(), v.as_bytes())
                    .await
                    .expect("put with one replica down");
                data.insert(k, v);
            }
            cluster.restart(id, DataDir::Keep).await.expect("restart");
            cluster.wait_ready(&[id]).await.expect("ready again");
        }
        assert!(handovers > 0, "some replica was stopped while leading");
        check_all(&cluster, &data).await;
        converged(&cluster).await;

        // Everyone killed at once, then everyone back.
        for id in cluster.ids() {
            cluster.kill(id).expect("kill");
        }
        for id in cluster.ids() {
            cluster.start_replica(id).expect("start");
        }
        cluster.wait_all_leaders().await.expect("leaders again");
        let ids = cluster.ids();
        cluster.wait_ready(&ids).await.expect("all ready");
        check_all(&cluster, &data).await;
        converged(&cluster).await;

        // The recovered logs keep their snapshots.
        let status = cluster.status(1).await.expect("status");
        let snapshotted = (0..u64::from(GROUPS))
            .filter(|g| group(&status, *g).is_some_and(|g| g.snapshot_index > 0))
            .count();
        assert!(
            snapshotted > 0,
            "with snapshot_threshold 40 some group has a snapshot"
        );
    })
    .await;
}
