//! Finding the `raft` program the tests run.
//!
//! Cargo puts a test or bench executable in `target/<profile>/deps/` and the
//! workspace's binaries in `target/<profile>/`, so the `raft` of the same
//! build is one directory up from the running executable. `cargo test
//! --workspace` builds it (the replica's own integration tests need it);
//! `cargo test -p kuberaft-tests` alone does not, hence the message of
//! [`HarnessError::BinaryMissing`].

use crate::error::HarnessError;
use std::path::PathBuf;

/// Overrides where the binary is looked for.
pub const BINARY_VAR: &str = "KUBERAFT_RAFT_BIN";

/// The path of the `raft` binary built alongside this test executable.
pub fn raft_binary() -> Result<PathBuf, HarnessError> {
    if let Some(path) = std::env::var_os(BINARY_VAR) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(HarnessError::BinaryMissing { tried: path })
        };
    }
    let exe = std::env::current_exe().map_err(HarnessError::NoCurrentExe)?;
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/raft
    let profile_dir = exe
        .parent()
        .filter(|deps| deps.ends_with("deps"))
        .and_then(|deps| deps.parent())
        .or_else(|| exe.parent())
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = profile_dir.join("raft");
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::BinaryMissing { tried: path })
    }
}
