//! Bad inputs give clear errors and lose nothing: broken configuration
//! files, oversized values, a peer of another cluster, garbage and
//! half-open connections on the gRPC port, and the client commands' exit
//! statuses for a missing key, a compare-and-swap mismatch and no quorum.

use kuberaft::kv::limits::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
use kuberaft_proto::kv::Consistency;
use kuberaft_tests::cli::{self, CliOutput};
use kuberaft_tests::config::write_atomically;
use kuberaft_tests::wait::{WAIT, group, until};
use kuberaft_tests::{Cluster, ClusterOptions, bounded};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(120);

/// Runs `raft serve -c <file>` on a configuration `text` named `file_name`
/// in a fresh test directory. The process is expected to refuse to start.
async fn serve_config(test: &str, file_name: &str, text: &str) -> (CliOutput, String) {
    let cluster = Cluster::create(test, ClusterOptions::default()).expect("harness");
    let path = cluster.dir().join(file_name);
    write_atomically(&path, text.as_bytes()).expect("write the configuration");
    let path_text = path.display().to_string();
    let out = cli::run(
        cluster.binary(),
        Some(cluster.dir()),
        &["serve", "-c", &path_text, "-n", "alpha"],
        &[],
    )
    .await
    .expect("raft serve exits by itself on a bad configuration");
    (out, path_text)
}

/// A valid configuration of a one-replica cluster, as JSON.
fn valid_config() -> serde_json::Value {
    let cluster = Cluster::create("config-template", ClusterOptions::default()).expect("harness");
    cluster.config_for(1, true).json()
}

fn assert_refused(out: &CliOutput, path: &str, names: &[&str]) {
    assert_eq!(
        out.code,
        Some(1),
        "a bad configuration exits with status 1:\n{out}"
    );
    assert!(
        out.stderr.contains(path),
        "the message names the file {path}:\n{out}"
    );
    for name in names {
        assert!(
            out.stderr.contains(name),
            "the message names {name:?}:\n{out}"
        );
    }
}

