//! The peer transport on real sockets: two nodes on their own loopback
//! addresses exchange batches and a snapshot; a node of another cluster is
//! refused.

use kuberaft::raft::{GroupId, LogIndex, Message, MessageBody, NodeId, SnapshotMeta, Term};
use kuberaft::transport::{Inbound, PeerService, Transport, TransportConfig, TransportEvent};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::TcpListenerStream;

const WAIT: Duration = Duration::from_secs(20);

async fn listen(ip: &str) -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), 0))
        .await
        .unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

fn serve(config: TransportConfig, listener: TcpListener) -> mpsc::Receiver<Inbound> {
    let (inbox, rx) = mpsc::channel(64);
    let svc = PeerService::new(config, inbox).into_server();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    rx
}

fn heartbeat(from: u64, to: u64, commit: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(3),
        body: MessageBody::Heartbeat {
            commit: LogIndex(commit),
            read_round: 0,
        },
    }
}

fn config(
    cluster: &str,
    node: u64,
    ip: &str,
    dir: &Path,
    peers: &[(u64, SocketAddr)],
) -> TransportConfig {
    let mut c = TransportConfig::new(cluster, NodeId(node), dir.join(format!("snap-{node}")));
    c.local_ip = Some(ip.parse().unwrap());
    c.peers = peers
        .iter()
        .map(|&(id, a)| (NodeId(id), a.to_string()))
        .collect();
    c
}

#[tokio::test]
async fn batches_and_snapshots_travel_between_two_nodes() {
    let dir = tempdir();
    let (l1, a1) = listen("127.0.0.2").await;
    let (l2, a2) = listen("127.0.0.3").await;
    let peers = [(1, a1), (2, a2)];
    let c1 = config("alpha", 1, "127.0.0.2", &dir, &peers);
    let c2 = config("alpha", 2, "127.0.0.3", &dir, &peers);
    let _rx1 = serve(c1.clone(), l1);
    let mut rx2 = serve(c2.clone(), l2);
    let (events, mut events_rx) = mpsc::unbounded_channel();
    let t1 = Transport::start(&c1, events);

    // Messages of several groups queued together arrive, in order.
    t1.send(
        NodeId(2),
        vec![
            (GroupId(0), heartbeat(1, 2, 5)),
            (GroupId(7), heartbeat(1, 2, 9)),
        ],
    );
    let mut got = Vec::new();
    while got.len() < 2 {
        match tokio::time::timeout(WAIT, rx2.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Inbound::Batch { from, messages } => {
                assert_eq!(from, NodeId(1));
                got.extend(messages);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        got,
        vec![
            (GroupId(0), heartbeat(1, 2, 5)),
            (GroupId(7), heartbeat(1, 2, 9))
        ]
    );

    // A snapshot larger than one chunk arrives whole.
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let src = dir.join("to-send.snap");
    std::fs::write(&src, &data).unwrap();
    let snap = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(3),
        body: MessageBody::InstallSnapshot {
            meta: SnapshotMeta {
                index: LogIndex(40),
                term: Term(2),
                ..SnapshotMeta::default()
            },
        },
    };
    t1.send_snapshot(
        NodeId(2),
        GroupId(7),
        snap.clone(),
        Box::new(std::fs::File::open(&src).unwrap()),
    );
    let received = loop {
        match tokio::time::timeout(WAIT, rx2.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Inbound::Snapshot(s) => break s,
            Inbound::Batch { .. } => continue,
        }
    };
    assert_eq!(received.group, GroupId(7));
    assert_eq!(received.message, snap);
    assert_eq!(std::fs::read(&received.path).unwrap(), data);
    let event = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(e @ TransportEvent::SnapshotSent { .. }) = events_rx.recv().await {
                return e;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        event,
        TransportEvent::SnapshotSent {
            to: NodeId(2),
            group: GroupId(7),
            ok: true
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_node_of_another_cluster_is_refused() {
    let dir = tempdir();
    let (l1, a1) = listen("127.0.0.4").await;
    let (l2, a2) = listen("127.0.0.5").await;
    let peers = [(1, a1), (2, a2)];
    let ours = config("alpha", 2, "127.0.0.5", &dir, &peers);
    let theirs = config("bravo", 1, "127.0.0.4", &dir, &peers);
    drop(l1);
    let mut rx = serve(ours, l2);
    let (events, mut events_rx) = mpsc::unbounded_channel();
    let t = Transport::start(&theirs, events);
    // Keep sending until the refusal surfaces as an unreachable peer.
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            t.send(NodeId(2), vec![(GroupId(0), heartbeat(1, 2, 1))]);
            tokio::select! {
                e = events_rx.recv() => if e == Some(TransportEvent::Unreachable(NodeId(2))) { return },
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "the sender learns that the peer refused it"
    );
    assert!(
        rx.try_recv().is_err(),
        "nothing of the other cluster reached the node"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kuberaft-transport-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
