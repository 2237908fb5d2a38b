//! Snapshots of a group's state machine: the whole map, the sessions and the
//! applied position, streamed to a writer and restored from a reader.
//!
//! Writing streams straight from the map (no second copy of the state in
//! memory). Restoring builds a new map beside the current one and swaps it
//! in only once the whole snapshot, checksum included, has been verified: a
//! corrupt or truncated snapshot leaves the state machine as it was.
//!
//! # Format (version 2)
//!
//! ```text
//! header   8 bytes  magic "KRAFTKV\0"
//!          u8       version (2)
//!          u64 LE   group id, applied index, applied term,
//!                   replicated clock (ms)
//! records  u8       tag
//!          varint   body length (at most MAX_RECORD_BYTES)
//!          body:    pair    (tag 1): bytes key, bytes value
//!                   session (tag 2): varint client, varint seq,
//!                                    varint last active (ms), response
//!                   member  (tag 3): varint id, bytes name, bytes address,
//!                                    varint incarnation
//!                   end     (tag 0): varint pairs, varint sessions,
//!                                    varint members
//! trailer  u32 LE   CRC32C of every byte before it
//! ```
//!
//! Pairs come in strictly increasing key order, then sessions in strictly
//! increasing client order, then members in strictly increasing id order,
//! then exactly one end record; the reader must end right after the
//! trailer. Version 1 is version 2 without members (its end record has two
//! counts); it is still read.

use super::codec::{self, DecodeError, Reader};
use super::command::{self, ClientId};
use super::limits::{self, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use super::machine::{KvStateMachine, MemberRecord, entry_hash};
use super::session::{Session, Sessions};
use crate::raft::{GroupId, LogIndex, Term};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::io::{self, BufReader, BufWriter, Read, Write};
use thiserror::Error;

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"KRAFTKV\0";
pub const SNAPSHOT_VERSION: u8 = 2;
/// The oldest version this replica still reads.
pub const OLDEST_SNAPSHOT_VERSION: u8 = 1;
const HEADER_BYTES: usize = 8 + 1 + 4 * 8;
/// The largest record body: a session caching a maximal value, or a pair of
/// a maximal key and value, with their length prefixes.
pub const MAX_RECORD_BYTES: usize = MAX_KEY_BYTES + MAX_VALUE_BYTES + 64;

const TAG_END: u8 = 0;
const TAG_PAIR: u8 = 1;
const TAG_SESSION: u8 = 2;
const TAG_MEMBER: u8 = 3;

/// What a snapshot holds, as read from its header and trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub group: GroupId,
    pub index: LogIndex,
    pub term: Term,
    pub pairs: u64,
    pub sessions: u64,
    /// Total size, trailer included.
    pub bytes: u64,
    /// The CRC32C stored in the trailer.
    pub checksum: u32,
}

/// Why a snapshot could not be restored. The state machine is unchanged.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("reading the snapshot failed at byte {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("the snapshot is truncated: it ends at byte {offset}, inside the {what}")]
    Truncated { offset: u64, what: &'static str },
    #[error("not a kuberaft key-value snapshot: the magic bytes are {found:02x?}")]
    BadMagic { found: [u8; 8] },
    #[error(
        "snapshot format version {found} is not supported (this replica reads version {supported}); \
         upgrade the replica"
    )]
    UnsupportedVersion { found: u8, supported: u8 },
    #[error("the snapshot belongs to group {found}, not to group {expected}")]
    GroupMismatch { expected: GroupId, found: GroupId },
    #[error("the snapshot is corrupt at byte {offset}: {problem}")]
    Corrupt { offset: u64, problem: String },
    #[error(
        "the snapshot is corrupt: its checksum says {stored:08x} but its contents hash to {computed:08x}"
    )]
    ChecksumMismatch { stored: u32, computed: u32 },
}

/// A writer that checksums and counts what passes through it.
struct CrcWriter<W: Write> {
    inner: BufWriter<W>,
    crc: u32,
    bytes: u64,
}

