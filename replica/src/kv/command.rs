//! Commands as they travel in the log, and the results of applying them.
//!
//! # Encoding (version 1)
//!
//! A command is the opaque `Payload::Command` of a log entry. It is encoded
//! by hand rather than with protobuf: the format is four fixed fields and
//! three operations, the decoder must bound every length against the bytes
//! actually present and refuse trailing garbage (strictness that protobuf's
//! skip-unknown-fields rules would undo), and the same primitives frame the
//! snapshot records. Evolution goes through the leading version byte: a
//! replica refuses a version it does not know, deterministically, as an
//! error result (so replicas never diverge; upgrade every replica before
//! proposing a new version).
//!
//! ```text
//! u8      version (1)
//! u8      operation: 1 put, 2 delete, 3 compare-and-swap
//! varint  client id (0: no session)
//! varint  sequence number within the session (0 without a session)
//! varint  proposal time: the leader's wall clock, ms since the Unix epoch
//! bytes   key                      (bytes = varint length, then the bytes)
//! put:    bytes value
//! cas:    opt   expected value     (opt = u8 0 | u8 1 then bytes)
//!         opt   new value          (absent: delete the key on success)
//! ```
//!
//! Two operations maintain the cluster's member directory (where each
//! replica can be reached), in group 0 only; they carry a member id where
//! the others carry a key:
//!
//! ```text
//! u8 version, u8 operation (4 set member, 5 remove member), varint client,
//! varint seq, varint proposal time, then
//! varint  member id
//! set:    bytes name, bytes address (host:port), varint incarnation
//! ```

use super::codec::{self, DecodeError, Reader};
use super::limits::{self, LimitError};
use super::placement::group_for_key;
use crate::raft::GroupId;
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;
use std::num::NonZeroU64;
use thiserror::Error;

/// The command encoding this replica writes and reads.
pub const COMMAND_VERSION: u8 = 1;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_CAS: u8 = 3;
const OP_SET_MEMBER: u8 = 4;
const OP_REMOVE_MEMBER: u8 = 5;

/// A client session: chosen by the client (at random, 64 bits), never 0.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(NonZeroU64);

impl ClientId {
    /// `None` for 0, which on the wire means "no session".
    pub fn new(id: u64) -> Option<ClientId> {
        NonZeroU64::new(id).map(ClientId)
    }

    pub fn get(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{:016x}", self.0)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Who sent a command, for exactly-once application.
///
/// A client numbers its commands 1, 2, 3, ... and sends the next one only
/// after the previous one was answered (it may retry the same one as often as
/// it likes).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct SessionRef {
    pub client: ClientId,
    pub seq: u64,
}

/// A change to the map.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Op {
    Put {
        key: Bytes,
        value: Bytes,
    },
    Delete {
        key: Bytes,
    },
    /// Writes `new` (or deletes the key when `new` is `None`) if the current
    /// value equals `expected` (`None`: the key must be absent).
    CompareAndSwap {
        key: Bytes,
        expected: Option<Bytes>,
        new: Option<Bytes>,
    },
    /// Records where member `id` of the cluster can be reached (group 0),
    /// and which incarnation of its data directory was admitted.
    SetMember {
        id: u64,
        name: Bytes,
        address: Bytes,
        incarnation: u64,
    },
    /// Forgets member `id` (group 0).
    RemoveMember {
        id: u64,
    },
}

/// The group that holds the cluster's member directory.
pub const MEMBERS_GROUP: GroupId = GroupId(0);

impl Op {
    /// The key a key-value operation works on; `None` for member operations.
    pub fn key(&self) -> Option<&Bytes> {
        match self {
            Op::Put { key, .. } | Op::Delete { key } | Op::CompareAndSwap { key, .. } => Some(key),
            Op::SetMember { .. } | Op::RemoveMember { .. } => None,
        }
    }

    /// The group (of `groups`) that must apply this operation.
    pub fn group(&self, groups: u32) -> GroupId {
        match self.key() {
            Some(key) => group_for_key(key, groups),
            None => MEMBERS_GROUP,
        }
    }

    /// Checks the key and every value against the size limits: what the API
    /// layer calls before proposing, and what apply checks again.
    pub fn validate(&self) -> Result<(), LimitError> {
        match self {
            Op::Put { key, value } => {
                limits::validate_key(key)?;
                limits::validate_value(value)
            }
            Op::Delete { key } => limits::validate_key(key),
            Op::CompareAndSwap { key, expected, new } => {
                limits::validate_key(key)?;
                if let Some(v) = expected {
                    limits::validate_value(v)?;
                }
                new.as_ref().map_or(Ok(()), |v| limits::validate_value(v))
            }
            Op::SetMember { name, address, .. } => {
                // A member's name and address are keys of the directory in
                // all but name: the key limit bounds them.
                limits::validate_key(name)?;
                limits::validate_key(address)
            }
            Op::RemoveMember { .. } => Ok(()),
        }
    }
}

