//! Writes and reads on 3 and 5 real replica processes, through the client
//! library: every value reads back exactly, linearizable reads sent to a
//! follower see the latest acknowledged write, and serializable reads on
//! every replica agree once the replicas have applied the same index.

use kuberaft_proto::kv::Consistency;
use kuberaft_tests::{Cluster, ClusterOptions, bounded};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// Keys and values with every byte value somewhere in them.
fn entry(i: usize) -> (Vec<u8>, Vec<u8>) {
    let key = format!("key/{i:03}").into_bytes();
    let mut value: Vec<u8> = (0..=255u8).cycle().skip(i).take(40 + i % 50).collect();
    value.extend_from_slice(format!("#{i}").as_bytes());
    (key, value)
}

async fn writes_and_reads(test: &str, replicas: u64, groups: u32) {
    let cluster = Cluster::start(
        test,
        ClusterOptions {
            replicas,
            groups,
            ..ClusterOptions::default()
        },
    )
    .await
    .expect("the cluster starts");
    let client = cluster.client();
    const N: usize = 60;
    for i in 0..N {
        let (key, value) = entry(i);
        client.put(&key, &value).await.expect("put is acknowledged");
    }
    // Overwrites and deletes, so the last value is not the first one.
    for i in (0..N).step_by(5) {
        let (key, _) = entry(i);
        client
            .put(&key, format!("second-{i}").as_bytes())
            .await
            .expect("overwrite");
    }
    for i in (1..N).step_by(7) {
        let (key, _) = entry(i);
        let deleted = client.delete(&key).await.expect("delete");
        assert!(
            deleted.deleted,
            "key {i} existed, so delete must say it deleted it"
        );
    }
    let expected = |i: usize| -> Option<Vec<u8>> {
        if i % 7 == 1 {
            None
        } else if i.is_multiple_of(5) {
            Some(format!("second-{i}").into_bytes())
        } else {
            Some(entry(i).1)
        }
    };

    for i in 0..N {
        let (key, _) = entry(i);
        let r = client
            .get(&key, Consistency::Linearizable)
            .await
            .expect("get");
        match expected(i) {
            Some(v) => {
                assert!(r.found, "key {i} must be found");
                assert_eq!(r.value.as_ref(), v.as_slice(), "key {i} reads back exactly");
            }
            None => assert!(!r.found, "key {i} was deleted"),
        }
    }

    // A linearizable read sent only to followers sees a write acknowledged
    // just before it, in every group.
    let leaders = cluster.wait_all_leaders().await.expect("leaders");
    for (g, &leader) in leaders.iter().enumerate() {
        let follower = cluster
            .ids()
            .into_iter()
            .find(|id| *id != leader)
            .expect("a follower");
        let follower_client = cluster.client_of(&[follower]);
        for round in 0..20 {
            // Find a key of group g by trying names.
            let key = (0..)
                .map(|n| format!("fresh/{g}/{round}/{n}").into_bytes())
                .find(|k| kuberaft::kv::group_for_key(k, groups).0 == g as u64)
                .expect("some key maps to every group");
            let value = format!("v{round}").into_bytes();
            client.put(&key, &value).await.expect("put");
            let r = follower_client
                .get(&key, Consistency::Linearizable)
                .await
                .expect("linearizable get at a follower");
            assert!(
                r.found,
                "group {g}: a follower's linearizable read must see the acknowledged write"
            );
            assert_eq!(r.value.as_ref(), value.as_slice());
        }
    }

    // Compare-and-swap: swaps on the expected value, refuses otherwise.
    let r = client
        .compare_and_swap(b"cas-key", None, b"one")
        .await
        .expect("cas");
    assert!(r.swapped, "cas on an absent key with expected=absent swaps");
    let r = client
        .compare_and_swap(b"cas-key", Some(b"zero"), b"two")
        .await
        .expect("cas");
    assert!(
        !r.swapped,
        "cas with the wrong expected value does not swap"
    );
    assert_eq!(
        r.current.as_deref(),
        Some(&b"one"[..]),
        "and reports the current value"
    );
    let r = client
        .compare_and_swap(b"cas-key", Some(b"one"), b"two")
        .await
        .expect("cas");
    assert!(r.swapped);

    // Scan returns the live keys of the prefix, in order, across groups.
    let mut scanned = Vec::new();
    let mut after = Vec::new();
    loop {
        let page = client
            .scan(b"key/", 16, &after, Consistency::Linearizable)
            .await
            .expect("scan");
        for kv in &page.pairs {
            scanned.push((kv.key.to_vec(), kv.value.to_vec()));
        }
        match page.pairs.last() {
            Some(last) if page.more => after = last.key.to_vec(),
            _ => break,
        }
    }
    let want: Vec<(Vec<u8>, Vec<u8>)> = (0..N)
        .filter_map(|i| expected(i).map(|v| (entry(i).0, v)))
        .collect();
    assert_eq!(
        scanned, want,
        "scan returns exactly the live keys, in key order"
    );

    // Serializable reads on each replica agree once all have converged.
    let ids = cluster.ids();
    for g in 0..u64::from(groups) {
        cluster
            .wait_converged(&ids, g)
            .await
            .expect("replicas converge");
    }
    for id in ids {
        let local = cluster.client_of(&[id]);
        for i in 0..N {
            let (key, _) = entry(i);
            let r = local
                .get(&key, Consistency::Serializable)
                .await
                .expect("serializable get");
            assert_eq!(
                r.found.then(|| r.value.to_vec()),
                expected(i),
                "replica {id}: key {i} after convergence"
            );
            let header = r.header.expect("responses carry a header");
            assert_eq!(
                header.replica, id,
                "a serializable read is served by the replica asked"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_two_groups() {
    bounded(LIMIT, writes_and_reads("replication-3", 3, 2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_replicas() {
    bounded(LIMIT, writes_and_reads("replication-5", 5, 1)).await;
}
