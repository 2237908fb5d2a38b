//! Finding the `raft` program the tests run.
//!
//! Cargo puts a test or bench executable in `target/<profile>/deps/` and the
//! workspace's binaries in `target/<profile>/`, so the `raft` of the same
//! build is one directory up from the running executable. `cargo test
//! --workspace` builds it (the replica's own integration tests need it);
//! `cargo test -p kuberaft-tests` alone does not, hence the message of
//! [`HarnessError::BinaryMissing`].

use crate::error::HarnessError;
use std::path::{Path, PathBuf};

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
    next_to(&exe)
}

/// The `raft` of the build that produced `exe`.
fn next_to(exe: &Path) -> Result<PathBuf, HarnessError> {
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/raft
    let profile_dir = exe
        .parent()
        .filter(|deps| deps.ends_with("deps"))
        .and_then(Path::parent)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_is_looked_for_beside_deps() {
        let err = next_to(Path::new(
            "/nonexistent/target/release/deps/replication-0123",
        ))
        .expect_err("nothing there");
        let message = err.to_string();
        assert!(
            message.contains("/nonexistent/target/release/raft"),
            "names the place looked at: {message}"
        );
        assert!(
            message.contains("cargo build --release -p kuberaft-replica")
                && message.contains("cargo test --workspace"),
            "says how to build it: {message}"
        );
    }

    #[test]
    fn the_binary_of_this_build_is_found() {
        // This crate's tests run after `cargo build -p kuberaft-replica` or
        // within `cargo test --workspace`; either way the binary is there.
        let path = raft_binary().expect("the raft binary of this build");
        assert_eq!(path.file_name().and_then(|n| n.to_str()), Some("raft"));
    }
}