impl<W: Write> CrcWriter<W> {
    fn put(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn put_varint(&mut self, v: u64) -> io::Result<()> {
        let mut buf = [0u8; 10];
        let mut slice = &mut buf[..];
        codec::put_varint(&mut slice, v);
        let len = codec::varint_len(v);
        self.put(&buf[..len])
    }
}

impl KvStateMachine {
    /// Writes the whole state as a snapshot. Pass a buffered or unbuffered
    /// writer; small writes are coalesced here. The caller makes the result
    /// durable (fsync, rename) as the storage layer requires.
    pub fn write_snapshot<W: Write>(&self, writer: W) -> io::Result<SnapshotInfo> {
        let mut w = CrcWriter {
            inner: BufWriter::with_capacity(64 * 1024, writer),
            crc: 0,
            bytes: 0,
        };
        w.put(&SNAPSHOT_MAGIC)?;
        w.put(&[SNAPSHOT_VERSION])?;
        for field in [
            self.group.0,
            self.applied_index.0,
            self.applied_term.0,
            self.clock_ms,
        ] {
            w.put(&field.to_le_bytes())?;
        }
        let framed = |b: &[u8]| codec::varint_len(b.len() as u64) + b.len();
        for (key, value) in &self.map {
            w.put(&[TAG_PAIR])?;
            w.put_varint((framed(key) + framed(value)) as u64)?;
            w.put_varint(key.len() as u64)?;
            w.put(key)?;
            w.put_varint(value.len() as u64)?;
            w.put(value)?;
        }
        let mut body = Vec::new();
        for (client, s) in self.sessions.iter() {
            body.clear();
            codec::put_varint(&mut body, client.get());
            codec::put_varint(&mut body, s.seq);
            codec::put_varint(&mut body, s.last_active_ms);
            command::encode_cached(&mut body, &s.result);
            w.put(&[TAG_SESSION])?;
            w.put_varint(body.len() as u64)?;
            w.put(&body)?;
        }
        for (id, m) in &self.members {
            body.clear();
            codec::put_varint(&mut body, *id);
            codec::put_bytes(&mut body, &m.name);
            codec::put_bytes(&mut body, &m.address);
            codec::put_varint(&mut body, m.incarnation);
            w.put(&[TAG_MEMBER])?;
            w.put_varint(body.len() as u64)?;
            w.put(&body)?;
        }
        body.clear();
        codec::put_varint(&mut body, self.map.len() as u64);
        codec::put_varint(&mut body, self.sessions.len() as u64);
        codec::put_varint(&mut body, self.members.len() as u64);
        w.put(&[TAG_END])?;
        w.put_varint(body.len() as u64)?;
        w.put(&body)?;
        let checksum = w.crc;
        w.inner.write_all(&checksum.to_le_bytes())?;
        w.inner.flush()?;
        Ok(SnapshotInfo {
            group: self.group,
            index: self.applied_index,
            term: self.applied_term,
            pairs: self.map.len() as u64,
            sessions: self.sessions.len() as u64,
            bytes: w.bytes + 4,
            checksum,
        })
    }

    /// Replaces the whole state with a snapshot's. The reader must end where
    /// the snapshot ends. On any error the state machine is left untouched.
    pub fn restore_snapshot<R: Read>(&mut self, reader: R) -> Result<SnapshotInfo, SnapshotError> {
        let restored = read_snapshot(self.group, reader)?;
        self.map = restored.map;
        self.sessions = restored.sessions;
        self.applied_index = restored.info.index;
        self.applied_term = restored.info.term;
        self.clock_ms = restored.clock_ms;
        self.data_digest = restored.data_digest;
        self.data_bytes = restored.data_bytes;
        self.members = restored.members;
        Ok(restored.info)
    }
}

struct Restored {
    info: SnapshotInfo,
    clock_ms: u64,
    map: BTreeMap<Bytes, Bytes>,
    sessions: Sessions,
    data_digest: u64,
    data_bytes: u64,
    members: BTreeMap<u64, MemberRecord>,
}

/// A reader that checksums and counts what it consumes.
struct CrcReader<R: Read> {
    inner: BufReader<R>,
    crc: u32,
    offset: u64,
}

impl<R: Read> CrcReader<R> {
    fn fill(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), SnapshotError> {
        self.fill_raw(buf, what)?;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        Ok(())
    }

