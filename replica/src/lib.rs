//! kuberaft's replica: the library behind the `raft` binary.
//!
//! Layers, each depending only on those above it in this list:
//! - [`raft`]: the Raft algorithm for one group, a pure state machine;
//! - [`multi`]: many groups on one node, with heartbeats coalesced per node pair;
//! - [`config`]: the replica's configuration file (JSON, TOML or YAML) and its overrides;
//! - [`kv`]: the replicated key-value state machine of a group, with client sessions;
//! - [`storage`]: the write-ahead log shared by all groups of a node, and snapshots;
//! - [`transport`]: gRPC streams between replicas, batching all groups' messages per peer;
//! - [`security`]: TLS material and its reloading, peer and admin authorization.
//!
//! [`fuzzing`] holds the fuzz targets of every decoder of untrusted bytes.

pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod fuzzing;
pub mod kv;
pub mod metrics;
pub mod multi;
pub mod node;
pub mod raft;
pub mod random;
pub mod security;
pub mod storage;
pub mod transport;
