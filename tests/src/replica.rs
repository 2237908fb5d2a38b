//! One `raft serve` process of a test cluster, driven by pid: start, stop
//! (SIGTERM), kill (SIGKILL), pause and resume (SIGSTOP, SIGCONT), and its
//! status through the admin API.
//!
//! Everything of a replica lives in its own directory:
//!
//! ```text
//! <test dir>/<name>/raft.json   its configuration (written by the cluster)
//! <test dir>/<name>/data/       its data directory
//! <test dir>/<name>/raft.log    stdout and stderr of every run, appended
//! ```
//!
//! Invariant: a process this harness started is either waited for or still
//! owned here; dropping a [`Replica`] SIGKILLs and reaps it. The child also
//! gets SIGKILL from the kernel if the thread that started it dies (Linux
//! `PR_SET_PDEATHSIG`), so a test process that is itself killed leaves no
//! replica behind: start replicas from the test's own thread or a runtime
//! worker, never from a short-lived thread (`spawn_blocking`).

use crate::config::{GRPC_PORT, HTTP_PORT, ReplicaConfig};
use crate::error::HarnessError;
use kuberaft::security::{AuthChannel, ClientSecurity, error_chain};
use kuberaft_proto::admin::NodeStatus;
use kuberaft_proto::admin::admin_client::AdminClient;
use std::fs::OpenOptions;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// How long one admin call may take.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a SIGTERMed replica may take to exit before it is SIGKILLed:
/// more than its own handover timeout plus a flush.
pub const STOP_GRACE: Duration = Duration::from_secs(20);

#[derive(Debug)]
pub struct Replica {
    pub id: u64,
    pub name: String,
    pub ip: Ipv4Addr,
    /// `<test dir>/<name>`.
    pub dir: PathBuf,
    pub config: ReplicaConfig,
    binary: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// How the last run ended, once it has.
    last_exit: Option<ExitStatus>,
    /// What the harness presents to it (TLS, admin token).
    pub security: ClientSecurity,
}

impl Replica {
    /// A replica that is not started yet; writes nothing.
    pub fn new(
        id: u64,
        name: String,
        ip: Ipv4Addr,
        dir: PathBuf,
        config: ReplicaConfig,
        binary: PathBuf,
    ) -> Replica {
        Replica {
            id,
            name,
            ip,
            dir,
            config,
            binary,
            child: None,
            paused: false,
            last_exit: None,
            security: ClientSecurity::default(),
        }
    }

