//! Fuzz target `snapshot_chunks`: the chunks of a snapshot stream from a
//! peer, checked as the peer service checks them, and the data they add up
//! to restored into a key-value state machine.
//!
//! Input: a mode byte, then length-delimited `pb::SnapshotChunk`s. Mode bit
//! 1 addresses the first chunk correctly (cluster "fuzz", from node 2 to node
//! 1); bit 2 sets every offset and the last chunk's checksum to the right
//! values, so that the fuzzer reaches the restore with data of its choosing.
//!
//! Checked, whatever the bytes: the receiver accepts a stream or refuses it
//! with a gRPC status, never panics; accepted data is restored or refused by
//! the state machine; a restored state survives its own snapshot unchanged.

use super::{split_mode, with_mode};
use crate::kv::{KvStateMachine, SessionPolicy};
use crate::raft::{GroupId, LogIndex, Message, MessageBody, NodeId, Term};
use crate::transport::codec::encode_snapshot_meta;
use crate::transport::{ChunkCheck, PeerService, TransportConfig, open_snapshot};
use kuberaft_proto::raft as pb;
use prost::Message as _;
use std::path::PathBuf;

const ME: NodeId = NodeId(1);
const CLUSTER: &str = "fuzz";
/// More chunks cost time without reaching new code.
const MAX_CHUNKS: usize = 64;

fn service() -> PeerService {
    let (inbox, _) = tokio::sync::mpsc::channel(1);
    PeerService::new(
        TransportConfig::new(CLUSTER, ME, PathBuf::from("(unused)")),
        inbox,
    )
}

/// Receives `chunks` as the peer service does; returns the snapshot's
/// group, its `InstallSnapshot` message and its data.
fn receive(
    service: &PeerService,
    chunks: Vec<pb::SnapshotChunk>,
) -> Result<(GroupId, Message, Vec<u8>), tonic::Status> {
    let mut chunks = chunks.into_iter();
    let first = chunks
        .next()
        .ok_or_else(|| tonic::Status::invalid_argument("empty snapshot stream"))?;
    let (_, group, message) = open_snapshot(service, &first)?;
    let mut check = ChunkCheck::default();
    let mut data = Vec::new();
    let mut chunk = first;
    loop {
        let last = check.accept(&chunk)?;
        data.extend_from_slice(&chunk.data);
        if last {
            return Ok((group, message, data));
        }
        chunk = chunks.next().ok_or_else(|| {
            tonic::Status::invalid_argument("snapshot stream ended before its last chunk")
        })?;
    }
}

pub fn run(input: &[u8]) {
    let Some((mode, mut rest)) = split_mode(input) else {
        return;
    };
    let mut chunks = Vec::new();
    while !rest.is_empty() && chunks.len() < MAX_CHUNKS {
        match pb::SnapshotChunk::decode_length_delimited(&mut rest) {
            Ok(chunk) => chunks.push(chunk),
            Err(_) => break,
        }
    }
    if mode & 1 == 1
        && let Some(first) = chunks.first_mut()
    {
        first.cluster_id = CLUSTER.into();
        first.from = 2;
        first.to = ME.0;
    }
    if mode & 2 == 2 {
        let (mut offset, mut crc) = (0u64, 0u32);
        for chunk in &mut chunks {
            chunk.offset = offset;
            offset += chunk.data.len() as u64;
            crc = crc32c::crc32c_append(crc, &chunk.data);
            if chunk.last {
                chunk.checksum = crc;
            }
        }
    }
    let Ok((group, message, data)) = receive(&service(), chunks) else {
        return;
    };
    let MessageBody::InstallSnapshot { .. } = message.body else {
        panic!("an accepted snapshot stream must carry an InstallSnapshot message");
    };
    restore_round_trip(group, &data);
}

