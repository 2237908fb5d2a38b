//! Hostile bytes on the gRPC port of a running 3-replica cluster that holds
//! data: gRPC messages whose length prefix lies (4 GiB, just over the
//! limit, longer than what follows), the compressed flag without an
//! encoding, random protobuf bodies sent to every method of every service
//! (peer, kv, admin), valid requests carrying unknown fields, HTTP/2 frames
//! with bad lengths, a garbage preface and a header block that never ends.
//!
//! Each case checks the answer the attacker got (a clean gRPC status where
//! one is due, or the connection closed), then that the cluster is
//! untouched: every replica runs, answers `/healthz`, is still a member, a
//! write and a linearizable read work; at the end every acknowledged key
//! reads back and the replicas' state digests agree.
//!
//! The requests are written with the `h2` crate (an HTTP/2 client with no
//! gRPC layer, so nothing stops a malformed message) or as hand-made frames
//! on a raw TCP stream. Bounded in count and time.

use bytes::{BufMut, Bytes, BytesMut};
use kuberaft_proto::admin as admin_pb;
use kuberaft_proto::kv as kv_pb;
use kuberaft_proto::kv::Consistency;
use kuberaft_proto::raft as raft_pb;
use kuberaft_tests::http;
use kuberaft_tests::{Cluster, ClusterOptions, bounded};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(240);
/// How long the attacker waits for an answer: a bound on a hang.
const ANSWER: Duration = Duration::from_secs(20);
/// The replica's default `max_message_bytes` (8 MiB), which the harness
/// keeps.
const MAX_MESSAGE_BYTES: u32 = 8 << 20;

/// gRPC status codes.
const OK: i32 = 0;
const OUT_OF_RANGE: i32 = 11;
const RESOURCE_EXHAUSTED: i32 = 8;
const INTERNAL: i32 = 13;
const INVALID_ARGUMENT: i32 = 3;

/// Every method of every service, with a check of whether bytes decode as
/// its request (random bodies are drawn until they do not, so that no
/// random admin request can change the cluster by luck).
type Decodes = fn(&[u8]) -> bool;
const METHODS: &[(&str, Decodes)] = &[
    ("/kuberaft.kv.v1.Kv/Put", |b| {
        kv_pb::PutRequest::decode(b).is_ok()
    }),
    ("/kuberaft.kv.v1.Kv/Get", |b| {
        kv_pb::GetRequest::decode(b).is_ok()
    }),
    ("/kuberaft.kv.v1.Kv/Delete", |b| {
        kv_pb::DeleteRequest::decode(b).is_ok()
    }),
    ("/kuberaft.kv.v1.Kv/CompareAndSwap", |b| {
        kv_pb::CompareAndSwapRequest::decode(b).is_ok()
    }),
    ("/kuberaft.kv.v1.Kv/Scan", |b| {
        kv_pb::ScanRequest::decode(b).is_ok()
    }),
    ("/kuberaft.admin.v1.Admin/Status", |b| {
        admin_pb::StatusRequest::decode(b).is_ok()
    }),
    ("/kuberaft.admin.v1.Admin/AddLearner", |b| {
        admin_pb::AddLearnerRequest::decode(b).is_ok()
    }),
    ("/kuberaft.admin.v1.Admin/Promote", |b| {
        admin_pb::MemberRequest::decode(b).is_ok()
    }),
    ("/kuberaft.admin.v1.Admin/RemoveMember", |b| {
        admin_pb::MemberRequest::decode(b).is_ok()
    }),
    ("/kuberaft.admin.v1.Admin/UpdateMember", |b| {
        admin_pb::UpdateMemberRequest::decode(b).is_ok()
    }),
    ("/kuberaft.admin.v1.Admin/TransferLeader", |b| {
        admin_pb::TransferLeaderRequest::decode(b).is_ok()
    }),
    ("/kuberaft.admin.v1.Admin/Snapshot", |b| {
        admin_pb::SnapshotRequest::decode(b).is_ok()
    }),
    ("/kuberaft.admin.v1.Admin/WatchStatus", |b| {
        admin_pb::StatusRequest::decode(b).is_ok()
    }),
    ("/kuberaft.raft.v1.Peer/Stream", |b| {
        raft_pb::Batch::decode(b).is_ok()
    }),
    ("/kuberaft.raft.v1.Peer/InstallSnapshot", |b| {
        raft_pb::SnapshotChunk::decode(b).is_ok()
    }),
];

/// A gRPC message frame: compressed flag, declared length, then `body`
/// (which may be shorter or longer than declared).
fn grpc_frame(compressed: bool, declared: u32, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + body.len());
    b.put_u8(u8::from(compressed));
    b.put_u32(declared);
    b.put_slice(body);
    b.freeze()
}