    fn fill_raw(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), SnapshotError> {
        let mut done = 0;
        while done < buf.len() {
            match self.inner.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(SnapshotError::Truncated {
                        offset: self.offset + done as u64,
                        what,
                    });
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(SnapshotError::Io {
                        offset: self.offset + done as u64,
                        source,
                    });
                }
            }
        }
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// The next `len` bytes. The buffer grows with the bytes actually read,
    /// so a corrupt length costs at most what the stream really holds.
    fn body(&mut self, len: usize, what: &'static str) -> Result<Bytes, SnapshotError> {
        let mut body = Vec::with_capacity(len.min(64 * 1024));
        let got = (&mut self.inner)
            .take(len as u64)
            .read_to_end(&mut body)
            .map_err(|source| SnapshotError::Io {
                offset: self.offset + body.len() as u64,
                source,
            })?;
        if got < len {
            return Err(SnapshotError::Truncated {
                offset: self.offset + got as u64,
                what,
            });
        }
        self.crc = crc32c::crc32c_append(self.crc, &body);
        self.offset += len as u64;
        Ok(Bytes::from(body))
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, SnapshotError> {
        let mut b = [0u8; 1];
        self.fill(&mut b, what)?;
        Ok(b[0])
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, SnapshotError> {
        let mut b = [0u8; 8];
        self.fill(&mut b, what)?;
        Ok(u64::from_le_bytes(b))
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, SnapshotError> {
        let start = self.offset;
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8(what)?;
            if i == 9 && b > 1 {
                break;
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt(
            start,
            format!("the {what} varint overflows 64 bits"),
        ))
    }

    /// Fails unless the stream has ended.
    fn expect_end(&mut self) -> Result<(), SnapshotError> {
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    return Err(corrupt(
                        self.offset,
                        "bytes follow the trailer; the snapshot must end there".into(),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(SnapshotError::Io {
                        offset: self.offset,
                        source,
                    });
                }
            }
        }
    }
}

fn corrupt(offset: u64, problem: String) -> SnapshotError {
    SnapshotError::Corrupt { offset, problem }
}

fn decode_error(record_offset: u64, e: DecodeError) -> SnapshotError {
    corrupt(record_offset, format!("bad record: {e}"))
}

fn read_snapshot<R: Read>(group: GroupId, reader: R) -> Result<Restored, SnapshotError> {
    let mut r = CrcReader {
        inner: BufReader::with_capacity(64 * 1024, reader),
        crc: 0,
        offset: 0,
    };
    let mut magic = [0u8; 8];
    r.fill(&mut magic, "header")?;
    if magic != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic { found: magic });
    }
    let version = r.u8("header")?;
    if !(OLDEST_SNAPSHOT_VERSION..=SNAPSHOT_VERSION).contains(&version) {
        return Err(SnapshotError::UnsupportedVersion {
            found: version,
            supported: SNAPSHOT_VERSION,
        });
    }
    let found = GroupId(r.u64("header")?);
    if found != group {
        return Err(SnapshotError::GroupMismatch {
            expected: group,
            found,
        });
    }
    let index = LogIndex(r.u64("header")?);
    let term = Term(r.u64("header")?);
    let clock_ms = r.u64("header")?;
    debug_assert_eq!(r.offset, HEADER_BYTES as u64);

