//! Fuzz target `kv_command`: the payload of a committed log entry, decoded
//! and applied by a group's key-value state machine.
//!
//! Input: the entry's command bytes, as a leader (or a hostile peer) put
//! them in the log.
//!
//! Checked, whatever the bytes:
//! - decoding fails or yields the one command whose encoding is exactly
//!   these bytes (one command, one encoding, so replicas cannot disagree on
//!   what an entry means);
//! - applying never panics; an undecodable command changes no data;
//! - a retry of a command of a session (the same entry again) gets the
//!   first answer again and changes nothing (exactly-once).

use crate::kv::{ClientId, Command, KvStateMachine, Op, SessionPolicy, SessionRef};
use crate::raft::{Entry, GroupId, LogIndex, Payload, Term};
use bytes::Bytes;

fn entry(index: u64, bytes: &Bytes) -> Entry {
    Entry {
        term: Term(1),
        index: LogIndex(index),
        payload: Payload::Command(bytes.clone()),
    }
}

pub fn run(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let decoded = Command::decode(&bytes);
    if let Ok(command) = &decoded {
        assert_eq!(
            command.encode(),
            bytes,
            "decoding and encoding again changed the bytes"
        );
        assert_eq!(command.encoded_len(), data.len());
    }
    let mut machine = KvStateMachine::new(GroupId(0), SessionPolicy::default());
    let before = machine.digest();
    let first = machine.apply(&entry(1, &bytes)).expect("in order");
    let after_first = machine.digest();
    if decoded.is_err() {
        assert_eq!(
            (after_first.keys, after_first.data, after_first.sessions),
            (before.keys, before.data, before.sessions),
            "an undecodable command changed the state"
        );
    }
    if decoded.is_ok_and(|c| c.session.is_some()) {
        let second = machine.apply(&entry(2, &bytes)).expect("in order");
        assert_eq!(second, first, "a retry got another answer");
        let after_second = machine.digest();
        assert_eq!(
            (after_second.keys, after_second.data),
            (after_first.keys, after_first.data),
            "a retry changed the data"
        );
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    let key = Bytes::from_static(b"key");
    let value = Bytes::from_static(b"value");
    let session = Some(SessionRef {
        client: ClientId::new(0x1234_5678_9abc).expect("non-zero"),
        seq: 1,
    });
    let ops = [
        Op::Put {
            key: key.clone(),
            value: value.clone(),
        },
        Op::Delete { key: key.clone() },
        Op::CompareAndSwap {
            key: key.clone(),
            expected: None,
            new: Some(value.clone()),
        },
        Op::CompareAndSwap {
            key,
            expected: Some(value),
            new: None,
        },
        Op::SetMember {
            id: 3,
            name: Bytes::from_static(b"charlie"),
            address: Bytes::from_static(b"10.0.0.3:3266"),
            incarnation: 0xfeed,
        },
        Op::RemoveMember { id: 3 },
    ];
    let mut out = Vec::new();
    for op in ops {
        for session in [None, session] {
            out.push(
                Command {
                    session,
                    proposed_at_ms: 1_764_000_000_000,
                    op: op.clone(),
                }
                .encode()
                .to_vec(),
            );
        }
    }
    out
}
