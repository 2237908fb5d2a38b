//! kuberaft's replica: the library behind the `raft` binary.
//!
//! Layers, each depending only on those above it in this list:
//! - [`raft`]: the Raft algorithm for one group, a pure state machine;
//! - [`multi`]: many groups on one node, with heartbeats coalesced per node pair;
//! - [`storage`]: the write-ahead log shared by all groups of a node, and snapshots.

pub mod kv;
pub mod multi;
pub mod raft;
pub mod storage;
