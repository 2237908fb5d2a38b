//! kuberaft's wire contract, generated from `proto/*.proto` at build time.
//!
//! - [`raft`]: the peer protocol between replicas (one long-lived stream per
//!   node pair carrying batches of messages of every group).

/// The peer protocol (`kuberaft.raft.v1`).
pub mod raft {
    tonic::include_proto!("kuberaft.raft.v1");
}