/// A command as proposed by the leader.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Command {
    /// `None`: applied every time it appears in the log (at-least-once when
    /// the client retries).
    pub session: Option<SessionRef>,
    /// The leader's wall clock when it proposed the command, in milliseconds
    /// since the Unix epoch. The state machine's notion of time (for session
    /// expiry) is the largest of these it has applied, never a local clock.
    pub proposed_at_ms: u64,
    pub op: Op,
}

impl Command {
    /// The exact size of [`encode`](Command::encode)'s output.
    pub fn encoded_len(&self) -> usize {
        let (client, seq) = self.wire_session();
        let bytes = |b: &Bytes| codec::varint_len(b.len() as u64) + b.len();
        let body = match &self.op {
            Op::Put { key, value } => bytes(key) + bytes(value),
            Op::Delete { key } => bytes(key),
            Op::CompareAndSwap { key, expected, new } => {
                bytes(key)
                    + codec::opt_bytes_len(expected.as_deref())
                    + codec::opt_bytes_len(new.as_deref())
            }
            Op::SetMember {
                id,
                name,
                address,
                incarnation,
            } => {
                codec::varint_len(*id)
                    + bytes(name)
                    + bytes(address)
                    + codec::varint_len(*incarnation)
            }
            Op::RemoveMember { id } => codec::varint_len(*id),
        };
        2 + codec::varint_len(client)
            + codec::varint_len(seq)
            + codec::varint_len(self.proposed_at_ms)
            + body
    }

    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        let (client, seq) = self.wire_session();
        buf.put_u8(COMMAND_VERSION);
        buf.put_u8(match self.op {
            Op::Put { .. } => OP_PUT,
            Op::Delete { .. } => OP_DELETE,
            Op::CompareAndSwap { .. } => OP_CAS,
            Op::SetMember { .. } => OP_SET_MEMBER,
            Op::RemoveMember { .. } => OP_REMOVE_MEMBER,
        });
        codec::put_varint(&mut buf, client);
        codec::put_varint(&mut buf, seq);
        codec::put_varint(&mut buf, self.proposed_at_ms);
        match &self.op {
            Op::Put { key, value } => {
                codec::put_bytes(&mut buf, key);
                codec::put_bytes(&mut buf, value);
            }
            Op::Delete { key } => codec::put_bytes(&mut buf, key),
            Op::CompareAndSwap { key, expected, new } => {
                codec::put_bytes(&mut buf, key);
                codec::put_opt_bytes(&mut buf, expected.as_deref());
                codec::put_opt_bytes(&mut buf, new.as_deref());
            }
            Op::SetMember {
                id,
                name,
                address,
                incarnation,
            } => {
                codec::put_varint(&mut buf, *id);
                codec::put_bytes(&mut buf, name);
                codec::put_bytes(&mut buf, address);
                codec::put_varint(&mut buf, *incarnation);
            }
            Op::RemoveMember { id } => codec::put_varint(&mut buf, *id),
        }
        buf.freeze()
    }

    /// Decodes untrusted bytes. Keys and values are slices of `buf` (no
    /// copy); nothing is allocated on the strength of a declared length.
    /// Size limits are not checked here but on apply.
    pub fn decode(buf: &Bytes) -> Result<Command, DecodeError> {
        let mut r = Reader::new(buf);
        let version = r.u8("version")?;
        if version != COMMAND_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: version,
                supported: COMMAND_VERSION,
            });
        }
        let op_offset = r.offset();
        let op = r.u8("operation")?;
        let session_offset = r.offset();
        let client = r.varint("client id")?;
        let seq = r.varint("sequence number")?;
        let session = match ClientId::new(client) {
            Some(client) => Some(SessionRef { client, seq }),
            None if seq == 0 => None,
            None => {
                return Err(DecodeError::Invalid {
                    what: "session",
                    offset: session_offset,
                    problem: "a command without a client id must have sequence number 0",
                });
            }
        };
        let proposed_at_ms = r.varint("proposal time")?;
        let op = match op {
            OP_PUT => Op::Put {
                key: r.bytes("key")?,
                value: r.bytes("value")?,
            },
            OP_DELETE => Op::Delete {
                key: r.bytes("key")?,
            },
            OP_CAS => Op::CompareAndSwap {
                key: r.bytes("key")?,
                expected: r.opt_bytes("expected value")?,
                new: r.opt_bytes("new value")?,
            },
            OP_SET_MEMBER => Op::SetMember {
                id: r.varint("member id")?,
                name: r.bytes("member name")?,
                address: r.bytes("member address")?,
                incarnation: r.varint("member incarnation")?,
            },
            OP_REMOVE_MEMBER => Op::RemoveMember {
                id: r.varint("member id")?,
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "operation",
                    tag,
                    offset: op_offset,
                });
            }
        };
        r.finish()?;
        Ok(Command {
            session,
            proposed_at_ms,
            op,
        })
    }

    fn wire_session(&self) -> (u64, u64) {
        self.session.map_or((0, 0), |s| (s.client.get(), s.seq))
    }
}

