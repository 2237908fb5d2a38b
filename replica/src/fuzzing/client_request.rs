//! Fuzz target `client_request`: a client's request protobuf, checked as
//! the client service checks it, turned into the command it proposes, and
//! applied.
//!
//! Input: a byte choosing the method (`% 4`: put, delete, compare-and-swap,
//! get), then the protobuf bytes of its request.
//!
//! Checked, whatever the bytes: the request is refused with
//! `InvalidArgument` or becomes a command whose encoding decodes to the
//! same command; a request the service accepts never fails on apply for
//! its size or its encoding (the service and the state machine agree on
//! the limits).

use super::{split_mode, with_mode};
use crate::api::kv_request;
use crate::kv::{Command, CommandError, KvStateMachine, SessionPolicy};
use crate::raft::{Entry, GroupId, LogIndex, Payload, Term};
use kuberaft_proto::kv as pb;
use prost::Message as _;

pub fn run(data: &[u8]) {
    let Some((method, body)) = split_mode(data) else {
        return;
    };
    let (op, header) = match method % 4 {
        0 => match pb::PutRequest::decode(body) {
            Ok(req) => (kv_request::put_op(&req), req.header),
            Err(_) => return,
        },
        1 => match pb::DeleteRequest::decode(body) {
            Ok(req) => (kv_request::delete_op(&req), req.header),
            Err(_) => return,
        },
        2 => match pb::CompareAndSwapRequest::decode(body) {
            Ok(req) => (kv_request::compare_and_swap_op(&req), req.header),
            Err(_) => return,
        },
        _ => {
            if let Ok(req) = pb::GetRequest::decode(body)
                && kv_request::check_get(&req).is_ok()
            {
                let machine = KvStateMachine::new(GroupId(0), SessionPolicy::default());
                assert!(machine.get(&req.key).is_none());
            }
            return;
        }
    };
    let (op, session) = match (op, kv_request::session(header)) {
        (Ok(op), Ok(session)) => (op, session),
        (Err(status), _) | (_, Err(status)) => {
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
            return;
        }
    };
    let command = Command {
        session,
        proposed_at_ms: 1_764_000_000_000,
        op,
    };
    let bytes = command.encode();
    assert_eq!(Command::decode(&bytes).as_ref(), Ok(&command));
    let mut machine = KvStateMachine::new(GroupId(0), SessionPolicy::default());
    let applied = machine
        .apply(&Entry {
            term: Term(1),
            index: LogIndex(1),
            payload: Payload::Command(bytes),
        })
        .expect("in order");
    if let crate::kv::Applied::Command(Err(
        e @ (CommandError::Limit(_) | CommandError::Malformed(_)),
    )) = applied
    {
        panic!("a request the service accepted failed on apply: {e}");
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    use bytes::Bytes;
    let header = Some(pb::WriteHeader {
        client_id: 42,
        seq: 1,
    });
    let key = Bytes::from_static(b"user/1");
    let value = Bytes::from_static(b"{\"name\":\"ada\"}");
    vec![
        with_mode(
            0,
            &pb::PutRequest {
                key: key.clone(),
                value: value.clone(),
                header,
            }
            .encode_to_vec(),
        ),
        with_mode(
            1,
            &pb::DeleteRequest {
                key: key.clone(),
                header: None,
            }
            .encode_to_vec(),
        ),
        with_mode(
            2,
            &pb::CompareAndSwapRequest {
                key: key.clone(),
                expected: Some(value.clone()),
                value,
                header,
            }
            .encode_to_vec(),
        ),
        with_mode(
            3,
            &pb::GetRequest {
                key,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
    ]
}
