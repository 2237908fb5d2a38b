//! Membership changes on real processes: a fourth replica joins as a
//! learner, catches up, is promoted, and another member is removed; and a
//! replica that comes back with an empty data directory (a lost volume)
//! neither votes nor campaigns until it is removed and added back.

use kuberaft_proto::admin::{NodeStatus, Role};
use kuberaft_proto::kv::Consistency;
use kuberaft_tests::cluster::DataDir;
use kuberaft_tests::config::name_of;
use kuberaft_tests::wait::{WAIT, group, until};
use kuberaft_tests::{Cluster, ClusterOptions, bounded};
use std::time::Duration;

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

/// Waits until every replica in `at` reports, for every group, these
/// voters and learners.
async fn wait_configuration(cluster: &Cluster, at: &[u64], voters: &[u64], learners: &[u64]) {
    let groups = u64::from(cluster.options().groups);
    until(
        &format!("voters {voters:?} and learners {learners:?} on replicas {at:?}"),
        WAIT,
        async || {
            for &id in at {
                let s = cluster.status(id).await.map_err(|e| e.to_string())?;
                for g in 0..groups {
                    let Some(gs) = group(&s, g) else {
                        return Err(format!("replica {id} has no group {g}"));
                    };
                    let (v, l) = (sorted(gs.voters.clone()), sorted(gs.learners.clone()));
                    if v != voters || l != learners {
                        return Err(format!(
                            "replica {id} group {g}: voters {v:?} learners {l:?}"
                        ));
                    }
                }
            }
            Ok(())
        },
    )
    .await
    .expect("the configuration is reported by every member");
}

/// Runs `raft member ...`, which must succeed.
async fn member(cluster: &Cluster, args: &[&str]) {
    let mut full = vec!["member"];
    full.extend_from_slice(args);
    let out = cluster.raft(&full).await.expect("raft member runs");
    assert_eq!(out.code, Some(0), "raft {}:\n{out}", full.join(" "));
}

async fn put_and_check(cluster: &Cluster, key: &str, value: &str) {
    let client = cluster.client();
    client
        .put(key.as_bytes(), value.as_bytes())
        .await
        .expect("writes keep working");
    let r = client
        .get(key.as_bytes(), Consistency::Linearizable)
        .await
        .expect("get");
    assert_eq!(r.value.as_ref(), value.as_bytes());
}