/// What a successfully applied command answers.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Response {
    Put,
    Delete {
        /// Whether the key was present.
        existed: bool,
    },
    CompareAndSwap {
        swapped: bool,
        /// The key's value after the command (the new value if swapped, the
        /// unchanged value otherwise; `None` if absent).
        current: Option<Bytes>,
    },
}

/// Why a command had no effect. Every variant is deterministic: it depends
/// only on the command and the replicated state, so every replica reaches the
/// same verdict.
#[derive(Clone, PartialEq, Eq, Debug, Error)]
pub enum CommandError {
    /// The entry's bytes are not a command this replica can decode.
    #[error("malformed command: {0}")]
    Malformed(#[from] DecodeError),
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A retry of a command older than the last one the session applied:
    /// its response is no longer known.
    #[error(
        "stale request: client {client} sent sequence number {seq}, but {latest} was already applied; \
         a client must not reuse an older sequence number"
    )]
    StaleRequest {
        client: ClientId,
        seq: u64,
        latest: u64,
    },
    /// A command of a session the state machine does not know (never opened,
    /// or expired): whether its earlier commands were applied is unknown.
    #[error(
        "unknown session: client {client} sent sequence number {seq} but has no session \
         (it expired or never existed); sessions start at sequence number 1, start a new \
         session with a new client id"
    )]
    UnknownSession { client: ClientId, seq: u64 },
}

/// The result of applying a command.
pub type CommandResult = Result<Response, CommandError>;

/// A result a session remembers for retries: only outcomes of applying the
/// command are cached (limit errors included); session errors never are.
pub(crate) type CachedResult = Result<Response, LimitError>;

const RES_PUT: u8 = 0;
const RES_DELETE: u8 = 1;
const RES_CAS: u8 = 2;
const RES_EMPTY_KEY: u8 = 16;
const RES_KEY_TOO_LARGE: u8 = 17;
const RES_VALUE_TOO_LARGE: u8 = 18;

pub(crate) fn encode_cached(buf: &mut impl BufMut, result: &CachedResult) {
    match result {
        Ok(Response::Put) => buf.put_u8(RES_PUT),
        Ok(Response::Delete { existed }) => {
            buf.put_u8(RES_DELETE);
            buf.put_u8(u8::from(*existed));
        }
        Ok(Response::CompareAndSwap { swapped, current }) => {
            buf.put_u8(RES_CAS);
            buf.put_u8(u8::from(*swapped));
            codec::put_opt_bytes(buf, current.as_deref());
        }
        Err(LimitError::EmptyKey) => buf.put_u8(RES_EMPTY_KEY),
        Err(LimitError::KeyTooLarge { len, max }) => {
            buf.put_u8(RES_KEY_TOO_LARGE);
            codec::put_varint(buf, *len as u64);
            codec::put_varint(buf, *max as u64);
        }
        Err(LimitError::ValueTooLarge { len, max }) => {
            buf.put_u8(RES_VALUE_TOO_LARGE);
            codec::put_varint(buf, *len as u64);
            codec::put_varint(buf, *max as u64);
        }
    }
}

