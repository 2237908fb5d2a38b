//! TLS and admin authorization of real replicas on loopback, with
//! certificates made by the test (rcgen):
//! - a replica refuses peer traffic without a certificate, with one of
//!   another CA, and with a valid one for a name outside the membership,
//!   and stays healthy with its cluster's quorum;
//! - membership changes and leadership transfer need the admin role (an
//!   admin certificate or the bearer token); plain clients read and write;
//! - `client_cert_auth` refuses clients without a certificate;
//! - certificates (and then the CA bundle) rotate on disk under a write
//!   load without a failed write, and new connections see the new
//!   certificate;
//! - a flood of idle connections and stalled handshakes leaves the replica
//!   serving.

use kuberaft::client::{Client, ClientError, ClientOptions};
use kuberaft::security::issue::Usage;
use kuberaft::security::{CertNames, ClientSecurity};
use kuberaft_proto::admin as admin_pb;
use kuberaft_proto::kv::Consistency;
use kuberaft_proto::raft as raft_pb;
use kuberaft_proto::raft::peer_client::PeerClient;
use kuberaft_tests::cluster::{TlsOptions, client_with};
use kuberaft_tests::http::get;
use kuberaft_tests::load::WriteLoad;
use kuberaft_tests::pki::{CertFiles, Pki};
use kuberaft_tests::wait::{WAIT, until};
use kuberaft_tests::{Cluster, ClusterOptions, bounded};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const LIMIT: Duration = Duration::from_secs(120);

fn tls_options() -> ClusterOptions {
    ClusterOptions {
        tls: Some(TlsOptions::default()),
        ..ClusterOptions::default()
    }
}

async fn tls_cluster(test: &str, options: ClusterOptions) -> Cluster {
    Cluster::start(test, options)
        .await
        .expect("the TLS cluster starts")
}

/// A client of the whole cluster presenting `security`.
fn client(cluster: &Cluster, security: ClientSecurity) -> Client {
    client_with(&cluster.endpoints(), Duration::from_secs(10), security)
}