fn message(body: &[u8]) -> Bytes {
    grpc_frame(false, body.len() as u32, body)
}

/// What came back for one request: the HTTP status and the gRPC status
/// (from the headers of a trailers-only answer, or from the trailers).
#[derive(Debug)]
struct Answer {
    http: u16,
    grpc_status: Option<i32>,
    grpc_message: String,
}

fn grpc_status_of(headers: &::http::HeaderMap) -> Option<(i32, String)> {
    let status = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or("")
        .to_string();
    Some((status, message))
}

/// Sends `frames` as the body of a request to `path` on a fresh HTTP/2
/// connection (ending the stream after them if `end`), and reads the answer.
async fn call(addr: SocketAddr, path: &str, frames: &[Bytes], end: bool) -> Answer {
    let exchange = async {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
        let driver = tokio::spawn(connection);
        let mut client = client.ready().await.expect("HTTP/2 connection ready");
        let request = ::http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("a request");
        let (response, mut send) = client
            .send_request(request, false)
            .expect("the request is sent");
        for (i, frame) in frames.iter().enumerate() {
            // The server may answer (and reset the stream) before it has
            // read everything: a failed send is not the test's failure.
            if send
                .send_data(frame.clone(), end && i + 1 == frames.len())
                .is_err()
            {
                break;
            }
        }
        if frames.is_empty() && end {
            let _ = send.send_data(Bytes::new(), true);
        }
        let response = response.await.expect("an HTTP/2 response");
        let (parts, mut body) = response.into_parts();
        let mut answer = Answer {
            http: parts.status.as_u16(),
            grpc_status: None,
            grpc_message: String::new(),
        };
        if let Some((status, message)) = grpc_status_of(&parts.headers) {
            answer.grpc_status = Some(status);
            answer.grpc_message = message;
        } else {
            while let Some(chunk) = body.data().await {
                let Ok(chunk) = chunk else { break };
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            if let Ok(Some(trailers)) = body.trailers().await
                && let Some((status, message)) = grpc_status_of(&trailers)
            {
                answer.grpc_status = Some(status);
                answer.grpc_message = message;
            }
        }
        drop(send);
        driver.abort();
        answer
    };
    tokio::time::timeout(ANSWER, exchange)
        .await
        .unwrap_or_else(|_| panic!("no answer from {addr}{path} within {ANSWER:?}"))
}

fn assert_status(answer: &Answer, expected: &[i32], case: &str) {
    assert_eq!(
        answer.http, 200,
        "{case}: gRPC answers over HTTP 200: {answer:?}"
    );
    assert!(
        answer.grpc_status.is_some_and(|s| expected.contains(&s)),
        "{case}: expected a gRPC status in {expected:?}, got {answer:?}"
    );
}

/// An HTTP/2 frame header and payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: u8 = 0x4;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const DATA: u8 = 0x0;
const GOAWAY: u8 = 0x7;
const RST_STREAM: u8 = 0x3;
const END_HEADERS: u8 = 0x4;

/// How the server ended a raw connection.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// A GOAWAY frame (and then usually the close).
    GoAway,
    /// The stream was reset; the connection lives on.
    Reset,
    /// Closed (or reset) without a frame we could read.
    Closed,
}

/// Writes `bytes` on a raw connection (stopping if the server closes it)
/// and reads until the server sends GOAWAY or RST_STREAM or closes.
async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Ending {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        let (mut read, mut write) = tcp.split();
        let writer = async {
            for piece in bytes.chunks(16 * 1024) {
                if write.write_all(piece).await.is_err() {
                    break;
                }
            }
        };
        let reader = async {
            let mut seen = Vec::new();
            let mut buf = [0u8; 16 * 1024];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => return scan_frames(&seen).unwrap_or(Ending::Closed),
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
                if let Some(ending) = scan_frames(&seen) {
                    return ending;
                }
            }
        };
        let (_, ending) = tokio::join!(writer, reader);
        ending
    };
    tokio::time::timeout(ANSWER, exchange)
        .await
        .unwrap_or_else(|_| panic!("{addr} neither refused nor closed within {ANSWER:?}"))
}

