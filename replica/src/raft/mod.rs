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
//!
//! One concept per file: [`quorum`] (majority and joint quorums), `progress`
//! (a leader's view of each follower and its in-flight window),
//! `confchange` (membership changes), `log` (the in-memory log and its
//! cursors), `read_only` (ReadIndex), `raft` (the state machine itself).

mod confchange;
mod config;
mod log;
mod message;
mod progress;
pub mod quorum;
#[allow(clippy::module_inception)]
mod raft;
mod read_only;
mod ready;
mod types;

#[cfg(test)]
mod tests;

pub use config::{Config, ConfigError, ReadOnlyOption};
pub use message::{Message, MessageBody, ReadContext, RejectHint};
pub use progress::ProgressState;
pub use raft::{ProgressStatus, ProposeError, Raft, Status};
pub use ready::{DroppedRead, ReadState, Ready, Role, SoftState};
pub use types::{
    ConfChange, ConfChangeKind, ConfChangeSingle, ConfChangeTransition, ConfState, Entry, GroupId,
    HardState, LogIndex, NodeId, Payload, RecoveredState, SnapshotMeta, Term,
};