/// A value of `/metrics` of replica `id` (summed over label sets that
/// contain `labels`), 0 if absent.
async fn metric(cluster: &Cluster, id: u64, name: &str, labels: &str) -> f64 {
    let addr = cluster.replica(id).expect("replica").http_addr();
    let body = get(addr, "/metrics", Duration::from_secs(5))
        .await
        .map(|r| r.body)
        .unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn healthy(cluster: &Cluster, id: u64) {
    let addr = cluster.replica(id).expect("replica").http_addr();
    let health = get(addr, "/healthz", Duration::from_secs(5))
        .await
        .expect("/healthz answers");
    assert_eq!(
        health.status, 200,
        "replica {id} is healthy: {}",
        health.body
    );
}

/// The cluster still has its quorum: a write and a linearizable read.
async fn serves(cluster: &Cluster, key: &str) {
    let c = cluster.client();
    c.put(key.as_bytes(), b"v")
        .await
        .expect("the cluster takes a write");
    let r = c
        .get(key.as_bytes(), Consistency::Linearizable)
        .await
        .expect("and reads it back");
    assert!(r.found && r.value.as_ref() == b"v");
}

/// Sends one batch to replica 1's peer service as node 99, with `security`:
/// the error the attempt ends with (`Ok` would be a failure of the test).
async fn peer_attempt(cluster: &Cluster, security: &ClientSecurity) -> Result<(), String> {
    let replica = cluster.replica(1).expect("replica 1");
    let endpoint = security
        .endpoint(&replica.endpoint())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(3));
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connect: {}", kuberaft::security::error_chain(&e)))?;
    let batch = raft_pb::Batch {
        cluster_id: cluster.options().cluster_id.clone(),
        from: 99,
        to: 1,
        seq: 1,
        messages: Vec::new(),
    };
    let response = PeerClient::new(channel)
        .stream(tokio_stream::iter(vec![batch]))
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), kuberaft::client::describe(&s)))?;
    let mut acks = response.into_inner();
    match acks.message().await {
        Ok(_) => Ok(()),
        Err(s) => Err(format!(
            "{:?}: {}",
            s.code(),
            kuberaft::client::describe(&s)
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_refuses_peers_that_are_not_members() {
    bounded(LIMIT, async {
        let cluster = tls_cluster("tls-peers", tls_options()).await;
        let pki = cluster.pki().expect("a TLS cluster has a CA");

        // No client certificate: the connection is accepted (clients need
        // none), the peer service refuses.
        let anonymous = pki.client(None).expect("CA only");
        let err = peer_attempt(&cluster, &anonymous)
            .await
            .expect_err("refused");
        assert!(
            err.starts_with("PermissionDenied") && err.contains("presented none"),
            "no certificate: {err}"
        );

        // A certificate of another CA: the handshake fails.
        let dir = tempfile::tempdir().expect("a temporary directory");
        let other = Pki::new(dir.path(), "another CA").expect("another CA");
        let intruder = other
            .issue(
                "intruder",
                "alpha",
                &["127.0.0.1".into(), "alpha".into()],
                Usage::Replica,
            )
            .expect("a certificate of the other CA");
        let mut foreign = other.client(Some(&intruder)).expect("files");
        foreign.ca = Some(pki.ca_pem().as_bytes().to_vec());
        let err = peer_attempt(&cluster, &foreign).await.expect_err("refused");
        eprintln!("another CA: {err}");
        assert!(
            err.to_lowercase().contains("certificate") || err.to_lowercase().contains("ca"),
            "another CA: {err}"
        );

        // A valid certificate of our CA for a name that is no member.
        let mallory = pki
            .issue(
                "mallory",
                "mallory",
                &["127.0.0.99".into(), "mallory".into()],
                Usage::Replica,
            )
            .expect("a certificate");
        let outsider = pki.client(Some(&mallory)).expect("files");
        let err = peer_attempt(&cluster, &outsider)
            .await
            .expect_err("refused");
        assert!(
            err.starts_with("PermissionDenied")
                && err.contains("DNS:mallory")
                && err.contains("alpha"),
            "not a member: {err}"
        );

        healthy(&cluster, 1).await;
        serves(&cluster, "after-refusals").await;
        assert!(metric(&cluster, 1, "raft_peer_rejected_total", "no_certificate").await >= 1.0);
        assert!(metric(&cluster, 1, "raft_peer_rejected_total", "not_a_member").await >= 1.0);
        assert!(metric(&cluster, 1, "raft_tls_handshake_failures_total", "grpc").await >= 1.0);
        let log = cluster.replica(1).expect("replica").log();
        assert!(
            log.contains("refused peer traffic"),
            "the refusal is logged"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_and_leadership_need_the_admin_role() {
    bounded(LIMIT, async {
        let options = ClusterOptions {
            admin_token: Some("s3cret-admin-token".into()),
            ..tls_options()
        };
        let cluster = tls_cluster("tls-admin", options).await;
        let pki = cluster.pki().expect("CA");

        // A plain client: keys yes, the cluster no.
        let plain = client(&cluster, pki.client(None).expect("CA only"));
        plain.put(b"k", b"v").await.expect("a plain client writes");
        let r = plain
            .get(b"k", Consistency::Linearizable)
            .await
            .expect("and reads");
        assert!(r.found);
        let denied = |e: ClientError, action: &str| match e {
            ClientError::Denied(m) => assert!(
                m.contains(&format!("{action} needs the admin role"))
                    && m.contains("raft-operator")
                    && m.contains("admin_token_file"),
                "{m}"
            ),
            other => panic!("{action}: expected PERMISSION_DENIED, got {other}"),
        };
        denied(transfer(&plain).await.unwrap_err(), "transfer leadership");
        denied(add_learner(&plain).await.unwrap_err(), "add a learner");
        denied(remove(&plain).await.unwrap_err(), "remove a member");

        // A certificate of the CA, but not an admin name.
        let app = pki
            .issue("app", "app", &["app".into()], Usage::Client)
            .expect("cert");
        let app = client(&cluster, pki.client(Some(&app)).expect("files"));
        app.put(b"k2", b"v").await.expect("an app writes");
        denied(transfer(&app).await.unwrap_err(), "transfer leadership");

        // The bearer token alone.
        let mut token_only = pki.client(None).expect("CA only");
        token_only.token = Some("s3cret-admin-token".into());
        authorized(transfer(&client(&cluster, token_only)).await, "the token");
        let mut wrong = pki.client(None).expect("CA only");
        wrong.token = Some("guess".into());
        denied(
            transfer(&client(&cluster, wrong)).await.unwrap_err(),
            "transfer leadership",
        );

        // An admin certificate.
        let admin = pki.issue("ops", "admin", &[], Usage::Client).expect("cert");
        let admin = client(&cluster, pki.client(Some(&admin)).expect("files"));
        authorized(transfer(&admin).await, "the admin certificate");

        let denials = metric(&cluster, 1, "raft_admin_denied_total", "").await
            + metric(&cluster, 2, "raft_admin_denied_total", "").await
            + metric(&cluster, 3, "raft_admin_denied_total", "").await;
        assert!(denials >= 5.0, "denials are counted: {denials}");
        serves(&cluster, "after-admin").await;
    })
    .await;
}

/// The request got past authorization: it succeeded, or the cluster
/// itself answered (e.g. no voter caught up enough to take over).
fn authorized<T>(result: Result<T, ClientError>, what: &str) {
    match result {
        Ok(_) => {}
        Err(ClientError::Denied(m)) => panic!("{what} must grant the admin role: {m}"),
        Err(ClientError::Rejected(m)) => eprintln!("{what}: authorized; the cluster said: {m}"),
        Err(e) => panic!("{what}: {e}"),
    }
}

async fn transfer(c: &Client) -> Result<admin_pb::TransferLeaderResponse, ClientError> {
    c.admin_call(|ch| async move {
        admin_pb::admin_client::AdminClient::new(ch)
            .transfer_leader(admin_pb::TransferLeaderRequest {
                group: Some(0),
                to: 0,
            })
            .await
            .map(|r| r.into_inner())
    })
    .await
}

async fn add_learner(c: &Client) -> Result<admin_pb::MembershipResponse, ClientError> {
    c.admin_call(|ch| async move {
        let member = admin_pb::Member {
            id: 7,
            name: "golf".into(),
            address: "127.0.0.77:3264".into(),
            client_address: "127.0.0.77:3264".into(),
        };
        admin_pb::admin_client::AdminClient::new(ch)
            .add_learner(admin_pb::AddLearnerRequest {
                member: Some(member),
                group: None,
            })
            .await
            .map(|r| r.into_inner())
    })
    .await
}

async fn remove(c: &Client) -> Result<admin_pb::MembershipResponse, ClientError> {
    c.admin_call(|ch| async move {
        admin_pb::admin_client::AdminClient::new(ch)
            .remove_member(admin_pb::MemberRequest { id: 3, group: None })
            .await
            .map(|r| r.into_inner())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cert_auth_refuses_clients_without_a_certificate() {
    bounded(LIMIT, async {
        let options = ClusterOptions {
            tls: Some(TlsOptions {
                client_cert_auth: true,
            }),
            ..ClusterOptions::default()
        };
        let cluster = tls_cluster("tls-client-auth", options).await;
        let pki = cluster.pki().expect("CA");
        let anonymous = Client::new(
            &cluster.endpoints(),
            ClientOptions {
                timeout: Duration::from_secs(2),
                attempt_timeout: Duration::from_secs(1),
                security: pki.client(None).expect("CA only"),
                ..ClientOptions::default()
            },
        )
        .expect("client");
        let err = anonymous
            .put(b"k", b"v")
            .await
            .expect_err("refused without a certificate");
        eprintln!("without a certificate: {err}");
        assert!(matches!(err, ClientError::Unavailable { .. }), "{err}");

        let app = pki
            .issue("app", "app", &["app".into()], Usage::Client)
            .expect("cert");
        let app = client(&cluster, pki.client(Some(&app)).expect("files"));
        app.put(b"k", b"v")
            .await
            .expect("served with a certificate");
        assert!(
            app.get(b"k", Consistency::Linearizable)
                .await
                .expect("read")
                .found
        );
        healthy(&cluster, 1).await;
    })
    .await;
}

/// The serial of the certificate replica `addr` presents to a new connection.
async fn presented_serial(addr: SocketAddr, ca_pem: &[u8]) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::IpAddress(addr.ip().into());
    let tls = tokio::time::timeout(Duration::from_secs(3), connector.connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (_, session) = tls.get_ref();
    let leaf = session
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no certificate")?;
    CertNames::of(leaf).map(|n| n.serial)
}

/// Replaces every replica's certificate with one of `pki`, then waits until
/// each presents it to new connections.
async fn rotate(cluster: &Cluster, pki: &Pki, target: &std::path::Path, trust: &[u8]) {
    for id in cluster.ids() {
        let replica = cluster.replica(id).expect("replica");
        let issued = pki
            .replica(&replica.name, replica.ip)
            .expect("a new certificate");
        install(&issued, target, &replica.name);
        let want = issued.serial.clone();
        let addr = replica.grpc_addr();
        until(
            &format!("{} to present serial {want}", replica.name),
            WAIT,
            async || match presented_serial(addr, trust).await {
                Ok(serial) if serial == want => Ok(()),
                other => Err(format!("{other:?}")),
            },
        )
        .await
        .expect("the replica reloads its certificate");
    }
}

/// Moves a certificate issued elsewhere to where the replica reads its own.
fn install(issued: &CertFiles, target: &std::path::Path, name: &str) {
    if issued.cert.parent() == Some(target) {
        return;
    }
    for (from, ext) in [(&issued.key, "key"), (&issued.cert, "crt")] {
        let text = std::fs::read(from).expect("the issued file");
        kuberaft_tests::config::write_atomically(&target.join(format!("{name}.{ext}")), &text)
            .expect("write");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_load_without_losing_the_quorum() {
    bounded(LIMIT, async {
        let cluster = tls_cluster("tls-rotation", tls_options()).await;
        let pki = cluster.pki().expect("CA");
        let pki_dir = pki.ca_path().parent().expect("dir").to_path_buf();
        let ca1 = pki.ca_pem().as_bytes().to_vec();
        let before = presented_serial(cluster.replica(1).expect("r").grpc_addr(), &ca1)
            .await
            .expect("a TLS handshake");

        // The next CA is made now: clients trust both from the start (a
        // client must trust a CA before replicas present its certificates).
        let dir = pki_dir.join("next");
        let next = Pki::new(&dir, "next CA").expect("the next CA");
        let bundle = format!("{}{}", pki.ca_pem(), next.ca_pem());
        let mut trusting = cluster.security();
        trusting.ca = Some(bundle.as_bytes().to_vec());

        let load = WriteLoad {
            writers: 3,
            writes_per_writer: 400,
            duration: Duration::from_secs(40),
            value_len: 32,
            key_prefix: "rot-".into(),
            request_timeout: Duration::from_secs(20),
        };
        let running = load
            .start(|| client_with(&cluster.endpoints(), load.request_timeout, trusting.clone()));

        // New certificates of the same CA.
        rotate(&cluster, pki, &pki_dir, &ca1).await;
        let after = presented_serial(cluster.replica(1).expect("r").grpc_addr(), &ca1)
            .await
            .expect("a TLS handshake");
        assert_ne!(before, after, "new connections see the new certificate");

        // A CA rotation: replicas first trust both CAs, then move to
        // certificates of the new one (the clients' certificates are of the
        // old CA, still trusted through the bundle).
        let reloads_before = metric(&cluster, 1, "raft_tls_reloads_total", "ok").await;
        kuberaft_tests::config::write_atomically(&pki.ca_path(), bundle.as_bytes())
            .expect("bundle");
        until("replica 1 to reload the CA bundle", WAIT, async || {
            let now = metric(&cluster, 1, "raft_tls_reloads_total", "ok").await;
            if now > reloads_before {
                Ok(())
            } else {
                Err(format!("{now} reloads"))
            }
        })
        .await
        .expect("the bundle is reloaded");
        // Every replica has to trust the new CA before any presents it.
        for id in cluster.ids() {
            until("every replica to reload the CA bundle", WAIT, async || {
                let n = metric(&cluster, id, "raft_tls_reloads_total", "ok").await;
                if n >= 2.0 {
                    Ok(())
                } else {
                    Err(format!("{n} reloads on {id}"))
                }
            })
            .await
            .expect("the bundle is reloaded");
        }
        rotate(&cluster, &next, &pki_dir, bundle.as_bytes()).await;

        let report = running.finish().await;
        let failed: Vec<_> = report.indeterminate().collect();
        eprintln!(
            "{} writes during the rotations, {} acknowledged, {} failed",
            report.records.len(),
            report.acked().count(),
            failed.len()
        );
        assert!(report.acked().count() > 0, "the load ran");
        assert!(failed.is_empty(), "no write failed: {:?}", failed.first());
        for id in cluster.ids() {
            healthy(&cluster, id).await;
        }
        serves(&cluster, "after-rotation").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_leaves_the_replica_serving() {
    bounded(LIMIT, async {
        let cluster = tls_cluster("tls-flood", tls_options()).await;
        let target = cluster.replica(1).expect("replica 1").grpc_addr();
        let mut idle = Vec::new();
        for _ in 0..2000 {
            match tokio::net::TcpStream::connect(target).await {
                Ok(s) => idle.push(s),
                Err(e) => panic!("connection {} failed: {e}", idle.len()),
            }
        }
        // Half-done handshakes: a TLS record header and nothing more.
        let mut stalled = Vec::new();
        for _ in 0..50 {
            let mut s = tokio::net::TcpStream::connect(target)
                .await
                .expect("connect");
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
                .await
                .expect("write");
            stalled.push(s);
        }
        let only_one = client_with(
            &cluster.endpoints_of(&[1]),
            Duration::from_secs(20),
            cluster.security(),
        );
        for i in 0..20 {
            let key = format!("flood-{i}");
            only_one
                .put(key.as_bytes(), b"v")
                .await
                .expect("writes through the flooded replica");
            let r = only_one
                .get(key.as_bytes(), Consistency::Linearizable)
                .await
                .expect("reads through it");
            assert!(r.found);
        }
        healthy(&cluster, 1).await;
        // Connections that never finish their handshake are closed.
        until("the stalled handshakes to time out", WAIT, async || {
            let n = metric(&cluster, 1, "raft_tls_handshake_failures_total", "timeout").await;
            if n >= 50.0 {
                Ok(())
            } else {
                Err(format!("{n} timed out"))
            }
        })
        .await
        .expect("handshakes time out");
        drop(idle);
        drop(stalled);
        serves(&cluster, "after-flood").await;
    })
    .await;
}
