//! The Raft algorithm for one group, as a pure, deterministic state machine.
//!
//! Inputs: [`Raft::step`] (a message), [`Raft::tick`] (time passed),
//! [`Raft::propose`] and friends (client requests). Output: a [`Ready`] that
//! says what to persist, what to send and what to apply.
//!
//! The core never performs I/O, never reads a clock, never spawns a thread,
//! and draws randomness only from the seed in its [`Config`]. Given the same
//! inputs it produces the same outputs, which is what lets the simulation
//! replay a failing seed exactly.

mod config;
mod message;
mod ready;
mod types;

pub use config::{Config, ConfigError, ReadOnlyOption};
pub use message::{Message, MessageBody, ReadContext, RejectHint};
pub use ready::{DroppedRead, ReadState, Ready, Role, SoftState};
pub use types::{
    ConfChange, ConfChangeKind, ConfChangeSingle, ConfChangeTransition, ConfState, Entry, GroupId,
    HardState, LogIndex, NodeId, Payload, RecoveredState, SnapshotMeta, Term,
};
