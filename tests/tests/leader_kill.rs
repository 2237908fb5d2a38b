//! SIGKILL of the leader under a write load: a new leader serves writes,
//! and no acknowledged write is lost. Writes that were in flight when the
//! leader died are indeterminate: each may or may not be there, but if it
//! is, it holds the value written. And a leader paused (SIGSTOP) for longer
//! than the election timeout is replaced, and on SIGCONT rejoins as a
//! follower without losing or resurrecting anything.

use kuberaft_proto::kv::Consistency;
use kuberaft_tests::cluster::DataDir;
use kuberaft_tests::load::WriteLoad;
use kuberaft_tests::wait::{WAIT, group, is_leader, until};
use kuberaft_tests::{Cluster, ClusterOptions, bounded};
use std::time::Duration;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_under_load_loses_no_acknowledged_write() {
    bounded(Duration::from_secs(150), async {
        let mut cluster = Cluster::start("leader-kill", ClusterOptions::default())
            .await
            .expect("the cluster starts");
        let old_leader = cluster.wait_leader(0).await.expect("a leader");

        let load = WriteLoad {
            writers: 6,
            writes_per_writer: 120,
            duration: Duration::from_secs(60),
            value_len: 64,
            key_prefix: "lk-".into(),
            request_timeout: Duration::from_secs(20),
        };
        let running = load.start(|| cluster.client_with_timeout(load.request_timeout));
        until("the load to get going", WAIT, async || {
            match running.acked_count() {
                n if n >= 60 => Ok(()),
                n => Err(format!("{n} writes acknowledged")),
            }
        })
        .await
        .expect("writes are acknowledged before the kill");

        let killed_at = Instant::now();
        cluster.kill(old_leader).expect("kill");
        until("a write acknowledged after the kill", WAIT, async || {
            running
                .first_ack_invoked_after(killed_at)
                .map(|_| ())
                .ok_or_else(|| format!("{} acknowledged in all", running.acked_count()))
        })
        .await
        .expect("a new leader serves writes");
        let new_leader = cluster.wait_leader(0).await.expect("a new leader");
        assert_ne!(new_leader, old_leader, "the killed replica cannot lead");

        let report = running.finish().await;
        let acked = report.acked().count();
        let after_kill = report.acked().filter(|r| r.invoked >= killed_at).count();
        eprintln!(
            "{} writes: {acked} acknowledged ({after_kill} invoked after the kill), {} indeterminate",
            report.records.len(),
            report.records.len() - acked
        );
        assert!(after_kill > 0, "writes invoked after the kill are acknowledged");

        // The dust settles: the killed replica comes back and catches up.
        cluster
            .restart(old_leader, DataDir::Keep)
            .await
            .expect("the killed replica restarts");
        let ids = cluster.ids();
        cluster.wait_converged(&ids, 0).await.expect("the replicas converge");

        let client = cluster.client();
        for r in report.acked() {
            let got = client
                .get(&r.key, Consistency::Linearizable)
                .await
                .expect("linearizable get");
            assert!(
                got.found,
                "acknowledged write {} is lost",
                String::from_utf8_lossy(&r.key)
            );
            assert_eq!(got.value.as_ref(), r.value.as_slice(), "acknowledged value changed");
        }
        for r in report.indeterminate() {
            let got = client
                .get(&r.key, Consistency::Linearizable)
                .await
                .expect("linearizable get");
            if got.found {
                assert_eq!(
                    got.value.as_ref(),
                    r.value.as_slice(),
                    "an indeterminate write, if present, holds its own value"
                );
            }
        }
        // The replica that was killed holds every acknowledged write too.
        let local = cluster.client_of(&[old_leader]);
        for r in report.acked() {
            let got = local
                .get(&r.key, Consistency::Serializable)
                .await
                .expect("serializable get");
            assert_eq!(
                got.found.then(|| got.value.to_vec()),
                Some(r.value.clone()),
                "the restarted replica {old_leader} lacks {}",
                String::from_utf8_lossy(&r.key)
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_replaced_and_rejoins_as_a_follower() {
    bounded(Duration::from_secs(150), async {
        let mut cluster = Cluster::start("leader-pause", ClusterOptions::default())
            .await
            .expect("the cluster starts");
        let client = cluster.client();
        for i in 0..20 {
            client
                .put(format!("p/{i}").as_bytes(), b"before")
                .await
                .expect("put");
        }
        let paused = cluster.wait_leader(0).await.expect("leader");
        let term = group(&cluster.status(paused).await.expect("status"), 0)
            .expect("group 0")
            .term;
        cluster.pause(paused).expect("SIGSTOP");

        let new_leader = cluster
            .wait_leader(0)
            .await
            .expect("a leader among the others");
        assert_ne!(new_leader, paused);
        let others: Vec<u64> = cluster
            .ids()
            .into_iter()
            .filter(|id| *id != paused)
            .collect();
        let others_client = cluster.client_of(&others);
        for i in 0..20 {
            others_client
                .put(format!("p/{i}").as_bytes(), b"during")
                .await
                .expect("writes go on while the old leader is paused");
        }

        cluster.resume(paused).expect("SIGCONT");
        until("the resumed replica to follow", WAIT, async || {
            let s = cluster.status(paused).await.map_err(|e| e.to_string())?;
            match group(&s, 0) {
                Some(g) if !is_leader(g) && g.term > term && g.leader != 0 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
        .expect("the old leader steps down when it hears of the new term");
        let ids = cluster.ids();
        cluster.wait_converged(&ids, 0).await.expect("converged");
        let local = cluster.client_of(&[paused]);
        for i in 0..20 {
            let key = format!("p/{i}");
            let r = client
                .get(key.as_bytes(), Consistency::Linearizable)
                .await
                .expect("get");
            assert_eq!(r.value.as_ref(), b"during", "{key}: the later write wins");
            let r = local
                .get(key.as_bytes(), Consistency::Serializable)
                .await
                .expect("get on the resumed replica");
            assert_eq!(r.value.as_ref(), b"during", "{key} on the resumed replica");
        }
    })
    .await;
}
