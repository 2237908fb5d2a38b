//! Snapshots on the wire: streamed in chunks from a reader on the sender
//! (read on a blocking thread) and into a file on the receiver, with a
//! CRC32C over the whole data, so a snapshot never has to fit in memory.

use super::TransportConfig;
use super::codec::{decode_message, encode_snapshot_meta};
use super::server::PeerService;
use crate::raft::{GroupId, Message, MessageBody, NodeId};
use kuberaft_proto::raft as pb;
use kuberaft_proto::raft::peer_client::PeerClient;
use std::io::Read;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;
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

/// Where a snapshot's data comes from: any reader (the storage's snapshot
/// reader, which verifies its checksum as it goes, or a plain file).
pub type SnapshotSource = Box<dyn Read + Send>;

pub(super) async fn stream_snapshot(
    config: &TransportConfig,
    to: NodeId,
    endpoint: &Endpoint,
    group: GroupId,
    message: &Message,
    source: SnapshotSource,
) -> Result<(), String> {
    let MessageBody::InstallSnapshot { meta } = &message.body else {
        return Err("not a snapshot message".into());
    };
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let mut client = PeerClient::new(channel)
        .max_encoding_message_size(config.max_message_bytes)
        .max_decoding_message_size(config.max_message_bytes);
    let chunk_bytes = CHUNK_BYTES.min(config.max_message_bytes / 2).max(1);
    // A blocking thread reads the source; at most a few chunks wait in
    // memory at any time.
    let (data_tx, mut data_rx) = mpsc::channel::<Result<Vec<u8>, String>>(2);
    let reader = tokio::task::spawn_blocking(move || read_chunks(source, chunk_bytes, data_tx));
    let (tx, rx) = mpsc::channel(2);
    let call = tokio::spawn(async move { client.install_snapshot(ReceiverStream::new(rx)).await });
    let mut offset = 0u64;
    let mut crc = 0u32;
    let mut first = true;
    let mut pending = data_rx.recv().await;
    loop {
        let data = match pending.take() {
            Some(Ok(data)) => data,
            Some(Err(e)) => return Err(e),
            None => Vec::new(),
        };
        pending = if data.is_empty() {
            None
        } else {
            data_rx.recv().await
        };
        let last = pending.is_none();
        crc = crc32c::crc32c_append(crc, &data);
        let len = data.len() as u64;
        let chunk = pb::SnapshotChunk {
            cluster_id: config.cluster_id.clone(),
            from: config.node.0,
            to: to.0,
            group: group.0,
            meta: first.then(|| encode_snapshot_meta(meta)),
            term: message.term.0,
            offset,
            data: data.into(),
            last,
            checksum: if last { crc } else { 0 },
        };
        first = false;
        offset += len;
        if tx.send(chunk).await.is_err() || last {
            break;
        }
    }
    drop(tx);
    let _ = reader.await;
    let ack = call
        .await
        .map_err(|e| format!("snapshot task failed: {e}"))?
        .map_err(|status| status.message().to_string())?
        .into_inner();
    if ack.accepted { Ok(()) } else { Err(ack.error) }
}

/// Reads `source` in chunks of `size` into `out` until its end (an empty
/// read) or an error.
fn read_chunks(
    mut source: SnapshotSource,
    size: usize,
    out: mpsc::Sender<Result<Vec<u8>, String>>,
) {
    loop {
        let mut buf = vec![0u8; size];
        let mut filled = 0;
        while filled < size {
            match source.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = out.blocking_send(Err(format!("reading the snapshot: {e}")));
                    return;
                }
            }
        }
        buf.truncate(filled);
        let done = filled == 0;
        if out.blocking_send(Ok(buf)).is_err() || done {
            return;
        }
    }
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
    let (from, group, message) = open_snapshot(service, &first)?;
    let MessageBody::InstallSnapshot { meta } = &message.body else {
        unreachable!("open_snapshot returns an InstallSnapshot message");
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

/// Checks the first chunk of a snapshot stream: it is meant for this node of
/// this cluster and carries valid metadata. Returns the sender, the group and
/// the `InstallSnapshot` message to step once the data has arrived.
pub(crate) fn open_snapshot(
    service: &PeerService,
    first: &pb::SnapshotChunk,
) -> Result<(NodeId, GroupId, Message), Status> {
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
    let (group, message) = decode_message(from, service.config().node, wire)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok((from, group, message))
}

/// What the receiver checks of each chunk after the first's metadata: that
/// chunks come in order without gaps or overlaps, and that the data add up
/// to the checksum the last one carries.
#[derive(Debug, Default)]
pub(crate) struct ChunkCheck {
    crc: u32,
    expected_offset: u64,
}

impl ChunkCheck {
    /// Accepts `chunk` (whose data the caller then writes), or says why the
    /// stream is refused. Returns whether it was the last chunk.
    pub(crate) fn accept(&mut self, chunk: &pb::SnapshotChunk) -> Result<bool, Status> {
        if chunk.offset != self.expected_offset {
            return Err(Status::invalid_argument(format!(
                "snapshot chunk at offset {} where {} was expected",
                chunk.offset, self.expected_offset
            )));
        }
        self.crc = crc32c::crc32c_append(self.crc, &chunk.data);
        self.expected_offset += chunk.data.len() as u64;
        if chunk.last && chunk.checksum != self.crc {
            return Err(Status::data_loss(format!(
                "snapshot checksum mismatch: sent {:08x}, received data has {:08x}",
                chunk.checksum, self.crc
            )));
        }
        Ok(chunk.last)
    }
}

async fn write_chunks(
    path: &Path,
    first: pb::SnapshotChunk,
    chunks: &mut Streaming<pb::SnapshotChunk>,
) -> Result<(), Status> {
    let io =
        |e: std::io::Error| Status::internal(format!("writing snapshot {}: {e}", path.display()));
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut check = ChunkCheck::default();
    let mut chunk = first;
    loop {
        let last = check.accept(&chunk)?;
        file.write_all(&chunk.data).await.map_err(io)?;
        if last {
            break;
        }
        chunk = chunks.message().await?.ok_or_else(|| {
            Status::invalid_argument("snapshot stream ended before its last chunk")
        })?;
    }
    file.sync_all().await.map_err(io)?;
    Ok(())
}
