//! The `raft` command line: run a replica or a local cluster, talk to a
//! cluster as a client or an administrator, benchmark it (`raft bench`).

pub mod bench;
pub mod commands;
pub mod local;
pub mod logging;
mod output;
pub mod serve;

pub use commands::{Cli, run};