    /// `ip:port` of its gRPC listener (peer, client and admin).
    pub fn endpoint(&self) -> String {
        self.grpc_addr().to_string()
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip.into(), GRPC_PORT)
    }

    /// Its HTTP listener (`/metrics`, `/healthz`, `/readyz`, `/status`).
    pub fn http_addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip.into(), HTTP_PORT)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("raft.json")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("raft.log")
    }

    /// Everything the replica has logged, every run.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// How the last run ended, if it has ended.
    pub fn last_exit(&self) -> Option<ExitStatus> {
        self.last_exit
    }

    /// Whether the process is alive (a paused one is); reaps it if not.
    pub fn is_running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.last_exit = Some(status);
                self.child = None;
                self.paused = false;
                false
            }
            Err(_) => true,
        }
    }

    /// Writes the configuration and starts `raft serve` on it.
    pub fn start(&mut self) -> Result<(), HarnessError> {
        if self.is_running() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| HarnessError::io(format!("cannot create {}", self.dir.display()), e))?;
        self.config.write(&self.config_path())?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| {
                HarnessError::io(format!("cannot open {}", self.log_path().display()), e)
            })?;
        let log_err = log
            .try_clone()
            .map_err(|e| HarnessError::io("cannot duplicate the log file", e))?;
        let mut command = Command::new(&self.binary);
        command
            .arg("serve")
            .arg("-c")
            .arg(self.config_path())
            .arg("-n")
            .arg(&self.name)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        clear_raft_env(&mut command);
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .map_err(|e| HarnessError::io(format!("cannot start {}", self.binary.display()), e))?;
        self.child = Some(child);
        self.paused = false;
        self.last_exit = None;
        Ok(())
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) -> Result<(), HarnessError> {
        let pid = self.pid().ok_or(HarnessError::NotRunning(self.id))?;
        let pid = i32::try_from(pid).map_err(|_| HarnessError::NotRunning(self.id))?;
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(HarnessError::io(
                format!("cannot signal replica {} (pid {pid})", self.id),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            self.last_exit = child.wait().ok();
        }
        self.paused = false;
    }

    /// SIGTERM (after SIGCONT if paused), then waits for it to exit; SIGKILL
    /// after [`STOP_GRACE`]. Returns how it exited.
    pub async fn stop(&mut self) -> Result<ExitStatus, HarnessError> {
        if self.paused {
            self.resume()?;
        }
        if !self.is_running() {
            return self.last_exit.ok_or(HarnessError::NotRunning(self.id));
        }
        self.signal(libc::SIGTERM)?;
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if !self.is_running() {
                return self.last_exit.ok_or(HarnessError::NotRunning(self.id));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        Err(HarnessError::Timeout {
            what: format!(
                "replica {} to exit after SIGTERM (it was SIGKILLed)",
                self.id
            ),
            waited_ms: STOP_GRACE.as_millis(),
            last: "still running".into(),
        })
    }

    /// SIGSTOP: the process stays, but does nothing (a long GC pause, a
    /// stalled VM).
    pub fn pause(&mut self) -> Result<(), HarnessError> {
        self.signal(libc::SIGSTOP)?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&mut self) -> Result<(), HarnessError> {
        self.signal(libc::SIGCONT)?;
        self.paused = false;
        Ok(())
    }

    /// Deletes the data directory (a lost volume). Only while stopped.
    pub fn wipe_data(&mut self) -> Result<(), HarnessError> {
        if self.is_running() {
            return Err(HarnessError::io(
                format!("cannot wipe replica {}'s data while it runs", self.id),
                std::io::Error::other("still running"),
            ));
        }
        match std::fs::remove_dir_all(self.data_dir()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(HarnessError::io(
                format!("cannot delete {}", self.data_dir().display()),
                e,
            )),
        }
    }

    /// A fresh gRPC channel to the replica (connecting now, bounded).
    pub async fn channel(&self) -> Result<AuthChannel, HarnessError> {
        let rpc = |message: String| HarnessError::Rpc {
            id: self.id,
            endpoint: self.endpoint(),
            message,
        };
        let channel = self
            .security
            .endpoint(&self.endpoint())
            .map_err(rpc)?
            .connect_timeout(RPC_TIMEOUT)
            .timeout(RPC_TIMEOUT)
            .connect()
            .await
            .map_err(|e| rpc(format!("cannot connect: {}", error_chain(&e))))?;
        let credentials = self.security.credentials().map_err(rpc)?;
        Ok(credentials.wrap(channel))
    }

    /// The admin client of this replica.
    pub async fn admin(&self) -> Result<AdminClient<AuthChannel>, HarnessError> {
        Ok(AdminClient::new(self.channel().await?))
    }

    /// The replica's status through the admin API.
    pub async fn status(&self) -> Result<NodeStatus, HarnessError> {
        let mut admin = self.admin().await?;
        admin
            .status(kuberaft_proto::admin::StatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| HarnessError::Rpc {
                id: self.id,
                endpoint: self.endpoint(),
                message: format!("{:?}: {}", s.code(), s.message()),
            })
    }

    /// A description of how the last run ended, for messages.
    pub fn describe_exit(&self) -> String {
        match self.last_exit {
            None => "running".into(),
            Some(s) => match (s.code(), s.signal()) {
                (Some(code), _) => format!("exited with status {code}"),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                _ => format!("ended: {s:?}"),
            },
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The harness sets every key it needs in the file: a `RAFT_*` variable of
/// the developer's shell must not change the test.
pub fn clear_raft_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RAFT_") {
            command.env_remove(key);
        }
    }
}

/// The child gets SIGKILL when the thread that spawned it exits.
pub fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls (prctl, getppid, _exit).
    let parent = std::process::id();
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}
