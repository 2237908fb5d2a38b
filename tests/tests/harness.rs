//! The harness's own promises: a cluster dropped by a failing test leaves
//! no replica running and keeps its directory; a cluster dropped by a
//! passing test leaves nothing at all.

use kuberaft_tests::replica::pid_alive;
use kuberaft_tests::{Cluster, ClusterOptions};
use std::path::PathBuf;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

async fn started(test: &str) -> (Cluster, Vec<u32>, PathBuf) {
    let cluster = Cluster::start(test, ClusterOptions::default())
        .await
        .expect("the cluster starts");
    let pids: Vec<u32> = cluster
        .ids()
        .into_iter()
        .filter_map(|id| cluster.replica(id).ok()?.pid())
        .collect();
    assert_eq!(pids.len(), 3, "three replicas run");
    assert!(pids.iter().all(|p| pid_alive(*p)));
    let dir = cluster.dir().to_path_buf();
    (cluster, pids, dir)
}

#[test]
fn a_panicking_test_leaves_no_replica_running_and_keeps_its_files() {
    let rt = runtime();
    let mut seen = None;
    // The panic is caught on this same thread: the replicas cannot have
    // been killed by the kernel for their parent thread's exit, only by
    // the harness's drop.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            let (_cluster, pids, dir) = started("harness-panic").await;
            seen = Some((pids, dir));
            panic!("deliberate failure of a test body (expected in this test's output)");
        })
    }));
    assert!(outcome.is_err(), "the body panicked");
    let (pids, dir) = seen.expect("the cluster had started");
    let alive: Vec<u32> = pids.into_iter().filter(|p| pid_alive(*p)).collect();
    assert!(alive.is_empty(), "replicas left running: {alive:?}");
    assert!(
        dir.join("alpha").join("raft.log").is_file(),
        "the failed test's logs are kept"
    );
    std::fs::remove_dir_all(&dir).expect("clean up the kept directory");
}

#[test]
fn a_passing_test_leaves_nothing_behind() {
    let rt = runtime();
    let (pids, dir) = rt.block_on(async {
        let (cluster, pids, dir) = started("harness-pass").await;
        drop(cluster);
        (pids, dir)
    });
    let alive: Vec<u32> = pids.into_iter().filter(|p| pid_alive(*p)).collect();
    assert!(alive.is_empty(), "replicas left running: {alive:?}");
    assert!(!dir.exists(), "the directory of a passing test is removed");
}
