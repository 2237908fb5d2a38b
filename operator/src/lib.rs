//! The kuberaft operator: reconciles `RaftCluster` resources into the
//! Kubernetes objects that run replicas, and drives the replicas' admin API
//! for every step that needs consensus.
//!
//! - [`crd`]: the resource and its schema;
//! - [`builders`]: pure RaftCluster -> child object functions;
//! - [`replica_config`]: the replicas' configuration file;
//! - [`membership`]: the pure planner of membership, scaling and upgrades;
//! - [`admin`]: the replicas' admin API client;
//! - [`controller`]: reconcile, error policy, context;
//! - [`tls`]: the cluster's CA and certificates, and their rotation;
//! - [`rbac`]: the exact API permissions the operator needs;
//! - [`lease`]: leader election among operator instances;
//! - [`metrics`], [`http`]: `/metrics` and `/healthz`.

pub mod admin;
pub mod builders;
pub mod controller;
pub mod crd;
pub mod duration;
pub mod error;
pub mod http;
pub mod lease;
pub mod membership;
pub mod metrics;
pub mod names;
pub mod rbac;
pub mod replica_config;
pub mod tls;

#[cfg(test)]
mod fixtures;