/// The first GOAWAY or RST_STREAM among the server's frames.
fn scan_frames(mut b: &[u8]) -> Option<Ending> {
    while b.len() >= 9 {
        let len = (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
        match b[3] {
            GOAWAY => return Some(Ending::GoAway),
            RST_STREAM => return Some(Ending::Reset),
            _ => {}
        }
        if b.len() < 9 + len {
            return None;
        }
        b = &b[9 + len..];
    }
    None
}

/// A HEADERS frame's block for a gRPC call to `path` (HPACK: indexed
/// `:method POST`, `:scheme http`, literal `:path` and `content-type`).
fn header_block(path: &str) -> Vec<u8> {
    let mut block = vec![0x83, 0x86];
    for (name, value) in [(":path", path), ("content-type", "application/grpc")] {
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// What every case must leave intact.
struct Data {
    acked: Vec<(String, String)>,
}

impl Data {
    /// Every replica runs, answers `/healthz`, is a member of group 0 and
    /// not waiting to be re-admitted; a write and a linearizable read work.
    async fn check(&mut self, cluster: &mut Cluster, case: &str) {
        let ids = cluster.ids();
        for &id in &ids {
            let replica = cluster.replica_mut(id).expect("replica");
            assert!(replica.is_running(), "{case}: replica {id} died");
            let health = http::get(replica.http_addr(), "/healthz", ANSWER)
                .await
                .unwrap_or_else(|e| panic!("{case}: replica {id} /healthz: {e}"));
            assert_eq!(
                health.status, 200,
                "{case}: replica {id} healthy: {health:?}"
            );
        }
        for &id in &ids {
            let status = cluster.status(id).await.expect("status");
            assert!(
                !status.awaiting_membership,
                "{case}: replica {id} still a member"
            );
            let g = kuberaft_tests::wait::group(&status, 0).expect("group 0");
            assert!(
                g.voters.contains(&id),
                "{case}: replica {id} is still a voter of group 0: {:?}",
                g.voters
            );
        }
        let client = cluster.client();
        let key = format!("after/{case}");
        client
            .put(key.as_bytes(), case.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{case}: a put after the attack: {e}"));
        self.acked.push((key.clone(), case.to_string()));
        let r = client
            .get(key.as_bytes(), Consistency::Linearizable)
            .await
            .unwrap_or_else(|e| panic!("{case}: a linearizable get after the attack: {e}"));
        assert_eq!(r.value.as_ref(), case.as_bytes(), "{case}: read back");
    }

    /// Every acknowledged key reads back; the replicas converge on one
    /// state digest.
    async fn check_all(&self, cluster: &Cluster) {
        let client = cluster.client();
        for (key, value) in &self.acked {
            let r = client
                .get(key.as_bytes(), Consistency::Linearizable)
                .await
                .expect("get");
            assert_eq!(r.value.as_ref(), value.as_bytes(), "{key} intact");
        }
        let ids = cluster.ids();
        cluster
            .wait_converged(&ids, 0)
            .await
            .expect("the replicas agree on the state digest");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_get_clean_errors_and_leave_the_cluster_intact() {
    bounded(LIMIT, async {
        let mut cluster = Cluster::start("hostile-input", ClusterOptions::default())
            .await
            .expect("the cluster starts");
        let client = cluster.client();
        let mut data = Data { acked: Vec::new() };
        for i in 0..20 {
            let (k, v) = (format!("keep/{i}"), format!("value {i}"));
            client.put(k.as_bytes(), v.as_bytes()).await.expect("put");
            data.acked.push((k, v));
        }
        let leader = cluster.wait_leader(0).await.expect("leader");
        // The leader is the one whose loss would hurt: attack it, and one
        // follower for the cases that are about a single connection.
        let target = cluster.replica(leader).expect("leader").grpc_addr();
        let put = "/kuberaft.kv.v1.Kv/Put";
        let valid_put = kv_pb::PutRequest {
            key: Bytes::from_static(b"hostile/valid"),
            value: Bytes::from_static(b"v"),
            ..Default::default()
        }
        .encode_to_vec();

        // A length prefix claiming 4 GiB, then a few bytes, stream open.
        let a = call(
            target,
            put,
            &[grpc_frame(false, u32::MAX, &valid_put)],
            false,
        )
        .await;
        assert_status(
            &a,
            &[OUT_OF_RANGE, RESOURCE_EXHAUSTED],
            "4 GiB length prefix",
        );
        data.check(&mut cluster, "length-4gib").await;

        // A length prefix one byte over the limit.
        let a = call(
            target,
            put,
            &[grpc_frame(false, MAX_MESSAGE_BYTES + 1, &valid_put)],
            true,
        )
        .await;
        assert_status(&a, &[OUT_OF_RANGE, RESOURCE_EXHAUSTED], "over the limit");
        assert!(
            a.grpc_message.contains(&MAX_MESSAGE_BYTES.to_string()),
            "the message names the limit: {a:?}"
        );
        data.check(&mut cluster, "length-over-limit").await;

        // A message cut short, then END_STREAM.
        let a = call(
            target,
            put,
            &[grpc_frame(false, valid_put.len() as u32 + 100, &valid_put)],
            true,
        )
        .await;
        assert_status(&a, &[INTERNAL, INVALID_ARGUMENT], "truncated message");
        data.check(&mut cluster, "truncated").await;

        // The compressed flag, with no grpc-encoding negotiated.
        let a = call(
            target,
            put,
            &[grpc_frame(true, valid_put.len() as u32, &valid_put)],
            true,
        )
        .await;
        assert_status(&a, &[INTERNAL, OUT_OF_RANGE], "compressed flag");
        data.check(&mut cluster, "compressed-flag").await;

        // Random bodies to every method of every service.
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(9);
        for (path, decodes) in METHODS {
            for _ in 0..3 {
                let body = loop {
                    let len = rng.random_range(1..256);
                    let body: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                    if !decodes(&body) {
                        break body;
                    }
                };
                let a = call(target, path, &[message(&body)], true).await;
                // A bidirectional peer stream that cannot decode a batch
                // ends with the decoding error too.
                assert_status(
                    &a,
                    &[INTERNAL, INVALID_ARGUMENT],
                    &format!("random body to {path}"),
                );
            }
        }
        data.check(&mut cluster, "random-bodies").await;

        // Valid requests with unknown fields: accepted, the fields ignored.
        let mut with_unknown = valid_put.clone();
        // Field 1000, varint 7; field 1001, 3 bytes.
        with_unknown.extend_from_slice(&[0xc0, 0x3e, 0x07, 0xca, 0x3e, 0x03, b'x', b'y', b'z']);
        let a = call(target, put, &[message(&with_unknown)], true).await;
        assert_status(&a, &[OK], "a put with unknown fields");
        let r = client
            .get(b"hostile/valid", Consistency::Linearizable)
            .await
            .expect("get");
        assert_eq!(
            r.value.as_ref(),
            b"v",
            "the put with unknown fields applied"
        );
        data.acked.push(("hostile/valid".into(), "v".into()));
        let a = call(
            target,
            "/kuberaft.admin.v1.Admin/Status",
            &[message(&[0xc0, 0x3e, 0x07])],
            true,
        )
        .await;
        assert_status(&a, &[OK], "a status request with unknown fields");
        data.check(&mut cluster, "unknown-fields").await;

        // HTTP/2 frames with bad lengths, and a garbage preface.
        let mut settings_bad = PREFACE.to_vec();
        settings_bad.extend(h2_frame(SETTINGS, 0, 0, &[0; 7]));
        assert_ne!(
            raw_exchange(target, &settings_bad).await,
            Ending::Reset,
            "a SETTINGS frame of 7 bytes is a connection error"
        );
        let mut oversized = PREFACE.to_vec();
        oversized.extend(h2_frame(SETTINGS, 0, 0, &[]));
        oversized.extend(h2_frame(HEADERS, END_HEADERS, 1, &header_block(put)));
        // A DATA frame header claiming 16 MiB (over the 16 KiB frame limit),
        // followed by a little data.
        oversized.extend_from_slice(&[0xff, 0xff, 0xff, DATA, 0, 0, 0, 0, 1]);
        oversized.extend_from_slice(&[0u8; 1024]);
        raw_exchange(target, &oversized).await;
        let mut garbage = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        garbage.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8));
        assert_eq!(
            raw_exchange(target, &garbage).await,
            Ending::Closed,
            "a garbage preface closes the connection"
        );
        data.check(&mut cluster, "bad-frames").await;

        // A header block that never ends: HEADERS without END_HEADERS, then
        // 4 MiB of CONTINUATION frames of padding headers.
        let mut flood = PREFACE.to_vec();
        flood.extend(h2_frame(SETTINGS, 0, 0, &[]));
        flood.extend(h2_frame(HEADERS, 0, 1, &header_block(put)));
        let mut pad = Vec::new();
        while pad.len() < 16 * 1024 - 128 {
            pad.extend_from_slice(&[0x00, 5]);
            pad.extend_from_slice(b"x-pad");
            pad.push(100);
            pad.extend_from_slice(&[b'a'; 100]);
        }
        for _ in 0..256 {
            flood.extend(h2_frame(CONTINUATION, 0, 1, &pad));
        }
        let ending = raw_exchange(target, &flood).await;
        assert_ne!(
            ending,
            Ending::Reset,
            "an endless header block is a connection error, not a stream error"
        );
        data.check(&mut cluster, "header-flood").await;

        data.check_all(&cluster).await;
    })
    .await;
}
