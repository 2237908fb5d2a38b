//! kuberaft's wire contract, generated from `proto/*.proto` at build time.
//!
//! - [`raft`]: the peer protocol between replicas (one long-lived stream per
//!   node pair carrying batches of messages of every group);
//! - [`kv`]: the client API (put, get, delete, compare-and-swap, scan);
//! - [`admin`]: status, membership, leadership and snapshots, for the
//!   operator and the CLI;
//! - [`etcd`]: the subset of etcd's v3 KV API that `raft bench --target
//!   etcd` drives (etcd's own package and field numbers).

/// The peer protocol (`kuberaft.raft.v1`).
pub mod raft {
    tonic::include_proto!("kuberaft.raft.v1");
}

/// The client API (`kuberaft.kv.v1`).
pub mod kv {
    tonic::include_proto!("kuberaft.kv.v1");
}

/// The admin API (`kuberaft.admin.v1`).
pub mod admin {
    tonic::include_proto!("kuberaft.admin.v1");
}

/// etcd's v3 KV API, Put and Range only (`etcdserverpb`), for benchmarking
/// etcd with the same load generator as kuberaft.
pub mod etcd {
    tonic::include_proto!("etcdserverpb");
}
