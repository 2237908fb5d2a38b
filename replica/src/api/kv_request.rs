//! What a client's request becomes before it reaches the node: the checked
//! operation and session of the command to propose. Pure functions of the
//! request, so that the fuzz target `client_request` runs exactly what the
//! service runs.
//!
//! Everything refused here is `InvalidArgument`: the request is wrong and a
//! retry cannot help. What passes is within the limits that applying the
//! command checks again, so a request accepted here never fails on apply
//! for its size.

use crate::kv::{self, ClientId, Op, SessionRef};
use kuberaft_proto::kv as pb;
use tonic::Status;

fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

/// The session a write header names, if any.
pub fn session(header: Option<pb::WriteHeader>) -> Result<Option<SessionRef>, Status> {
    let Some(h) = header else {
        return Ok(None);
    };
    let Some(client) = ClientId::new(h.client_id) else {
        return Ok(None);
    };
    if h.seq == 0 {
        return Err(Status::invalid_argument(
            "write header: seq must start at 1 for a client id (client_id 0 opts out of sessions)",
        ));
    }
    Ok(Some(SessionRef { client, seq: h.seq }))
}

pub fn put_op(req: &pb::PutRequest) -> Result<Op, Status> {
    kv::validate_key(&req.key).map_err(invalid)?;
    kv::validate_value(&req.value).map_err(invalid)?;
    Ok(Op::Put {
        key: req.key.clone(),
        value: req.value.clone(),
    })
}

pub fn delete_op(req: &pb::DeleteRequest) -> Result<Op, Status> {
    kv::validate_key(&req.key).map_err(invalid)?;
    Ok(Op::Delete {
        key: req.key.clone(),
    })
}

pub fn compare_and_swap_op(req: &pb::CompareAndSwapRequest) -> Result<Op, Status> {
    kv::validate_key(&req.key).map_err(invalid)?;
    kv::validate_value(&req.value).map_err(invalid)?;
    if let Some(expected) = &req.expected {
        kv::validate_value(expected).map_err(invalid)?;
    }
    Ok(Op::CompareAndSwap {
        key: req.key.clone(),
        expected: req.expected.clone(),
        new: Some(req.value.clone()),
    })
}

/// Checks the key of a point read.
pub fn check_get(req: &pb::GetRequest) -> Result<(), Status> {
    kv::validate_key(&req.key).map_err(invalid)
}