    let mut map: BTreeMap<Bytes, Bytes> = BTreeMap::new();
    let mut sessions = Sessions::default();
    let mut last_client: Option<ClientId> = None;
    let mut members: BTreeMap<u64, MemberRecord> = BTreeMap::new();
    let (mut data_digest, mut data_bytes) = (0u64, 0u64);
    loop {
        let record_offset = r.offset;
        let tag = r.u8("record tag")?;
        let len = r.varint("record length")?;
        if len > MAX_RECORD_BYTES as u64 {
            return Err(corrupt(
                record_offset,
                format!("a record claims {len} bytes, more than the limit of {MAX_RECORD_BYTES}"),
            ));
        }
        let body = r.body(len as usize, "record")?;
        let mut b = Reader::new(&body);
        match tag {
            TAG_PAIR => {
                if !sessions.is_empty() || !members.is_empty() {
                    return Err(corrupt(record_offset, "a pair follows the sessions".into()));
                }
                let key = b.bytes("key").map_err(|e| decode_error(record_offset, e))?;
                let value = b
                    .bytes("value")
                    .map_err(|e| decode_error(record_offset, e))?;
                b.finish().map_err(|e| decode_error(record_offset, e))?;
                limits::validate_key(&key)
                    .and_then(|()| limits::validate_value(&value))
                    .map_err(|e| corrupt(record_offset, e.to_string()))?;
                if map.last_key_value().is_some_and(|(last, _)| *last >= key) {
                    return Err(corrupt(
                        record_offset,
                        "keys are not in strictly increasing order".into(),
                    ));
                }
                data_digest = data_digest.wrapping_add(entry_hash(&key, &value));
                data_bytes += (key.len() + value.len()) as u64;
                map.insert(key, value);
            }
            TAG_SESSION => {
                let session = (|| {
                    let client = b.varint("client id")?;
                    let seq = b.varint("sequence number")?;
                    let last_active_ms = b.varint("last active time")?;
                    let result = command::decode_cached(&mut b)?;
                    b.finish()?;
                    Ok((client, seq, last_active_ms, result))
                })();
                let (client, seq, last_active_ms, result) =
                    session.map_err(|e| decode_error(record_offset, e))?;
                if !members.is_empty() {
                    return Err(corrupt(
                        record_offset,
                        "a session follows the members".into(),
                    ));
                }
                let Some(client) = ClientId::new(client) else {
                    return Err(corrupt(record_offset, "a session has client id 0".into()));
                };
                if last_client.is_some_and(|last| last >= client) {
                    return Err(corrupt(
                        record_offset,
                        "sessions are not in strictly increasing client order".into(),
                    ));
                }
                last_client = Some(client);
                sessions.put(
                    client,
                    Session {
                        seq,
                        last_active_ms,
                        result,
                    },
                );
            }
            TAG_MEMBER if version >= 2 => {
                let member = (|| {
                    let id = b.varint("member id")?;
                    let name = b.bytes("member name")?;
                    let address = b.bytes("member address")?;
                    let incarnation = b.varint("member incarnation")?;
                    b.finish()?;
                    Ok((id, name, address, incarnation))
                })();
                let (id, name, address, incarnation) =
                    member.map_err(|e| decode_error(record_offset, e))?;
                if members
                    .last_key_value()
                    .is_some_and(|(last, _)| *last >= id)
                {
                    return Err(corrupt(
                        record_offset,
                        "members are not in strictly increasing id order".into(),
                    ));
                }
                members.insert(
                    id,
                    MemberRecord {
                        name,
                        address,
                        incarnation,
                    },
                );
            }
            TAG_END => {
                let counts = (|| {
                    let pairs = b.varint("pair count")?;
                    let sessions = b.varint("session count")?;
                    let members = if version >= 2 {
                        b.varint("member count")?
                    } else {
                        0
                    };
                    b.finish()?;
                    Ok((pairs, sessions, members))
                })();
                let (pairs, session_count, member_count) =
                    counts.map_err(|e| decode_error(record_offset, e))?;
                if pairs != map.len() as u64
                    || session_count != sessions.len() as u64
                    || member_count != members.len() as u64
                {
                    return Err(corrupt(
                        record_offset,
                        format!(
                            "the end record counts {pairs} pairs, {session_count} sessions and \
                             {member_count} members, but the snapshot holds {}, {} and {}",
                            map.len(),
                            sessions.len(),
                            members.len()
                        ),
                    ));
                }
                break;
            }
            tag => {
                return Err(corrupt(record_offset, format!("unknown record tag {tag}")));
            }
        }
    }
    let computed = r.crc;
    let mut trailer = [0u8; 4];
    r.fill_raw(&mut trailer, "checksum trailer")?;
    let stored = u32::from_le_bytes(trailer);
    if stored != computed {
        return Err(SnapshotError::ChecksumMismatch { stored, computed });
    }
    r.expect_end()?;
    Ok(Restored {
        info: SnapshotInfo {
            group,
            index,
            term,
            pairs: map.len() as u64,
            sessions: sessions.len() as u64,
            bytes: r.offset,
            checksum: stored,
        },
        clock_ms,
        map,
        sessions,
        data_digest,
        data_bytes,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzzing regression (`fuzz/regressions/kv_snapshot/record-length-believed`):
    /// a record claiming the largest body in a snapshot that ends after a
    /// few bytes used to allocate the whole claimed body before reading.
    /// Now the body grows with the bytes read and the snapshot is truncated
    /// where the bytes end.
    #[test]
    fn a_record_length_is_not_believed_before_its_bytes_arrive() {
        let mut r = CrcReader {
            inner: BufReader::new(&b"abc"[..]),
            crc: 0,
            offset: 0,
        };
        match r.body(MAX_RECORD_BYTES, "record") {
            Err(SnapshotError::Truncated { offset: 3, what }) => assert_eq!(what, "record"),
            other => panic!("expected a truncation at byte 3, got {other:?}"),
        }
        let mut whole = CrcReader {
            inner: BufReader::new(&b"abcdef"[..]),
            crc: 0,
            offset: 0,
        };
        assert_eq!(whole.body(4, "record").expect("present"), &b"abcd"[..]);
        assert_eq!((whole.offset, whole.crc), (4, crc32c::crc32c(b"abcd")));
    }
}
