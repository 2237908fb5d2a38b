//! What can go wrong in the harness itself, said so the person reading a
//! failed test knows where to look.

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum HarnessError {
    #[error(
        "the raft binary is not at {}: build it first with `cargo build --release -p kuberaft-replica` \
         (same profile as the tests), or run `cargo test --workspace`, which builds it; \
         KUBERAFT_RAFT_BIN=/path/to/raft overrides the place",
        .tried.display()
    )]
    BinaryMissing { tried: PathBuf },
    #[error("cannot find the test executable's own path: {0}")]
    NoCurrentExe(std::io::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no free subnet 127.0.x.0/24 to run a cluster on (all of 127.0.{first}..=127.0.{last} are taken)"
    )]
    NoSubnet { first: u8, last: u8 },
    #[error("there is no replica {0} in this cluster")]
    NoSuchReplica(u64),
    #[error("replica {0} is not running")]
    NotRunning(u64),
    #[error("gave up after {waited_ms} ms waiting for {what}; last seen: {last}")]
    Timeout {
        what: String,
        waited_ms: u128,
        last: String,
    },
    #[error("replica {id} at {endpoint} did not answer: {message}")]
    Rpc {
        id: u64,
        endpoint: String,
        message: String,
    },
    #[error("HTTP GET http://{addr}{path} failed: {message}")]
    Http {
        addr: String,
        path: String,
        message: String,
    },
}

impl HarnessError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> HarnessError {
        HarnessError::Io {
            what: what.into(),
            source,
        }
    }
}
