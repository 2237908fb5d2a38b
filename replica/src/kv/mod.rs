//! The replicated key-value state machine of a group: an ordered map with
//! put, delete and compare-and-swap, client sessions for exactly-once
//! application, and snapshots.
//!
//! It depends only on the core's types. It never reads a clock (time comes
//! from the commands themselves), never performs I/O of its own (snapshots go
//! to and come from the writer and reader it is handed) and never lets the
//! contents of an entry decide whether replicas diverge: every entry,
//! including an undecodable one, has one deterministic outcome.
//!
//! - [`command`]: the versioned command encoding and the typed results;
//! - [`limits`]: key and value size limits, checked before proposing and on
//!   apply;
//! - [`session`]: client sessions and their deterministic expiry;
//! - [`machine`]: the state machine, reads (get, scan) and the state digest;
//! - [`snapshot`]: the streaming snapshot format;
//! - [`placement`]: which group holds a key.

mod codec;
pub mod command;
pub mod limits;
pub mod machine;
pub mod placement;
pub mod session;
pub mod snapshot;

pub use codec::DecodeError;
pub use command::{
    COMMAND_VERSION, ClientId, Command, CommandError, CommandResult, Op, Response, SessionRef,
};
pub use limits::{
    LimitError, MAX_COMMAND_BYTES, MAX_KEY_BYTES, MAX_SCAN_BYTES, MAX_SCAN_LIMIT, MAX_VALUE_BYTES,
    validate_key, validate_value,
};
pub use machine::{Applied, ApplyError, Digest, KvStateMachine, ScanPage};
pub use placement::group_for_key;
pub use session::SessionPolicy;
pub use snapshot::{SnapshotError, SnapshotInfo};
