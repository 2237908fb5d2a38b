//! Conversion between the core's messages and the wire types of
//! `raft.proto`.
//!
//! This is where bytes from the network become Raft input, so decoding is
//! strict: a missing `oneof`, an unknown enum value or a zero node id is an
//! error naming what was wrong, never a default that the core would act on.

use crate::raft::{
    ConfChange, ConfChangeKind, ConfChangeSingle, ConfChangeTransition, ConfState, Entry, GroupId,
    LogIndex, Message, MessageBody, NodeId, Payload, RejectHint, SnapshotMeta, Term,
};
use kuberaft_proto::raft as pb;
use pb::group_message::Body;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message of group {group} has no body")]
    MissingBody { group: u64 },
    #[error("entry {index} has no payload")]
    MissingPayload { index: u64 },
    #[error("unknown membership change {what} {value}")]
    UnknownEnum { what: &'static str, value: i32 },
    #[error("node id 0 in {0}: ids start at 1")]
    ZeroNode(&'static str),
    #[error("{what} {value} is larger than any term or index a node reaches (at most 2^62)")]
    Implausible { what: &'static str, value: u64 },
}

/// A term from the wire, refused above [`Term::MAX_VALID`] (so that the
/// core's `+ 1`s never overflow).
fn term(what: &'static str, value: u64) -> Result<Term, DecodeError> {
    if value > Term::MAX_VALID.0 {
        return Err(DecodeError::Implausible { what, value });
    }
    Ok(Term(value))
}

/// A log index from the wire, refused above [`LogIndex::MAX_VALID`].
fn index(what: &'static str, value: u64) -> Result<LogIndex, DecodeError> {
    if value > LogIndex::MAX_VALID.0 {
        return Err(DecodeError::Implausible { what, value });
    }
    Ok(LogIndex(value))
}

pub fn encode_message(group: GroupId, m: &Message) -> pb::GroupMessage {
    let body = match &m.body {
        MessageBody::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => Body::Append(pb::Append {
            prev_index: prev_index.0,
            prev_term: prev_term.0,
            entries: entries.iter().map(encode_entry).collect(),
            commit: commit.0,
        }),
        MessageBody::AppendResponse { index, reject } => Body::AppendResponse(pb::AppendResponse {
            index: index.0,
            reject: reject.map(|h| pb::RejectHint {
                index: h.index.0,
                term: h.term.0,
            }),
        }),
        MessageBody::Heartbeat { commit, read_round } => Body::Heartbeat(pb::Heartbeat {
            commit: commit.0,
            read_round: *read_round,
        }),
        MessageBody::HeartbeatResponse { read_round } => {
            Body::HeartbeatResponse(pb::HeartbeatResponse {
                read_round: *read_round,
            })
        }
        MessageBody::RequestVote {
            pre_vote,
            last_index,
            last_term,
            transfer,
        } => Body::RequestVote(pb::RequestVote {
            pre_vote: *pre_vote,
            last_index: last_index.0,
            last_term: last_term.0,
            transfer: *transfer,
        }),
        MessageBody::RequestVoteResponse { pre_vote, granted } => {
            Body::RequestVoteResponse(pb::RequestVoteResponse {
                pre_vote: *pre_vote,
                granted: *granted,
            })
        }
        MessageBody::InstallSnapshot { meta } => Body::InstallSnapshot(encode_snapshot_meta(meta)),
        MessageBody::TimeoutNow => Body::TimeoutNow(pb::TimeoutNow {}),
        MessageBody::ReadIndex { context } => Body::ReadIndex(pb::ReadIndex { context: *context }),
        MessageBody::ReadIndexResponse { context, index } => {
            Body::ReadIndexResponse(pb::ReadIndexResponse {
                context: *context,
                index: index.map(|i| i.0),
            })
        }
    };
    pb::GroupMessage {
        group: group.0,
        term: m.term.0,
        body: Some(body),
    }
}

/// Decodes one message of a batch sent by `from` to `to`.
pub fn decode_message(
    from: NodeId,
    to: NodeId,
    m: pb::GroupMessage,
) -> Result<(GroupId, Message), DecodeError> {
    let group = m.group;
    let body = match m.body.ok_or(DecodeError::MissingBody { group })? {
        Body::Append(a) => MessageBody::Append {
            prev_index: index("previous index", a.prev_index)?,
            prev_term: term("previous term", a.prev_term)?,
            entries: a
                .entries
                .into_iter()
                .map(decode_entry)
                .collect::<Result<_, _>>()?,
            commit: index("commit index", a.commit)?,
        },
        Body::AppendResponse(r) => MessageBody::AppendResponse {
            index: index("acknowledged index", r.index)?,
            reject: match r.reject {
                Some(h) => Some(RejectHint {
                    index: index("rejection hint index", h.index)?,
                    term: term("rejection hint term", h.term)?,
                }),
                None => None,
            },
        },
        Body::Heartbeat(h) => MessageBody::Heartbeat {
            commit: index("commit index", h.commit)?,
            read_round: h.read_round,
        },
        Body::HeartbeatResponse(h) => MessageBody::HeartbeatResponse {
            read_round: h.read_round,
        },
        Body::RequestVote(v) => MessageBody::RequestVote {
            pre_vote: v.pre_vote,
            last_index: index("candidate's last index", v.last_index)?,
            last_term: term("candidate's last term", v.last_term)?,
            transfer: v.transfer,
        },
        Body::RequestVoteResponse(v) => MessageBody::RequestVoteResponse {
            pre_vote: v.pre_vote,
            granted: v.granted,
        },
        Body::InstallSnapshot(meta) => MessageBody::InstallSnapshot {
            meta: decode_snapshot_meta(meta)?,
        },
        Body::TimeoutNow(_) => MessageBody::TimeoutNow,
        Body::ReadIndex(r) => MessageBody::ReadIndex { context: r.context },
        Body::ReadIndexResponse(r) => MessageBody::ReadIndexResponse {
            context: r.context,
            index: r.index.map(|i| index("read index", i)).transpose()?,
        },
    };
    Ok((
        GroupId(group),
        Message {
            from,
            to,
            term: term("message term", m.term)?,
            body,
        },
    ))
}

pub fn encode_entry(e: &Entry) -> pb::Entry {
    use pb::entry::Payload as P;
    let payload = match &e.payload {
        Payload::Empty => P::Empty(pb::Empty {}),
        Payload::Command(b) => P::Command(b.clone()),
        Payload::ConfChange(cc) => P::ConfChange(encode_conf_change(cc)),
    };
    pb::Entry {
        term: e.term.0,
        index: e.index.0,
        payload: Some(payload),
    }
}

pub fn decode_entry(e: pb::Entry) -> Result<Entry, DecodeError> {
    use pb::entry::Payload as P;
    let payload = match e
        .payload
        .ok_or(DecodeError::MissingPayload { index: e.index })?
    {
        P::Empty(_) => Payload::Empty,
        P::Command(b) => Payload::Command(b),
        P::ConfChange(cc) => Payload::ConfChange(decode_conf_change(cc)?),
    };
    Ok(Entry {
        term: term("entry term", e.term)?,
        index: index("entry index", e.index)?,
        payload,
    })
}

pub fn encode_conf_change(cc: &ConfChange) -> pb::ConfChange {
    use pb::conf_change::{Kind, Single, Transition};
    pb::ConfChange {
        transition: match cc.transition {
            ConfChangeTransition::Auto => Transition::Auto,
            ConfChangeTransition::JointImplicit => Transition::JointImplicit,
            ConfChangeTransition::JointExplicit => Transition::JointExplicit,
        } as i32,
        changes: cc
            .changes
            .iter()
            .map(|c| Single {
                kind: match c.kind {
                    ConfChangeKind::AddVoter => Kind::AddVoter,
                    ConfChangeKind::AddLearner => Kind::AddLearner,
                    ConfChangeKind::Remove => Kind::Remove,
                } as i32,
                node: c.node.0,
            })
            .collect(),
    }
}

pub fn decode_conf_change(cc: pb::ConfChange) -> Result<ConfChange, DecodeError> {
    use pb::conf_change::{Kind, Transition};
    let transition = match Transition::try_from(cc.transition) {
        Ok(Transition::Auto) => ConfChangeTransition::Auto,
        Ok(Transition::JointImplicit) => ConfChangeTransition::JointImplicit,
        Ok(Transition::JointExplicit) => ConfChangeTransition::JointExplicit,
        Err(_) => {
            return Err(DecodeError::UnknownEnum {
                what: "transition",
                value: cc.transition,
            });
        }
    };
    let mut changes = Vec::with_capacity(cc.changes.len());
    for c in cc.changes {
        let kind = match Kind::try_from(c.kind) {
            Ok(Kind::AddVoter) => ConfChangeKind::AddVoter,
            Ok(Kind::AddLearner) => ConfChangeKind::AddLearner,
            Ok(Kind::Remove) => ConfChangeKind::Remove,
            Err(_) => {
                return Err(DecodeError::UnknownEnum {
                    what: "kind",
                    value: c.kind,
                });
            }
        };
        if c.node == 0 {
            return Err(DecodeError::ZeroNode("a membership change"));
        }
        changes.push(ConfChangeSingle {
            kind,
            node: NodeId(c.node),
        });
    }
    Ok(ConfChange {
        transition,
        changes,
    })
}

pub fn encode_snapshot_meta(meta: &SnapshotMeta) -> pb::SnapshotMeta {
    let ids = |v: &[NodeId]| v.iter().map(|id| id.0).collect::<Vec<_>>();
    let cs = &meta.conf_state;
    pb::SnapshotMeta {
        index: meta.index.0,
        term: meta.term.0,
        conf_state: Some(pb::ConfState {
            voters: ids(&cs.voters),
            voters_outgoing: ids(&cs.voters_outgoing),
            learners: ids(&cs.learners),
            learners_next: ids(&cs.learners_next),
            auto_leave: cs.auto_leave,
        }),
    }
}

pub fn decode_snapshot_meta(meta: pb::SnapshotMeta) -> Result<SnapshotMeta, DecodeError> {
    let cs = meta.conf_state.unwrap_or_default();
    let ids = |v: Vec<u64>| -> Result<Vec<NodeId>, DecodeError> {
        if v.contains(&0) {
            return Err(DecodeError::ZeroNode("a snapshot's membership"));
        }
        let mut ids: Vec<NodeId> = v.into_iter().map(NodeId).collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    };
    Ok(SnapshotMeta {
        index: index("snapshot index", meta.index)?,
        term: term("snapshot term", meta.term)?,
        conf_state: ConfState {
            voters: ids(cs.voters)?,
            voters_outgoing: ids(cs.voters_outgoing)?,
            learners: ids(cs.learners)?,
            learners_next: ids(cs.learners_next)?,
            auto_leave: cs.auto_leave,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn roundtrip(body: MessageBody) {
        let m = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(7),
            body,
        };
        let wire = encode_message(GroupId(3), &m);
        let (group, back) = decode_message(NodeId(1), NodeId(2), wire).unwrap();
        assert_eq!(group, GroupId(3));
        assert_eq!(back, m);
    }

    #[test]
    fn every_message_kind_survives_the_wire() {
        let cc = ConfChange {
            transition: ConfChangeTransition::JointExplicit,
            changes: vec![ConfChangeSingle {
                kind: ConfChangeKind::AddLearner,
                node: NodeId(4),
            }],
        };
        roundtrip(MessageBody::Append {
            prev_index: LogIndex(4),
            prev_term: Term(2),
            entries: vec![
                Entry {
                    term: Term(7),
                    index: LogIndex(5),
                    payload: Payload::Command(Bytes::from_static(b"put")),
                },
                Entry {
                    term: Term(7),
                    index: LogIndex(6),
                    payload: Payload::ConfChange(cc),
                },
                Entry {
                    term: Term(7),
                    index: LogIndex(7),
                    payload: Payload::Empty,
                },
            ],
            commit: LogIndex(3),
        });
        roundtrip(MessageBody::AppendResponse {
            index: LogIndex(9),
            reject: Some(RejectHint {
                index: LogIndex(5),
                term: Term(2),
            }),
        });
        roundtrip(MessageBody::Heartbeat {
            commit: LogIndex(3),
            read_round: 9,
        });
        roundtrip(MessageBody::HeartbeatResponse { read_round: 9 });
        roundtrip(MessageBody::RequestVote {
            pre_vote: true,
            last_index: LogIndex(3),
            last_term: Term(1),
            transfer: true,
        });
        roundtrip(MessageBody::RequestVoteResponse {
            pre_vote: false,
            granted: true,
        });
        roundtrip(MessageBody::InstallSnapshot {
            meta: SnapshotMeta {
                index: LogIndex(10),
                term: Term(3),
                conf_state: ConfState {
                    voters: vec![NodeId(1), NodeId(2)],
                    voters_outgoing: vec![NodeId(1), NodeId(3)],
                    learners: vec![NodeId(5)],
                    learners_next: vec![NodeId(3)],
                    auto_leave: true,
                },
            },
        });
        roundtrip(MessageBody::TimeoutNow);
        roundtrip(MessageBody::ReadIndex { context: 11 });
        roundtrip(MessageBody::ReadIndexResponse {
            context: 11,
            index: None,
        });
        roundtrip(MessageBody::ReadIndexResponse {
            context: 11,
            index: Some(LogIndex(4)),
        });
    }

    #[test]
    fn malformed_messages_are_refused_with_a_reason() {
        let empty = pb::GroupMessage {
            group: 1,
            term: 1,
            body: None,
        };
        assert_eq!(
            decode_message(NodeId(1), NodeId(2), empty),
            Err(DecodeError::MissingBody { group: 1 })
        );
        let bad_kind = pb::GroupMessage {
            group: 1,
            term: 1,
            body: Some(Body::Append(pb::Append {
                prev_index: 0,
                prev_term: 0,
                commit: 0,
                entries: vec![pb::Entry {
                    term: 1,
                    index: 1,
                    payload: Some(pb::entry::Payload::ConfChange(pb::ConfChange {
                        transition: 0,
                        changes: vec![pb::conf_change::Single { kind: 42, node: 3 }],
                    })),
                }],
            })),
        };
        let err = decode_message(NodeId(1), NodeId(2), bad_kind).unwrap_err();
        assert_eq!(err.to_string(), "unknown membership change kind 42");
    }

    /// A peer claiming term 2^64-1 made the core overflow at its next
    /// election (a panic with overflow checks, a term wrapped to 0 without).
    /// Terms and indexes no node reaches are refused on decoding.
    #[test]
    fn terms_and_indexes_no_node_reaches_are_refused() {
        let heartbeat = |term: u64, commit: u64| pb::GroupMessage {
            group: 0,
            term,
            body: Some(Body::Heartbeat(pb::Heartbeat {
                commit,
                read_round: 0,
            })),
        };
        assert_eq!(
            decode_message(NodeId(1), NodeId(2), heartbeat(u64::MAX, 1)),
            Err(DecodeError::Implausible {
                what: "message term",
                value: u64::MAX
            })
        );
        assert!(decode_message(NodeId(1), NodeId(2), heartbeat(1, u64::MAX)).is_err());
        assert!(decode_message(NodeId(1), NodeId(2), heartbeat(1 << 62, 1 << 62)).is_ok());
        let snapshot = pb::GroupMessage {
            group: 0,
            term: 1,
            body: Some(Body::InstallSnapshot(pb::SnapshotMeta {
                index: u64::MAX,
                term: 1,
                conf_state: None,
            })),
        };
        assert!(decode_message(NodeId(1), NodeId(2), snapshot).is_err());
    }
}