async fn status_until(
    cluster: &Cluster,
    id: u64,
    what: &str,
    check: impl Fn(&NodeStatus) -> bool,
) -> NodeStatus {
    until(what, WAIT, async || match cluster.status(id).await {
        Ok(s) if check(&s) => Ok(s),
        Ok(s) => Err(format!("{s:?}")),
        Err(e) => Err(e.to_string()),
    })
    .await
    .expect(what)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_replica_joins_as_learner_is_promoted_and_another_is_removed() {
    bounded(Duration::from_secs(150), async {
        let mut cluster = Cluster::start(
            "membership-add",
            ClusterOptions {
                groups: 2,
                ..ClusterOptions::default()
            },
        )
        .await
        .expect("the cluster starts");
        let client = cluster.client();
        for i in 0..100 {
            client
                .put(format!("m/{i}").as_bytes(), format!("{i}").as_bytes())
                .await
                .expect("put");
        }
        wait_configuration(&cluster, &[1, 2, 3], &[1, 2, 3], &[]).await;

        cluster.start_joining(4).expect("the fourth replica starts");
        status_until(&cluster, 4, "replica 4 to await its membership", |s| {
            s.awaiting_membership
        })
        .await;
        let address = cluster.replica(4).expect("defined").endpoint();
        let name = name_of(4);
        member(
            &cluster,
            &["add", "--id", "4", "--name", &name, "--address", &address],
        )
        .await;
        wait_configuration(&cluster, &[1, 2, 3, 4], &[1, 2, 3], &[4]).await;
        let s = cluster.status(1).await.expect("status");
        assert!(
            s.members
                .iter()
                .any(|m| m.id == 4 && m.address == address && m.name == name),
            "the members list names the learner and its address: {:?}",
            s.members
        );
        for g in 0..2 {
            cluster
                .wait_converged(&[1, 2, 3, 4], g)
                .await
                .expect("the learner catches up");
        }
        let learner = cluster.client_of(&[4]);
        for i in 0..100 {
            let r = learner
                .get(format!("m/{i}").as_bytes(), Consistency::Serializable)
                .await
                .expect("serializable read on the learner");
            assert_eq!(
                r.value.as_ref(),
                format!("{i}").as_bytes(),
                "the learner has m/{i}"
            );
        }
        put_and_check(&cluster, "after-add", "1").await;

        member(&cluster, &["promote", "4"]).await;
        wait_configuration(&cluster, &[1, 2, 3, 4], &[1, 2, 3, 4], &[]).await;
        put_and_check(&cluster, "after-promote", "2").await;

        let leader = cluster.wait_leader(0).await.expect("leader");
        let removed = [1, 2, 3]
            .into_iter()
            .find(|id| *id != leader)
            .expect("a follower");
        member(&cluster, &["remove", &removed.to_string()]).await;
        let remaining: Vec<u64> = [1, 2, 3, 4]
            .into_iter()
            .filter(|id| *id != removed)
            .collect();
        wait_configuration(&cluster, &remaining, &remaining, &[]).await;
        cluster
            .stop(removed)
            .await
            .expect("the removed replica stops");
        put_and_check(&cluster, "after-remove", "3").await;
        for g in 0..2 {
            cluster
                .wait_converged(&remaining, g)
                .await
                .expect("converged");
        }

        // The learned address outlives restarts: the founders' files still
        // do not list the fourth replica, yet they reach it after a rolling
        // restart.
        for &id in &remaining {
            cluster.restart(id, DataDir::Keep).await.expect("restart");
            cluster.wait_ready(&[id]).await.expect("ready again");
        }
        wait_configuration(&cluster, &remaining, &remaining, &[]).await;
        put_and_check(&cluster, "after-restarts", "4").await;
        for g in 0..2 {
            cluster
                .wait_converged(&remaining, g)
                .await
                .expect("converged after the restarts");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_data_dir_in_an_existing_cluster_neither_votes_nor_campaigns() {
    bounded(Duration::from_secs(150), async {
        let mut cluster = Cluster::start("membership-lost-volume", ClusterOptions::default())
            .await
            .expect("the cluster starts");
        let LostVolume {
            leader,
            lost,
            other,
            status: waiting,
        } = lose_a_volume(&mut cluster, "lv/", 50).await;
        assert!(
            !waiting.ready,
            "a replica awaiting its membership is not ready"
        );
        let before = group(&cluster.status(leader).await.expect("status"), 0)
            .expect("group 0")
            .term;

        // Several election timeouts pass: nothing changes.
        tokio::time::sleep(cluster.options().election_timeout() * 4).await;
        let now = cluster.status(lost).await.expect("status");
        assert!(now.awaiting_membership, "it still awaits its membership");
        for id in [leader, other] {
            let g = group(&cluster.status(id).await.expect("status"), 0)
                .expect("group 0")
                .clone();
            assert_eq!(
                g.term, before,
                "replica {id}: the empty replica disturbed the term"
            );
            assert_eq!(g.leader, leader, "replica {id}: leadership moved");
        }
        if let Some(g) = group(&now, 0) {
            assert_ne!(g.role, Role::Leader as i32, "the empty replica leads");
            assert_ne!(
                g.role,
                Role::Candidate as i32,
                "the empty replica campaigns"
            );
        }

        // It does not vote: with the leader gone, the third replica cannot
        // win an election with the empty replica's vote.
        cluster.kill(leader).expect("kill the leader");
        let no_leader = cluster
            .wait_leader_within(0, cluster.options().election_timeout() * 6)
            .await;
        assert!(
            no_leader.is_err(),
            "a leader was elected with the vote of a replica that lost its data: {no_leader:?}"
        );
        cluster
            .restart(leader, DataDir::Keep)
            .await
            .expect("the old leader comes back");
        cluster.wait_leader(0).await.expect("a leader again");
        // (Whether it still awaits its membership now is the subject of
        // `a_new_leader_does_not_readmit_a_replica_that_lost_its_data`.)

        // Rejoins only as a learner: removed, then added back.
        member(&cluster, &["remove", &lost.to_string()]).await;
        let two: Vec<u64> = sorted(vec![leader, other]);
        wait_configuration(&cluster, &two, &two, &[]).await;
        let address = cluster.replica(lost).expect("defined").endpoint();
        member(
            &cluster,
            &[
                "add",
                "--id",
                &lost.to_string(),
                "--name",
                &name_of(lost),
                "--address",
                &address,
            ],
        )
        .await;
        wait_configuration(&cluster, &[1, 2, 3], &two, &[lost]).await;
        let s = status_until(&cluster, lost, "the re-added replica to join", |s| {
            !s.awaiting_membership && group(s, 0).is_some_and(|g| g.role == Role::Learner as i32)
        })
        .await;
        assert!(!s.awaiting_membership);
        cluster
            .wait_converged(&[1, 2, 3], 0)
            .await
            .expect("the learner catches up");
        let local = cluster.client_of(&[lost]);
        for i in 0..50 {
            let r = local
                .get(format!("lv/{i}").as_bytes(), Consistency::Serializable)
                .await
                .expect("serializable read");
            assert_eq!(
                r.value.as_ref(),
                format!("{i}").as_bytes(),
                "lv/{i} is back"
            );
        }
        member(&cluster, &["promote", &lost.to_string()]).await;
        wait_configuration(&cluster, &[1, 2, 3], &[1, 2, 3], &[]).await;
        put_and_check(&cluster, "after-rejoin", "ok").await;
        cluster.wait_ready(&[1, 2, 3]).await.expect("all ready");
    })
    .await;
}

/// Where [`lose_a_volume`] leaves the cluster.
struct LostVolume {
    /// The leader of group 0 when the volume was lost.
    leader: u64,
    /// The replica that came back on an empty data directory.
    lost: u64,
    /// The third replica.
    other: u64,
    /// The lost replica's status once it awaits its membership.
    status: NodeStatus,
}

/// Writes `<prefix><i>` = `<i>` for `i` below `keys`, then restarts a
/// follower of group 0 on an empty data directory (configured, as after
/// bootstrap, with initial_cluster_state: existing) and waits until it
/// awaits its membership.
async fn lose_a_volume(cluster: &mut Cluster, prefix: &str, keys: usize) -> LostVolume {
    let client = cluster.client();
    for i in 0..keys {
        client
            .put(format!("{prefix}{i}").as_bytes(), format!("{i}").as_bytes())
            .await
            .expect("put");
    }
    let leader = cluster.wait_leader(0).await.expect("leader");
    let lost = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let other = [1, 2, 3]
        .into_iter()
        .find(|id| *id != leader && *id != lost)
        .expect("the third");
    cluster
        .restart(lost, DataDir::Empty)
        .await
        .expect("restart empty");
    let status = status_until(
        cluster,
        lost,
        "the empty replica to await its membership",
        |s| s.awaiting_membership,
    )
    .await;
    LostVolume {
        leader,
        lost,
        other,
        status,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_does_not_readmit_a_replica_that_lost_its_data() {
    bounded(Duration::from_secs(120), async {
        let mut cluster = Cluster::start("membership-readmit", ClusterOptions::default())
            .await
            .expect("the cluster starts");
        let LostVolume {
            leader,
            lost,
            other,
            ..
        } = lose_a_volume(&mut cluster, "nl/", 20).await;
        // Leadership moves to the third replica: a new leader, which has
        // never replicated to the empty one.
        let out = cluster
            .raft(&[
                "transfer-leader",
                "--group",
                "0",
                "--to",
                &other.to_string(),
            ])
            .await
            .expect("raft transfer-leader");
        assert_eq!(out.code, Some(0), "{out}");
        until("the third replica to lead", WAIT, async || {
            match cluster.wait_leader(0).await {
                Ok(l) if l == other => Ok(()),
                Ok(l) => Err(format!("leader {l}")),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
        .expect("leadership moved");
        tokio::time::sleep(cluster.options().election_timeout() * 3).await;
        let s = cluster.status(lost).await.expect("status");
        assert!(
            s.awaiting_membership,
            "replica {lost} lost its data and was neither removed nor added back, yet leader \
             {other} (after {leader}) made it a member again: {:?}",
            group(&s, 0)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_by_name_through_any_replica() {
    bounded(Duration::from_secs(90), async {
        let cluster = Cluster::start("membership-transfer", ClusterOptions::default())
            .await
            .expect("the cluster starts");
        let leader = cluster.wait_leader(0).await.expect("leader");
        let mut others = [1, 2, 3].into_iter().filter(|id| *id != leader);
        let (asked, target) = (
            others.next().expect("a follower"),
            others.next().expect("a third"),
        );
        let raft_at = async |id: u64, args: &[&str]| {
            let endpoint = cluster.endpoints_of(&[id]).join(",");
            let mut full = vec!["--endpoints", endpoint.as_str()];
            full.extend_from_slice(args);
            kuberaft_tests::cli::run(cluster.binary(), Some(cluster.dir()), &full, &[])
                .await
                .expect("raft runs")
        };

        // A follower asked to move its own groups has none to move, and says so.
        let out = raft_at(asked, &["transfer-leader"]).await;
        assert_eq!(out.code, Some(0), "{out}");
        assert!(out.stdout.contains("leads no group"), "{out}");

        // Naming the group, the follower forwards to the group's leader;
        // the new leader is named, not numbered.
        let name = name_of(target);
        let out = raft_at(asked, &["transfer-leader", "--group", "0", "--to", &name]).await;
        assert_eq!(out.code, Some(0), "{out}");
        assert!(
            out.stdout
                .contains(&format!("group 0: leader is now node {target}")),
            "{out}"
        );
        until("the named replica to lead", WAIT, async || {
            match cluster.wait_leader(0).await {
                Ok(l) if l == target => Ok(()),
                Ok(l) => Err(format!("leader {l}")),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
        .expect("leadership moved to the named replica");

        // An unknown name is refused with the names that exist.
        let out = raft_at(asked, &["transfer-leader", "--to", "nobody"]).await;
        assert_ne!(out.code, Some(0), "{out}");
        assert!(
            out.stderr.contains("nobody") && out.stderr.contains(&name),
            "{out}"
        );
    })
    .await;
}