/// Restores `data`; if that works, the restored state must come back
/// unchanged from its own snapshot.
pub(super) fn restore_round_trip(group: GroupId, data: &[u8]) {
    let mut machine = KvStateMachine::new(group, SessionPolicy::default());
    let before = machine.digest();
    let Ok(info) = machine.restore_snapshot(data) else {
        assert_eq!(
            machine.digest(),
            before,
            "a refused snapshot changed the state machine"
        );
        return;
    };
    assert_eq!(info.group, group);
    let mut again = Vec::new();
    machine
        .write_snapshot(&mut again)
        .expect("writing to memory cannot fail");
    let mut copy = KvStateMachine::new(group, SessionPolicy::default());
    copy.restore_snapshot(&again[..])
        .expect("a snapshot of a restored state restores");
    assert_eq!(copy.digest(), machine.digest());
    assert_eq!(copy.members(), machine.members());
    assert_eq!(
        copy.iter().collect::<Vec<_>>(),
        machine.iter().collect::<Vec<_>>()
    );
}

/// A state machine with pairs, sessions and members, as a replica has one.
pub(super) fn sample_snapshot(group: GroupId) -> Vec<u8> {
    use crate::kv::{ClientId, Command, Op, SessionRef};
    use crate::raft::{Entry, Payload};
    use bytes::Bytes;
    let mut machine = KvStateMachine::new(group, SessionPolicy::default());
    let client = ClientId::new(77).expect("non-zero");
    let ops = [
        (
            None,
            Op::Put {
                key: Bytes::from_static(b"alpha"),
                value: Bytes::from_static(b"1"),
            },
        ),
        (
            Some(SessionRef { client, seq: 1 }),
            Op::CompareAndSwap {
                key: Bytes::from_static(b"beta"),
                expected: None,
                new: Some(Bytes::from_static(b"2")),
            },
        ),
        (
            None,
            Op::SetMember {
                id: 2,
                name: Bytes::from_static(b"bravo"),
                address: Bytes::from_static(b"127.0.0.1:3265"),
                incarnation: 9,
            },
        ),
    ];
    for (i, (session, op)) in ops.into_iter().enumerate() {
        let command = Command {
            session,
            proposed_at_ms: 1_000 + i as u64,
            op,
        };
        machine
            .apply(&Entry {
                term: Term(1),
                index: LogIndex(i as u64 + 1),
                payload: Payload::Command(command.encode()),
            })
            .expect("in order");
    }
    let mut out = Vec::new();
    machine
        .write_snapshot(&mut out)
        .expect("writing to memory cannot fail");
    out
}

fn chunks_of(data: &[u8], pieces: usize) -> Vec<u8> {
    let meta = crate::raft::SnapshotMeta {
        index: LogIndex(3),
        term: Term(1),
        conf_state: crate::raft::ConfState::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
    };
    let size = data.len().div_ceil(pieces).max(1);
    let parts: Vec<&[u8]> = data.chunks(size).collect();
    let crc = crc32c::crc32c(data);
    let mut out = Vec::new();
    let mut offset = 0u64;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        pb::SnapshotChunk {
            cluster_id: CLUSTER.into(),
            from: 2,
            to: ME.0,
            group: 0,
            meta: (i == 0).then(|| encode_snapshot_meta(&meta)),
            term: 1,
            offset,
            data: part.to_vec().into(),
            last,
            checksum: if last { crc } else { 0 },
        }
        .encode_length_delimited(&mut out)
        .expect("a vector grows");
        offset += part.len() as u64;
    }
    out
}

pub fn seeds() -> Vec<Vec<u8>> {
    let data = sample_snapshot(GroupId(0));
    let mut out = Vec::new();
    for pieces in [1, 3] {
        let stream = chunks_of(&data, pieces);
        out.push(with_mode(0, &stream));
        out.push(with_mode(3, &stream));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_stream_is_received_and_restored() {
        let data = sample_snapshot(GroupId(0));
        let mut stream = &chunks_of(&data, 3)[..];
        let mut chunks = Vec::new();
        while !stream.is_empty() {
            chunks.push(pb::SnapshotChunk::decode_length_delimited(&mut stream).unwrap());
        }
        let (group, _, received) = receive(&service(), chunks).expect("accepted");
        assert_eq!(group, GroupId(0));
        assert_eq!(received, data);
        let mut machine = KvStateMachine::new(group, SessionPolicy::default());
        let info = machine.restore_snapshot(&received[..]).expect("restores");
        assert_eq!((info.pairs, info.sessions), (2, 1));
    }
}
