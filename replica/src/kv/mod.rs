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
//!
//! # Design notes
//!
//! - The map is a `BTreeMap<Bytes, Bytes>`: ordered (scans by prefix),
//!   fast, and without a dependency. Keys and values are copied out of the
//!   log entry on apply so the map never pins a network batch's buffer.
//!   Writing a snapshot borrows the map for as long as the write takes,
//!   so the event loop cannot apply meanwhile; if that stall matters for
//!   large groups, a persistent map with O(1) clones (e.g. `imbl::OrdMap`,
//!   MPL-2.0) would let a snapshot stream from a frozen copy on another
//!   thread. The API (`write_snapshot(&self, ..)`) would not change.
//! - Time: each command carries its proposal time, the leader's wall clock.
//!   The state machine's clock is the largest proposal time applied, so it
//!   never runs backwards. Proposers should stamp
//!   `max(wall clock, clock_ms())`, so a new leader whose clock is behind
//!   does not freeze session expiry.
//! - Sessions give exactly-once within their lifetime; see [`session`].
//! - The [`Digest`] is cheap: the data part is an order-independent sum
//!   of per-pair hashes maintained on every write, so replicas (and a
//!   restored snapshot) can be compared at any applied index.

mod codec;
pub mod command;
pub mod limits;
pub mod machine;
pub mod placement;
pub mod session;
pub mod snapshot;

pub use codec::DecodeError;
pub use command::{
    COMMAND_VERSION, ClientId, Command, CommandError, CommandResult, MEMBERS_GROUP, Op, Response,
    SessionRef,
};
pub use limits::{
    LimitError, MAX_COMMAND_BYTES, MAX_KEY_BYTES, MAX_SCAN_BYTES, MAX_SCAN_LIMIT, MAX_VALUE_BYTES,
    validate_key, validate_value,
};
pub use machine::{Applied, ApplyError, Digest, KvStateMachine, MemberRecord, ScanPage};
pub use placement::group_for_key;
pub use session::SessionPolicy;
pub use snapshot::{SnapshotError, SnapshotInfo};