pub(crate) fn decode_cached(r: &mut Reader<'_>) -> Result<CachedResult, DecodeError> {
    let offset = r.offset();
    let size = |r: &mut Reader<'_>, what| -> Result<usize, DecodeError> {
        let offset = r.offset();
        usize::try_from(r.varint(what)?).map_err(|_| DecodeError::Invalid {
            what,
            offset,
            problem: "size does not fit this platform",
        })
    };
    Ok(match r.u8("response")? {
        RES_PUT => Ok(Response::Put),
        RES_DELETE => Ok(Response::Delete {
            existed: r.bool("existed")?,
        }),
        RES_CAS => Ok(Response::CompareAndSwap {
            swapped: r.bool("swapped")?,
            current: r.opt_bytes("current value")?,
        }),
        RES_EMPTY_KEY => Err(LimitError::EmptyKey),
        RES_KEY_TOO_LARGE => Err(LimitError::KeyTooLarge {
            len: size(r, "key length")?,
            max: size(r, "key limit")?,
        }),
        RES_VALUE_TOO_LARGE => Err(LimitError::ValueTooLarge {
            len: size(r, "value length")?,
            max: size(r, "value limit")?,
        }),
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "response",
                tag,
                offset,
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cas() -> Command {
        Command {
            session: Some(SessionRef {
                client: ClientId::new(0xfeed).unwrap(),
                seq: 7,
            }),
            proposed_at_ms: 1_700_000_000_000,
            op: Op::CompareAndSwap {
                key: Bytes::from_static(b"k"),
                expected: None,
                new: Some(Bytes::from_static(b"v")),
            },
        }
    }

    #[test]
    fn encoding_is_pinned() {
        // A change to these bytes breaks every log written by an older
        // replica: bump COMMAND_VERSION instead.
        let put = Command {
            session: None,
            proposed_at_ms: 300,
            op: Op::Put {
                key: Bytes::from_static(b"ab"),
                value: Bytes::from_static(b"xyz"),
            },
        };
        assert_eq!(
            put.encode().as_ref(),
            &[1, 1, 0, 0, 0xac, 0x02, 2, b'a', b'b', 3, b'x', b'y', b'z']
        );
    }

    #[test]
    fn every_operation_round_trips() {
        let put = Command {
            session: None,
            proposed_at_ms: 0,
            op: Op::Put {
                key: Bytes::from_static(b"k"),
                value: Bytes::new(),
            },
        };
        let delete = Command {
            op: Op::Delete {
                key: Bytes::from_static(b"k"),
            },
            ..cas()
        };
        let set_member = Command {
            session: None,
            proposed_at_ms: 5,
            op: Op::SetMember {
                id: 4,
                name: Bytes::from_static(b"delta"),
                address: Bytes::from_static(b"127.0.0.4:3264"),
                incarnation: 0x1234_5678_9abc_def1,
            },
        };
        let remove_member = Command {
            session: None,
            proposed_at_ms: 6,
            op: Op::RemoveMember { id: 4 },
        };
        for c in [put, delete, cas(), set_member, remove_member] {
            let bytes = c.encode();
            assert_eq!(bytes.len(), c.encoded_len());
            assert_eq!(Command::decode(&bytes), Ok(c));
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = cas().encode();
        for len in 0..bytes.len() {
            assert!(
                Command::decode(&bytes.slice(..len)).is_err(),
                "prefix of {len}"
            );
        }
    }

    #[test]
    fn unknown_versions_operations_and_trailing_bytes_are_rejected() {
        let mut v2 = cas().encode().to_vec();
        v2[0] = 2;
        assert_eq!(
            Command::decode(&Bytes::from(v2)),
            Err(DecodeError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        );
        let mut op9 = cas().encode().to_vec();
        op9[1] = 9;
        assert!(matches!(
            Command::decode(&Bytes::from(op9)),
            Err(DecodeError::UnknownTag { tag: 9, .. })
        ));
        let mut trailing = cas().encode().to_vec();
        trailing.push(0);
        assert!(matches!(
            Command::decode(&Bytes::from(trailing)),
            Err(DecodeError::TrailingBytes { len: 1, .. })
        ));
    }

    #[test]
    fn cached_results_round_trip() {
        let results: Vec<CachedResult> = vec![
            Ok(Response::Put),
            Ok(Response::Delete { existed: true }),
            Ok(Response::CompareAndSwap {
                swapped: false,
                current: Some(Bytes::from_static(b"cur")),
            }),
            Ok(Response::CompareAndSwap {
                swapped: true,
                current: None,
            }),
            Err(LimitError::EmptyKey),
            Err(LimitError::KeyTooLarge {
                len: 5000,
                max: 4096,
            }),
            Err(LimitError::ValueTooLarge {
                len: 1 << 21,
                max: 1 << 20,
            }),
        ];
        for result in results {
            let mut buf = Vec::new();
            encode_cached(&mut buf, &result);
            let bytes = Bytes::from(buf);
            let mut r = Reader::new(&bytes);
            assert_eq!(decode_cached(&mut r), Ok(result));
            assert!(r.finish().is_ok());
        }
    }
}
