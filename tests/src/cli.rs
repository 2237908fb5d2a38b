//! Running `raft` commands as a user would: a child process with
//! arguments, a working directory and a bound on how long it may take,
//! its exit status and output captured.

use crate::cluster::Cluster;
use crate::error::HarnessError;
use crate::replica::{clear_raft_env, die_with_parent};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// How long a client command may run before the harness kills it: far more
/// than the command's own `--timeout`; only a hang reaches it.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// What a command did.
#[derive(Clone, Debug)]
pub struct CliOutput {
    /// The exit code; `None` if a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `binary args...` in `cwd` (default: the current directory), with
/// no `RAFT_*` variable but those in `env`, killed after [`COMMAND_LIMIT`].
pub async fn run(
    binary: &Path,
    cwd: Option<&Path>,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<CliOutput, HarnessError> {
    run_within(binary, cwd, args, env, COMMAND_LIMIT).await
}

/// [`run`], killed (and failed) if it has not exited after `limit`.
pub async fn run_within(
    binary: &Path,
    cwd: Option<&Path>,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> Result<CliOutput, HarnessError> {
    let mut command = std::process::Command::new(binary);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    clear_raft_env(&mut command);
    for (k, v) in env {
        command.env(k, v);
    }
    die_with_parent(&mut command);
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let what = format!("raft {}", args.join(" "));
    let child = command
        .spawn()
        .map_err(|e| HarnessError::io(format!("cannot run {}", binary.display()), e))?;
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| HarnessError::Timeout {
            what: format!("`{what}` to exit"),
            waited_ms: limit.as_millis(),
            last: "still running (killed)".into(),
        })?
        .map_err(|e| HarnessError::io(format!("`{what}` failed"), e))?;
    Ok(CliOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

impl Cluster {
    /// Runs a `raft` client command against every replica of the cluster
    /// (`--endpoints`), from the test directory.
    pub async fn raft(&self, args: &[&str]) -> Result<CliOutput, HarnessError> {
        let endpoints = self.endpoints().join(",");
        let mut full = vec!["--endpoints", &endpoints];
        full.extend_from_slice(args);
        run(self.binary(), Some(self.dir()), &full, &[]).await
    }
}