/// The valid configuration with a syntax error in the value of `tick`: a
/// bare word (JSON, TOML), an unclosed list (YAML).
fn with_unquoted_tick(format: &str) -> (String, usize) {
    let c = valid_config();
    let tick = c["tick"].as_str().expect("tick").to_string();
    let text = match format {
        "json" => serde_json::to_string_pretty(&c).expect("json"),
        "yaml" => format!("name: alpha\ngroups: 1\ntick: \"{tick}\"\npeers: []\n"),
        _ => format!("name = \"alpha\"\ngroups = 1\ntick = \"{tick}\"\n"),
    };
    let broken = if format == "yaml" {
        format!("[{tick}")
    } else {
        tick.clone()
    };
    let text = text.replace(&format!("\"{tick}\""), &broken);
    let line = text
        .lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with("\"tick\"") || l.starts_with("tick")
        })
        .expect("a tick line")
        + 1;
    (text, line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_configuration_is_refused_with_the_file_place_and_key() {
    bounded(LIMIT, async {
        for format in ["json", "yaml"] {
            let (text, line) = with_unquoted_tick(format);
            let (out, path) = serve_config(
                &format!("config-malformed-{format}"),
                &format!("raft.{format}"),
                &text,
            )
            .await;
            assert_refused(&out, &path, &[&format!(":{line}:"), "tick"]);
        }
        // TOML: the file and the place (the key: see the ignored test below).
        let (text, line) = with_unquoted_tick("toml");
        let (out, path) = serve_config("config-malformed-toml", "raft.toml", &text).await;
        assert_refused(&out, &path, &[&format!(":{line}:")]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toml_syntax_error_names_the_key() {
    bounded(LIMIT, async {
        let (text, _) = with_unquoted_tick("toml");
        let (out, path) = serve_config("config-malformed-toml-key", "raft.toml", &text).await;
        assert_refused(&out, &path, &["tick"]);
    })
    .await;
}

/// The valid configuration with `key` (a JSON pointer) set to `value` is
/// refused, and the message names the file and each of `names`.
async fn refused_with(test: &str, key: &str, value: serde_json::Value, names: &[&str]) {
    let mut c = valid_config();
    match c.pointer_mut(key) {
        Some(slot) => *slot = value,
        None => {
            let (parent, name) = key.rsplit_once('/').expect("a JSON pointer");
            c.pointer_mut(parent)
                .and_then(serde_json::Value::as_object_mut)
                .expect("the parent object exists")
                .insert(name.to_string(), value);
        }
    }
    let (out, path) = serve_config(test, "raft.json", &c.to_string()).await;
    assert_refused(&out, &path, names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_is_refused_by_name() {
    bounded(LIMIT, async {
        refused_with("config-unknown", "/tik", "300ms".into(), &["tik"]).await;
        refused_with(
            "config-unknown-peer",
            "/peers/0/adress",
            "127.0.0.1".into(),
            &["adress"],
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_typed_value_is_refused_by_key() {
    bounded(LIMIT, async {
        refused_with("config-type", "/groups", "three".into(), &["groups"]).await;
        refused_with("config-port", "/peers/0/port", 70000.into(), &["port"]).await;
        refused_with("config-duration", "/tick", "soon".into(), &["tick", "soon"]).await;
    })
    .await;
}

/// Oversized requests, garbage and half-open connections, and the client
/// commands' exit statuses, on one healthy cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_bytes_get_clear_errors_and_lose_nothing() {
    bounded(LIMIT, async {
        let mut cluster = Cluster::start("bad-requests", ClusterOptions::default())
            .await
            .expect("the cluster starts");
        let client = cluster.client();
        for i in 0..30 {
            client
                .put(format!("keep/{i}").as_bytes(), format!("{i}").as_bytes())
                .await
                .expect("put");
        }

        // A missing key: exit 5, nothing on stdout.
        let out = cluster
            .raft(&["get", "no-such-key"])
            .await
            .expect("raft get");
        assert_eq!(
            out.code,
            Some(5),
            "raft get of a missing key exits 5:\n{out}"
        );
        assert!(out.stdout.is_empty(), "nothing on stdout:\n{out}");
        assert!(
            out.stderr.contains("no-such-key"),
            "the message names the key:\n{out}"
        );

        // Compare-and-swap: exit 3 on a mismatch, and nothing changes.
        let out = cluster
            .raft(&["put", "cas", "old"])
            .await
            .expect("raft put");
        assert_eq!(out.code, Some(0), "{out}");
        let out = cluster
            .raft(&["cas", "cas", "wrong", "new"])
            .await
            .expect("raft cas");
        assert_eq!(out.code, Some(3), "a cas mismatch exits 3:\n{out}");
        assert!(
            out.stderr.contains("old"),
            "the message shows the current value:\n{out}"
        );
        let out = cluster.raft(&["get", "cas"]).await.expect("raft get");
        assert_eq!((out.code, out.stdout.as_str()), (Some(0), "old\n"), "{out}");
        let out = cluster
            .raft(&["cas", "cas", "old", "new"])
            .await
            .expect("raft cas");
        assert_eq!(out.code, Some(0), "{out}");
        let out = cluster.raft(&["get", "cas"]).await.expect("raft get");
        assert_eq!(out.stdout, "new\n", "{out}");

        // Oversized values and keys: refused, naming the limit.
        let too_big = vec![b'x'; MAX_VALUE_BYTES + 1];
        let err = client
            .put(b"big", &too_big)
            .await
            .expect_err("a value over the limit is refused");
        let message = err.to_string();
        assert!(
            message.contains(&MAX_VALUE_BYTES.to_string()),
            "the message names the limit of {MAX_VALUE_BYTES} bytes: {message}"
        );
        let err = client
            .put(&vec![b'k'; MAX_KEY_BYTES + 1], b"v")
            .await
            .expect_err("a key over the limit is refused");
        assert!(
            err.to_string().contains(&MAX_KEY_BYTES.to_string()),
            "{err}"
        );
        let r = client
            .get(b"big", Consistency::Linearizable)
            .await
            .expect("get");
        assert!(!r.found, "a refused write leaves nothing behind");
        // The largest value allowed is accepted and reads back whole.
        let largest: Vec<u8> = (0..MAX_VALUE_BYTES).map(|i| (i % 251) as u8).collect();
        client
            .put(b"largest", &largest)
            .await
            .expect("the largest value is accepted");
        let r = client
            .get(b"largest", Consistency::Linearizable)
            .await
            .expect("get");
        assert_eq!(r.value.len(), largest.len());
        assert!(
            r.value.as_ref() == largest.as_slice(),
            "the largest value reads back exactly"
        );

        // Garbage bytes on every gRPC port, some after a valid HTTP/2
        // preface; and half-open connections left hanging.
        let mut hanging = Vec::new();
        for id in cluster.ids() {
            let addr = cluster.replica(id).expect("replica").grpc_addr();
            let mut junk: Vec<u8> = (0..65_536u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            let mut garbage = TcpStream::connect(addr).await.expect("connect");
            let _ = garbage.write_all(&junk).await;
            drop(garbage);
            junk.splice(0..0, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".iter().copied());
            let mut after_preface = TcpStream::connect(addr).await.expect("connect");
            let _ = after_preface.write_all(&junk).await;
            drop(after_preface);
            let mut half = TcpStream::connect(addr).await.expect("connect");
            half.write_all(b"PRI * HTTP/2.0\r\n")
                .await
                .expect("partial preface");
            hanging.push(half);
            hanging.push(TcpStream::connect(addr).await.expect("connect"));
        }
        for i in 0..30 {
            client
                .put(format!("during/{i}").as_bytes(), b"x")
                .await
                .expect("writes go on beside half-open connections");
        }
        for id in cluster.ids() {
            assert!(
                cluster.replica_mut(id).expect("replica").is_running(),
                "replica {id} survived garbage on its port"
            );
        }
        let ids = cluster.ids();
        cluster
            .wait_ready(&ids)
            .await
            .expect("every replica stays ready");
        for i in 0..30 {
            let r = client
                .get(format!("keep/{i}").as_bytes(), Consistency::Linearizable)
                .await
                .expect("get");
            assert_eq!(
                r.value.as_ref(),
                format!("{i}").as_bytes(),
                "keep/{i} intact"
            );
        }
        drop(hanging);
        cluster.wait_converged(&ids, 0).await.expect("converged");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_client_commands_exit_4() {
    bounded(LIMIT, async {
        let mut cluster = Cluster::start("no-quorum", ClusterOptions::default())
            .await
            .expect("the cluster starts");
        let out = cluster.raft(&["put", "k", "v"]).await.expect("raft put");
        assert_eq!(out.code, Some(0), "{out}");
        let leader = cluster.wait_leader(0).await.expect("leader");
        let survivor = [1, 2, 3]
            .into_iter()
            .find(|id| *id != leader)
            .expect("a follower");
        for id in cluster.ids() {
            if id != survivor {
                cluster.kill(id).expect("kill");
            }
        }
        let endpoints = cluster.endpoints().join(",");
        for args in [vec!["put", "k", "w"], vec!["get", "k"]] {
            let mut full = vec!["--endpoints", endpoints.as_str(), "--timeout", "3s"];
            full.extend(args.iter().copied());
            // The bound is only against a hang: the command has 3 s.
            let out = cli::run_within(
                cluster.binary(),
                Some(cluster.dir()),
                &full,
                &[],
                Duration::from_secs(40),
            )
            .await
            .expect("the command exits by itself");
            assert_eq!(
                out.code,
                Some(4),
                "raft {} without a quorum exits 4:\n{out}",
                args.join(" ")
            );
            assert!(!out.stderr.is_empty(), "and says why:\n{out}");
        }
        // The quorum comes back with the data.
        for id in cluster.ids() {
            cluster.start_replica(id).expect("start");
        }
        cluster.wait_leader(0).await.expect("a leader again");
        let out = cluster.raft(&["get", "k"]).await.expect("raft get");
        assert_eq!(out.code, Some(0), "{out}");
        assert!(
            out.stdout == "v\n" || out.stdout == "w\n",
            "k holds a value written: {out}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_another_cluster_is_refused_and_named_in_the_log() {
    bounded(LIMIT, async {
        let mut cluster = Cluster::start("other-cluster", ClusterOptions::default())
            .await
            .expect("the cluster starts");
        let client = cluster.client();
        client.put(b"before", b"1").await.expect("put");
        let leader = cluster.wait_leader(0).await.expect("leader");
        let term = group(&cluster.status(leader).await.expect("status"), 0)
            .expect("group 0")
            .term;

        // Replica 4 believes it founds a cluster "intruders" with the three.
        const OTHER: &str = "intruders";
        let mut config = cluster.config_for(4, true);
        config.cluster_id = OTHER.into();
        cluster
            .define_with(4, config)
            .start()
            .expect("the intruder starts");
        until("a healthy replica to log the refusal", WAIT, async || {
            let refused = [1, 2, 3].iter().any(|id| {
                cluster.replica(*id).is_ok_and(|r| {
                    r.log()
                        .lines()
                        .any(|l| l.contains("another cluster") && l.contains(OTHER))
                })
            });
            if refused {
                Ok(())
            } else {
                Err("no refusal logged".to_string())
            }
        })
        .await
        .expect("the log says which cluster the peer belongs to");

        // The healthy cluster is undisturbed.
        tokio::time::sleep(cluster.options().election_timeout() * 2).await;
        for id in [1, 2, 3] {
            let g = group(&cluster.status(id).await.expect("status"), 0)
                .expect("group 0")
                .clone();
            assert_eq!(
                (g.term, g.leader),
                (term, leader),
                "replica {id} was disturbed"
            );
            assert!(!g.voters.contains(&4), "the intruder is no member");
        }
        client
            .put(b"after", b"2")
            .await
            .expect("the cluster keeps serving");
        let r = client
            .get(b"before", Consistency::Linearizable)
            .await
            .expect("get");
        assert_eq!(r.value.as_ref(), b"1");
        let s = cluster.status(4).await.expect("the intruder's status");
        assert_eq!(s.cluster_id, OTHER);
        if let Some(g) = group(&s, 0) {
            assert_ne!(
                g.role,
                kuberaft_proto::admin::Role::Leader as i32,
                "the intruder cannot win"
            );
        }
    })
    .await;
}
