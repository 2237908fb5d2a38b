//! The multi-process test harness of kuberaft: real `raft serve` processes
//! on loopback, with real sockets, real files and real signals. The
//! end-to-end tests of the replica (issue 4) and the fault-injection suite
//! (issue 8) are both built on it.
//!
//! - [`Cluster`] starts N replicas, each on its own loopback address
//!   `127.0.<subnet>.<id>` with its own data directory, log file and
//!   generated configuration under a per-test directory; it stops, kills,
//!   pauses, resumes and restarts them by pid, and kills every one it
//!   started when dropped (on panic too).
//! - [`Subnet`] gives each test its own `127.0.<subnet>.0/24`, so tests (and
//!   test processes) can run in parallel without port clashes.
//! - [`TestDir`] keeps a failed test's directory and prints where it is,
//!   with the tail of every replica's log.
//! - [`wait`] has the bounded waits (a leader, readiness, an applied index)
//!   and [`load`] a bounded write load that records what was acknowledged.
//! - [`cli`] runs `raft` client commands as a user would, and [`log_scan`]
//!   times events from the replicas' logs.
//! - The fault-injection suite (issue 8): [`netns`] (a network namespace
//!   of the test's own and `iptables` inside it), [`workload`] (clients
//!   recording a [`history`]), [`schedule`] and [`nemesis`] (faults from a
//!   seed), [`linearizability`] (the checker) and [`fault_run`] (one run,
//!   start to verdict).
//!
//! The harness never asserts on timings: its deadlines only bound a hang.

pub mod binary;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod error;
pub mod fault_run;
pub mod history;
pub mod http;
pub mod linearizability;
pub mod load;
pub mod log_scan;
pub mod nemesis;
pub mod netns;
pub mod pki;
pub mod replica;
pub mod schedule;
pub mod subnet;
pub mod test_dir;
pub mod wait;
pub mod workload;

pub use binary::raft_binary;
pub use cluster::{Cluster, ClusterOptions, DataDir};
pub use error::HarnessError;
pub use load::{LoadReport, WriteLoad};
pub use replica::Replica;
pub use subnet::Subnet;
pub use test_dir::TestDir;

use std::future::Future;
use std::time::Duration;

/// Runs a test body, failing it if it has not finished after `limit`: a
/// bound on a hang, not a timing assertion.
pub async fn bounded<T>(limit: Duration, body: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, body).await {
        Ok(v) => v,
        Err(_) => panic!("the test did not finish within {limit:?}: something hangs"),
    }
}
