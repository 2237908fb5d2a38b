//! The clusters `raft bench compare` runs: a 3-member etcd and a 3-replica
//! kuberaft, each member a child process on one loopback address (ports
//! apart) with its own data
//! directory and log file, both with their default settings (fsync on:
//! neither can turn it off; heartbeat 100 ms and election timeout 1 s in
//! both).
//!
//! Every member is stopped by its process id: SIGTERM, then SIGKILL after a
//! grace period. Dropping a [`LocalCluster`] SIGKILLs whatever still runs,
//! and each member is also told by the kernel to die with the thread that
//! started it, so an interrupted comparison leaves nothing behind.

use crate::client::{Client, ClientOptions};
use anyhow::{Context as _, bail};
use bytes::Bytes;
use kuberaft_proto::etcd as etcd_pb;
use kuberaft_proto::etcd::kv_client::KvClient as EtcdKvClient;
use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Endpoint;

/// The replicas' names (as `raft local` names them).
const NAMES: [&str; 3] = ["alpha", "bravo", "charlie"];
/// How long a member may take to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// How long a new cluster may take to elect leaders and answer.
const READY_WITHIN: Duration = Duration::from_secs(90);

/// A cluster of local processes.
pub struct LocalCluster {
    /// `etcd` or `kuberaft`, for messages.
    pub kind: &'static str,
    /// The client endpoints, `127.0.0.1:port`.
    pub endpoints: Vec<String>,
    pub groups: u32,
    pub dir: PathBuf,
    members: Vec<Member>,
}

struct Member {
    name: String,
    child: Child,
    log: PathBuf,
}

