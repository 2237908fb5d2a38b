//! The command line end to end, as a developer uses it: `raft local --dir
//! T` runs a cluster, `raft put` and `raft get` from inside T find it by
//! `./raft.json`, Ctrl-C (SIGINT) stops every replica, and running `raft
//! local` again brings the data back.

use kuberaft_tests::cli::{self, CliOutput};
use kuberaft_tests::config::NAMES;
use kuberaft_tests::replica::{clear_raft_env, die_with_parent, pid_alive};
use kuberaft_tests::wait::{WAIT, until};
use kuberaft_tests::{Subnet, TestDir, bounded, raft_binary};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const REPLICAS: usize = 3;

/// `raft local` as a child process, its output in `<test dir>/local.log`.
struct Local {
    child: Child,
    dir: PathBuf,
}

impl Local {
    fn start(binary: &Path, test_dir: &Path, dir: &Path, subnet: &Subnet) -> Local {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(test_dir.join("local.log"))
            .expect("open local.log");
        let mut command = Command::new(binary);
        command
            .arg("local")
            .arg("--dir")
            .arg(dir)
            .arg("--ip")
            .arg(subnet.ip(1).to_string())
            .arg("--replicas")
            .arg(REPLICAS.to_string())
            .current_dir(test_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log);
        clear_raft_env(&mut command);
        die_with_parent(&mut command);
        Local {
            child: command.spawn().expect("raft local starts"),
            dir: dir.to_path_buf(),
        }
    }

    /// Ctrl-C, and the exit status.
    async fn interrupt(&mut self) -> std::process::ExitStatus {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own, not yet reaped, child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0, "SIGINT sent");
        until(
            "raft local to exit after Ctrl-C",
            Duration::from_secs(60),
            async || match self.child.try_wait() {
                Ok(Some(status)) => Ok(status),
                Ok(None) => Err("still running".into()),
                Err(e) => Err(e.to_string()),
            },
        )
        .await
        .expect("raft local stops on Ctrl-C")
    }
}

impl Drop for Local {
    /// On a failure, nothing is left running: the replicas `raft local`
    /// started (by their pid files) and `raft local` itself.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            for name in &NAMES[..REPLICAS] {
                let pid = std::fs::read_to_string(self.dir.join(name).join("raft.pid"))
                    .ok()
                    .and_then(|p| p.trim().parse::<i32>().ok());
                if let Some(pid) = pid.filter(|p| *p > 0 && pid_alive(*p as u32)) {
                    // SAFETY: kill(2) on a replica `raft local` started.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a client command from inside `dir`, with no flag saying where the
/// cluster is.
async fn raft_in(binary: &Path, dir: &Path, args: &[&str]) -> CliOutput {
    cli::run(binary, Some(dir), args, &[])
        .await
        .expect("the command exits")
}

/// The pids `raft local` wrote, once every replica's is there.
async fn replica_pids(dir: &Path) -> Vec<u32> {
    until("every replica's pid file", WAIT, async || {
        let pids: Vec<u32> = NAMES[..REPLICAS]
            .iter()
            .filter_map(|name| {
                std::fs::read_to_string(dir.join(name).join("raft.pid"))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            })
            .collect();
        if pids.len() == REPLICAS {
            Ok(pids)
        } else {
            Err(format!("pids so far: {pids:?}"))
        }
    })
    .await
    .expect("raft local writes a pid file per replica")
}

async fn stop_and_check(local: &mut Local, dir: &Path) {
    let pids = replica_pids(dir).await;
    let status = local.interrupt().await;
    assert!(
        status.success(),
        "raft local exits 0 after Ctrl-C: {status:?}"
    );
    let left: Vec<u32> = pids.iter().copied().filter(|p| pid_alive(*p)).collect();
    assert!(
        left.is_empty(),
        "replicas still running after Ctrl-C: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_local_put_get_ctrl_c_and_back() {
    bounded(Duration::from_secs(150), async {
        let binary = raft_binary().expect("the raft binary");
        let test_dir = TestDir::new("cli-local").expect("test dir");
        let subnet = Subnet::claim().expect("a subnet");
        let dir: PathBuf = test_dir.path().join("cluster");

        let mut local = Local::start(&binary, test_dir.path(), &dir, &subnet);
        until("raft local to write raft.json", WAIT, async || {
            if dir.join("raft.json").is_file() {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        })
        .await
        .expect("raft.json appears");
        let out = raft_in(
            &binary,
            &dir,
            &["--timeout", "30s", "put", "hello", "world"],
        )
        .await;
        assert_eq!(
            out.code,
            Some(0),
            "raft put from inside the directory:\n{out}"
        );
        let out = raft_in(&binary, &dir, &["get", "hello"]).await;
        assert_eq!(out.code, Some(0), "{out}");
        assert_eq!(out.stdout, "world\n", "raft get prints the value alone");
        let out = raft_in(
            &binary,
            &dir,
            &["commit", "-k", "original", "-v", "spelling"],
        )
        .await;
        assert_eq!(
            out.code,
            Some(0),
            "raft commit, the original spelling of put:\n{out}"
        );
        let out = raft_in(&binary, &dir, &["status"]).await;
        assert_eq!(out.code, Some(0), "{out}");
        for name in &NAMES[..REPLICAS] {
            assert!(
                out.stdout.contains(name),
                "raft status lists {name}:\n{out}"
            );
        }
        stop_and_check(&mut local, &dir).await;

        // Again on the same directory: the same cluster, with its data.
        let mut local = Local::start(&binary, test_dir.path(), &dir, &subnet);
        let out = raft_in(&binary, &dir, &["--timeout", "30s", "get", "hello"]).await;
        assert_eq!(out.code, Some(0), "{out}");
        assert_eq!(out.stdout, "world\n", "the data is back");
        let out = raft_in(&binary, &dir, &["get", "original"]).await;
        assert_eq!(out.stdout, "spelling\n", "{out}");
        stop_and_check(&mut local, &dir).await;
    })
    .await;
}
