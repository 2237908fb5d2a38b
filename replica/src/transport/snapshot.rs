//! Snapshots on the wire: streamed in chunks from a file on the sender and
//! into a file on the receiver, with a CRC32C over the whole data, so a
//! snapshot never has to fit in memory.

use super::TransportConfig;
use super::codec::{decode_message, encode_snapshot_meta};
use super::server::PeerService;
use crate::raft::{GroupId, Message, MessageBody, NodeId};
use kuberaft_proto::raft as pb;
use kuberaft_proto::raft::peer_client::PeerClient;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tonic::{Status, Streaming};

const CHUNK_BYTES: usize = 1 << 20;

/// A snapshot that arrived completely and whose checksum matched.
#[derive(Debug)]
pub struct ReceivedSnapshot {
    pub from: NodeId,
    pub group: GroupId,
    /// The `InstallSnapshot` message to step into the group's core.
    pub message: Message,
    /// The data, in a file under the transport's snapshot directory. The
    /// node adopts it (moves it into storage) or deletes it.
    pub path: PathBuf,
}

pub(super) async fn stream_snapshot(
    config: &TransportConfig,
    to: NodeId,
    endpoint: &Endpoint,
    group: GroupId,
    message: &Message,
    path: &Path,
) -> Result<(), String> {
    let MessageBody::InstallSnapshot { meta } = &message.body else {
        return Err("not a snapshot message".into());
    };
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot open snapshot {}: {e}", path.display()))?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let mut client = PeerClient::new(channel)
        .max_encoding_message_size(config.max_message_bytes)
        .max_decoding_message_size(config.max_message_bytes);
    let (tx, rx) = mpsc::channel(4);
    let call = tokio::spawn(async move { client.install_snapshot(ReceiverStream::new(rx)).await });
    let chunk_bytes = CHUNK_BYTES.min(config.max_message_bytes / 2).max(1);
    let mut offset = 0u64;
    let mut crc = 0u32;
    let mut first = true;
    loop {
        let mut buf = vec![0u8; chunk_bytes];
        let mut filled = 0;
        while filled < buf.len() {
            let n = file
                .read(&mut buf[filled..])
                .await
                .map_err(|e| format!("reading snapshot {}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        let last = filled < chunk_bytes;
        crc = crc32c::crc32c_append(crc, &buf);
        let chunk = pb::SnapshotChunk {
            cluster_id: config.cluster_id.clone(),
            from: config.node.0,
            to: to.0,
            group: group.0,
            meta: first.then(|| encode_snapshot_meta(meta)),
            term: message.term.0,
            offset,
            data: buf.into(),
            last,
            checksum: if last { crc } else { 0 },
        };
        first = false;
        offset += filled as u64;
        if tx.send(chunk).await.is_err() {
            break;
        }
        if last {
            break;
        }
    }
    drop(tx);
    let ack = call
        .await
        .map_err(|e| format!("snapshot task failed: {e}"))?
        .map_err(|status| status.message().to_string())?
        .into_inner();
    if ack.accepted { Ok(()) } else { Err(ack.error) }
}

pub(super) async fn receive_snapshot(
    service: &PeerService,
    mut chunks: Streaming<pb::SnapshotChunk>,
) -> Result<ReceivedSnapshot, Status> {
    let config = service.config();
    let first = chunks
        .message()
        .await?
        .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
    let from = service.check_addressee(&first.cluster_id, first.from, first.to)?;
    let meta = first
        .meta
        .clone()
        .ok_or_else(|| Status::invalid_argument("the first snapshot chunk carries no metadata"))?;
    let wire = pb::GroupMessage {
        group: first.group,
        term: first.term,
        body: Some(pb::group_message::Body::InstallSnapshot(meta)),
    };
    let (group, message) = decode_message(from, config.node, wire)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let MessageBody::InstallSnapshot { meta } = &message.body else {
        unreachable!("decoded from an InstallSnapshot body");
    };
    tokio::fs::create_dir_all(&config.snapshot_dir)
        .await
        .map_err(|e| {
            Status::internal(format!(
                "cannot create {}: {e}",
                config.snapshot_dir.display()
            ))
        })?;
    let path = config.snapshot_dir.join(format!(
        "incoming-{}-{}-{}.part",
        from, group.0, meta.index.0
    ));
    let result = write_chunks(&path, first, &mut chunks).await;
    if let Err(status) = result {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(status);
    }
    Ok(ReceivedSnapshot {
        from,
        group,
        message,
        path,
    })
}

async fn write_chunks(
    path: &Path,
    first: pb::SnapshotChunk,
    chunks: &mut Streaming<pb::SnapshotChunk>,
) -> Result<(), Status> {
    let io =
        |e: std::io::Error| Status::internal(format!("writing snapshot {}: {e}", path.display()));
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut crc = 0u32;
    let mut expected_offset = 0u64;
    let mut chunk = first;
    loop {
        if chunk.offset != expected_offset {
            return Err(Status::invalid_argument(format!(
                "snapshot chunk at offset {} where {} was expected",
                chunk.offset, expected_offset
            )));
        }
        crc = crc32c::crc32c_append(crc, &chunk.data);
        file.write_all(&chunk.data).await.map_err(io)?;
        expected_offset += chunk.data.len() as u64;
        if chunk.last {
            if chunk.checksum != crc {
                return Err(Status::data_loss(format!(
                    "snapshot checksum mismatch: sent {:08x}, received data has {:08x}",
                    chunk.checksum, crc
                )));
            }
            break;
        }
        chunk = chunks.message().await?.ok_or_else(|| {
            Status::invalid_argument("snapshot stream ended before its last chunk")
        })?;
    }
    file.sync_all().await.map_err(io)?;
    Ok(())
}