impl LocalCluster {
    /// Starts a 3-member etcd cluster with `etcd`, in `dir`, on `ip`:
    /// clients on ports `base..base+3`, peers on `base+10..base+13`.
    pub fn start_etcd(
        etcd: &Path,
        dir: &Path,
        ip: Ipv4Addr,
        base: u16,
    ) -> anyhow::Result<LocalCluster> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let client_port = |i: u16| base + i;
        let peer_port = |i: u16| base + 10 + i;
        let name = |i: u16| format!("etcd-{}", i + 1);
        for i in 0..3 {
            refuse_if_taken(ip, client_port(i), "etcd client")?;
            refuse_if_taken(ip, peer_port(i), "etcd peer")?;
        }
        let initial: Vec<String> = (0..3)
            .map(|i| format!("{}=http://{ip}:{}", name(i), peer_port(i)))
            .collect();
        let token = format!("bench-{:016x}", crate::random::nonzero_u64());
        let mut cluster = LocalCluster {
            kind: "etcd",
            endpoints: (0..3).map(|i| format!("{ip}:{}", client_port(i))).collect(),
            groups: 1,
            dir: dir.to_path_buf(),
            members: Vec::new(),
        };
        for i in 0..3 {
            let client_url = format!("http://{ip}:{}", client_port(i));
            let peer_url = format!("http://{ip}:{}", peer_port(i));
            let mut command = Command::new(etcd);
            command
                .arg("--name")
                .arg(name(i))
                .arg("--data-dir")
                .arg(dir.join(name(i)))
                .arg("--listen-client-urls")
                .arg(&client_url)
                .arg("--advertise-client-urls")
                .arg(&client_url)
                .arg("--listen-peer-urls")
                .arg(&peer_url)
                .arg("--initial-advertise-peer-urls")
                .arg(&peer_url)
                .arg("--initial-cluster")
                .arg(initial.join(","))
                .arg("--initial-cluster-token")
                .arg(&token)
                .arg("--initial-cluster-state")
                .arg("new");
            // Defaults only: no ETCD_* setting from the environment.
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("ETCD_") {
                    command.env_remove(key);
                }
            }
            let member = spawn(command, &name(i), &dir.join(format!("{}.log", name(i))))
                .with_context(|| {
                    format!(
                        "cannot start {} (install etcd with `apt-get install etcd-server`, or pass --etcd PATH)",
                        etcd.display()
                    )
                })?;
            cluster.members.push(member);
        }
        Ok(cluster)
    }

    /// Starts a 3-replica kuberaft cluster of `groups` groups with the
    /// `raft` program `raft`, in `dir`, on `ip`, ports `base..base+3`
    /// (metrics 1000 higher).
    pub fn start_kuberaft(
        raft: &Path,
        dir: &Path,
        ip: Ipv4Addr,
        base: u16,
        groups: u32,
    ) -> anyhow::Result<LocalCluster> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for i in 0..3 {
            refuse_if_taken(ip, base + i, "kuberaft gRPC")?;
            refuse_if_taken(
                ip,
                base + i + crate::config::METRICS_PORT_OFFSET,
                "kuberaft metrics",
            )?;
        }
        let peers: Vec<serde_json::Value> = (0..3u16)
            .map(|i| {
                serde_json::json!({
                    "pid": u64::from(i) + 1,
                    "name": NAMES[usize::from(i)],
                    "ip_address": ip.to_string(),
                    "port": base + i,
                })
            })
            .collect();
        // Only what a cluster needs to exist: every setting that shapes
        // performance is the replica's default.
        let config = serde_json::json!({
            "cluster_id": format!("bench-{:08x}", crate::random::nonzero_u64() as u32),
            "initial_cluster_state": "new",
            "groups": groups,
            "data_dir": "data",
            "peers": peers,
        });
        let config_path = dir.join("raft.json");
        fs::write(&config_path, serde_json::to_string_pretty(&config)? + "\n")
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        let mut cluster = LocalCluster {
            kind: "kuberaft",
            endpoints: (0..3).map(|i| format!("{ip}:{}", base + i)).collect(),
            groups,
            dir: dir.to_path_buf(),
            members: Vec::new(),
        };
        for name in NAMES {
            let rdir = dir.join(name);
            fs::create_dir_all(&rdir)
                .with_context(|| format!("cannot create {}", rdir.display()))?;
            let mut command = Command::new(raft);
            command
                .arg("serve")
                .arg("-c")
                .arg(&config_path)
                .arg("-n")
                .arg(name)
                .current_dir(&rdir);
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("RAFT_") {
                    command.env_remove(key);
                }
            }
            let member = spawn(command, name, &rdir.join("raft.log"))
                .with_context(|| format!("cannot start replica {name} ({})", raft.display()))?;
            cluster.members.push(member);
        }
        Ok(cluster)
    }

    /// Waits until every member answers and every group has a leader.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            self.check_running()?;
            let Err(last) = self.ready().await else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                bail!(
                    "the {} cluster in {} was not ready within {READY_WITHIN:?}: {last}; see the logs there",
                    self.kind,
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn ready(&self) -> Result<(), String> {
        if self.kind == "etcd" {
            for endpoint in &self.endpoints {
                let channel = Endpoint::from_shared(format!("http://{endpoint}"))
                    .map_err(|e| e.to_string())?
                    .connect_timeout(Duration::from_secs(1))
                    .timeout(Duration::from_secs(2))
                    .connect_lazy();
                // A linearizable read needs a leader and a quorum.
                EtcdKvClient::new(channel)
                    .range(etcd_pb::RangeRequest {
                        key: Bytes::from_static(b"bench-ready"),
                        ..Default::default()
                    })
                    .await
                    .map_err(|s| format!("{endpoint}: {}", s.message()))?;
            }
            return Ok(());
        }
        let client = Client::new(
            &self.endpoints,
            ClientOptions {
                timeout: Duration::from_secs(2),
                attempt_timeout: Duration::from_secs(1),
                ..ClientOptions::default()
            },
        )
        .map_err(|e| e.to_string())?;
        let statuses = client.status_all().await;
        let mut led = vec![false; self.groups as usize];
        for (endpoint, status) in &statuses {
            let status = status.as_ref().map_err(|e| format!("{endpoint}: {e}"))?;
            if !status.ready {
                return Err(format!(
                    "{endpoint} is not ready: {}",
                    status.not_ready.join("; ")
                ));
            }
            for (g, group) in status.groups.iter().enumerate() {
                if group.leader != 0
                    && let Some(l) = led.get_mut(g)
                {
                    *l = true;
                }
            }
        }
        match led.iter().position(|l| !l) {
            Some(g) => Err(format!("group {g} has no leader yet")),
            None => Ok(()),
        }
    }

    /// Fails if a member has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        for m in &mut self.members {
            if let Ok(Some(status)) = m.child.try_wait() {
                bail!(
                    "{} member {} exited ({status}); its log: {}",
                    self.kind,
                    m.name,
                    m.log.display()
                );
            }
        }
        Ok(())
    }

    /// Process ids of the members, for the record.
    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().map(|m| m.child.id()).collect()
    }

    /// SIGTERM to every member, SIGKILL to those still running after the
    /// grace period.
    pub async fn stop(mut self) {
        for m in &self.members {
            signal(&m.child, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        for m in &mut self.members {
            loop {
                match m.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = m.child.kill();
                        let _ = m.child.wait();
                        break;
                    }
                    Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        self.members.clear();
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Ok(None) = m.child.try_wait() {
                let _ = m.child.kill();
                let _ = m.child.wait();
            }
        }
    }
}

/// Starts `command` with its output in `log`, in a process group of its
/// own (a Ctrl-C reaches the comparison, which stops the members in
/// order), killed by the kernel if the starting thread goes away.
fn spawn(mut command: Command, name: &str, log: &Path) -> anyhow::Result<Member> {
    use std::os::unix::process::CommandExt;
    let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork
    // and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    Ok(Member {
        name: name.to_string(),
        child,
        log: log.to_path_buf(),
    })
}

fn signal(child: &Child, signal: i32) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

fn refuse_if_taken(ip: Ipv4Addr, port: u16, what: &str) -> anyhow::Result<()> {
    let addr = SocketAddr::from((ip, port));
    if let Err(e) = TcpListener::bind(addr) {
        bail!(
            "port {port} ({what}) on {ip} is taken: {e}; is another comparison running? \
             pick other ports with --base-port"
        );
    }
    Ok(())
}
