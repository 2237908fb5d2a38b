//! `raft local`: a whole cluster on this machine, for development.
//!
//! The replicas are child processes (`raft serve`) on loopback, one port
//! each. Everything lives under `--dir`:
//!
//! ```text
//! <dir>/raft.json          the cluster's configuration (client commands find it)
//! <dir>/<name>/data/       the replica's write-ahead log and snapshots
//! <dir>/<name>/raft.log    what the replica logged
//! <dir>/<name>/raft.pid    its process id while it runs
//! <dir>/tls/               with --tls: ca.crt, <name>.crt/.key per replica, admin.crt/.key
//! ```
//!
//! With `--tls` (on a new `--dir`) a CA is made and every replica gets a
//! certificate for its address (and `localhost` and its name), handed to it
//! through `RAFT_TLS_CERT` and `RAFT_TLS_KEY`, as the operator does in a
//! pod. The `tls` section of `raft.json` names the CA and an admin client
//! certificate (CN `admin`), so client commands run from the directory
//! speak TLS with the admin role.
//!
//! Each replica runs with `<dir>/<name>` as its working directory, so the
//! relative `data_dir` of the shared configuration lands inside it. Run again
//! on the same `--dir`, the same cluster comes back with its data. Once every
//! group has had a leader, the configuration is rewritten with
//! `initial_cluster_state: existing`, as the operator does: a replica whose
//! data directory is later deleted then waits to be added back instead of
//! bootstrapping a second cluster.
//!
//! Nothing is restarted behind the user's back: a replica that exits is
//! reported (with its log) and left alone. Ctrl-C (or SIGTERM) stops every
//! replica with SIGTERM, so leaders hand over and logs are flushed, and
//! SIGKILLs any that has not exited after a grace period.

use crate::config::{self, Peer, Sources};
use crate::security::ClientSecurity;
use crate::security::issue::{Authority, Usage};
use anyhow::{Context as _, bail};
use clap::Args;
use kuberaft_proto::admin::admin_client::AdminClient;
use kuberaft_proto::admin::{self as admin_pb, NodeStatus, Role};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Names of the replicas, in order (the original program's).
const NAMES: [&str; 9] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
];
/// How long a replica may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(500);

#[derive(Args, Debug, Clone)]
pub struct LocalArgs {
    /// Replicas in the cluster, 1 to 9 (default 3; an existing --dir keeps its own).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=9))]
    pub replicas: Option<u8>,
    /// Raft groups the keys are spread over (default 1; an existing --dir keeps its own).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub groups: Option<u32>,
    /// Where the configuration, data, logs and pid files live.
    #[arg(long, default_value = "./raft-local")]
    pub dir: PathBuf,
    /// The first replica's gRPC port; the others take the following ones,
    /// and metrics are served 1000 ports higher.
    #[arg(long, default_value_t = 3264)]
    pub port: u16,
    /// The loopback address the replicas listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: IpAddr,
    /// Make a CA and certificates and run the cluster with TLS (mutual
    /// between replicas; an admin client certificate for the CLI).
    #[arg(long)]
    pub tls: bool,
}

/// One replica of the local cluster.
struct Replica {
    peer: Peer,
    dir: PathBuf,
    child: Option<Child>,
    /// How it ended, once it has.
    exit: Option<String>,
    channel: Channel,
}

impl Replica {
    fn log_path(&self) -> PathBuf {
        self.dir.join("raft.log")
    }
    fn pid_path(&self) -> PathBuf {
        self.dir.join("raft.pid")
    }
}

/// Runs the local cluster until Ctrl-C.
pub async fn run(args: LocalArgs) -> anyhow::Result<()> {
    fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = fs::canonicalize(&args.dir)
        .with_context(|| format!("cannot resolve {}", args.dir.display()))?;
    let config_path = dir.join("raft.json");
    let created = !config_path.exists();
    let tls_dir = dir.join("tls");
    if created {
        if args.tls {
            make_certificates(&tls_dir, &args)?;
        }
        write_config(&config_path, &args, args.tls.then_some(tls_dir.as_path()))?;
    }
    let tls = tls_dir.join("ca.crt").is_file();
    if args.tls && !tls {
        bail!(
            "{} holds a cluster without TLS: a cluster cannot switch to TLS here; use another --dir \
             for a new TLS cluster",
            dir.display()
        );
    }
    let security = if tls {
        ClientSecurity::from_files(
            Some(&tls_dir.join("ca.crt")),
            Some(&tls_dir.join("admin.crt")),
            Some(&tls_dir.join("admin.key")),
            None,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?
    } else {
        ClientSecurity::default()
    };
    let sources = Sources {
        path: Some(config_path.clone()),
        ..Sources::default()
    };
    let (_, peers) = config::load_peers(&sources)?;
    check_matches(&config_path, &peers, &args)?;
    let groups = configured_groups(&config_path)?;

    let mut replicas = Vec::new();
    for peer in peers.values() {
        let rdir = dir.join(&peer.name);
        fs::create_dir_all(&rdir).with_context(|| format!("cannot create {}", rdir.display()))?;
        let channel = security
            .endpoint(&peer.endpoint())
            .map_err(|e| anyhow::anyhow!("{}: {e}", peer.name))?
            .connect_timeout(Duration::from_millis(300))
            .timeout(Duration::from_millis(500))
            .connect_lazy();
        replicas.push(Replica {
            peer: peer.clone(),
            dir: rdir,
            child: None,
            exit: None,
            channel,
        });
    }
    for r in &replicas {
        refuse_if_running(r)?;
        refuse_if_port_taken(r)?;
    }
    let exe = std::env::current_exe().context("cannot find the raft program itself")?;
    for r in &mut replicas {
        let tls = tls.then_some(tls_dir.as_path());
        r.child = Some(spawn(&exe, &config_path, r, tls)?);
    }
    print_summary(&dir, &config_path, &replicas, groups, created);

    let outcome = watch(&mut replicas, &config_path).await;
    stop_all(&mut replicas).await;
    println!("raft local: stopped; the data stays in {}", dir.display());
    outcome
}

/// A CA, a certificate per replica (its IP, `localhost` and its name) and
/// an admin client certificate, into `dir`.
fn make_certificates(dir: &Path, args: &LocalArgs) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ca = Authority::new("kuberaft local CA").context("cannot make a CA")?;
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write("ca.crt", ca.cert_pem())?;
    for name in NAMES.iter().take(usize::from(args.replicas.unwrap_or(3))) {
        let names = vec![
            args.ip.to_string(),
            "localhost".to_string(),
            (*name).to_string(),
        ];
        let issued = ca
            .issue(name, &names, Usage::Replica)
            .with_context(|| format!("cannot make the certificate of {name}"))?;
        write(&format!("{name}.crt"), &issued.cert_pem)?;
        write(&format!("{name}.key"), &issued.key_pem)?;
    }
    let admin = ca
        .issue("admin", &["admin".to_string()], Usage::Client)
        .context("cannot make the admin certificate")?;
    write("admin.crt", &admin.cert_pem)?;
    write("admin.key", &admin.key_pem)?;
    Ok(())
}

/// The configuration of a new local cluster (with the `tls` section of
/// the client commands when `tls` holds the certificates).
fn write_config(path: &Path, args: &LocalArgs, tls: Option<&Path>) -> anyhow::Result<()> {
    let replicas = args.replicas.unwrap_or(3);
    let last_port = u32::from(args.port) + u32::from(replicas) - 1;
    if last_port + u32::from(config::METRICS_PORT_OFFSET) > u32::from(u16::MAX) {
        bail!(
            "--port {} leaves no room for {replicas} replicas and their metrics ports (port + {}); pick a lower one",
            args.port,
            config::METRICS_PORT_OFFSET
        );
    }
    let peers: Vec<serde_json::Value> = (0..replicas)
        .map(|i| {
            serde_json::json!({
                "pid": u64::from(i) + 1,
                "name": NAMES[usize::from(i)],
                "ip_address": args.ip.to_string(),
                "port": args.port + u16::from(i),
            })
        })
        .collect();
    let config = serde_json::json!({
        "cluster_id": format!("local-{:08x}", crate::client::random_client_id() as u32),
        "initial_cluster_state": "new",
        "groups": args.groups.unwrap_or(1),
        "data_dir": "data",
        "tick": "100ms",
        "timeout": "1s",
        "aggregate": true,
        "log_level": 3,
        "peers": peers,
    });
    let mut config = config;
    if let (Some(dir), Some(map)) = (tls, config.as_object_mut()) {
        // The replicas get their own certificate through RAFT_TLS_CERT and
        // RAFT_TLS_KEY; these are what client commands present.
        map.insert(
            "tls".into(),
            serde_json::json!({
                "cert": dir.join("admin.crt"),
                "key": dir.join("admin.key"),
                "ca": dir.join("ca.crt"),
            }),
        );
    }
    write_json(path, &config)
}

/// Writes `value` to `path` atomically (temporary file, then rename).
fn write_json(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn read_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

fn configured_groups(path: &Path) -> anyhow::Result<u64> {
    Ok(read_json(path)?
        .get("groups")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1))
}

/// An existing directory keeps its cluster: refuse flags that contradict it.
fn check_matches(
    path: &Path,
    peers: &BTreeMap<crate::raft::NodeId, Peer>,
    args: &LocalArgs,
) -> anyhow::Result<()> {
    if let Some(n) = args.replicas
        && usize::from(n) != peers.len()
    {
        bail!(
            "{} describes a cluster of {} replicas, not {n}: run without --replicas to bring it back, \
             change its membership with `raft member add|remove`, or use another --dir for a new cluster",
            path.display(),
            peers.len()
        );
    }
    if let Some(g) = args.groups {
        let have = configured_groups(path)?;
        if u64::from(g) != have {
            bail!(
                "{} describes a cluster of {have} groups, not {g}: the number of groups of a cluster \
                 cannot change; run without --groups, or use another --dir for a new cluster",
                path.display()
            );
        }
    }
    Ok(())
}

fn refuse_if_running(r: &Replica) -> anyhow::Result<()> {
    let path = r.pid_path();
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(());
    };
    if let Ok(pid) = text.trim().parse::<i32>()
        && process_alive(pid)
    {
        bail!(
            "replica {} is still running (pid {pid}, from an earlier `raft local` on this directory); \
             stop it first (kill {pid}) or use another --dir",
            r.peer.name
        );
    }
    // Left behind by a run that was killed: nothing runs under that pid.
    let _ = fs::remove_file(&path);
    Ok(())
}

/// Whether `pid` is a live `raft` process.
fn process_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    let exists = pid > 0 && unsafe { libc::kill(pid, 0) } == 0;
    exists
        && fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains("raft"))
            .unwrap_or(true)
}

fn refuse_if_port_taken(r: &Replica) -> anyhow::Result<()> {
    let Some(grpc) = r.peer.socket_addr() else {
        return Ok(());
    };
    let metrics = SocketAddr::new(grpc.ip(), r.peer.metrics_port);
    for (addr, what) in [(grpc, "gRPC"), (metrics, "metrics")] {
        if let Err(e) = TcpListener::bind(addr) {
            bail!(
                "replica {} cannot use {addr} for {what}: {e}; another cluster may be running there \
                 (pick other ports with --port on a new --dir)",
                r.peer.name
            );
        }
    }
    Ok(())
}

fn spawn(exe: &Path, config: &Path, r: &Replica, tls: Option<&Path>) -> anyhow::Result<Child> {
    use std::os::unix::process::CommandExt;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(r.log_path())
        .with_context(|| format!("cannot open {}", r.log_path().display()))?;
    let mut command = Command::new(exe);
    if let Some(dir) = tls {
        command
            .env("RAFT_TLS_CERT", dir.join(format!("{}.crt", r.peer.name)))
            .env("RAFT_TLS_KEY", dir.join(format!("{}.key", r.peer.name)));
    }
    let child = command
        .arg("serve")
        .arg("-c")
        .arg(config)
        .arg("-n")
        .arg(&r.peer.name)
        .current_dir(&r.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: Ctrl-C in the terminal reaches only us,
        // and we stop the replicas in order.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start replica {}", r.peer.name))?;
    let mut pid_file = File::create(r.pid_path())
        .with_context(|| format!("cannot write {}", r.pid_path().display()))?;
    writeln!(pid_file, "{}", child.id())?;
    Ok(child)
}

fn print_summary(dir: &Path, config: &Path, replicas: &[Replica], groups: u64, created: bool) {
    let verb = if created {
        "started a new"
    } else {
        "restarted the"
    };
    println!(
        "raft local: {verb} {}-replica cluster ({groups} group{}) in {}",
        replicas.len(),
        if groups == 1 { "" } else { "s" },
        dir.display()
    );
    println!("  configuration  {}", config.display());
    for r in replicas {
        println!(
            "  {:<8} grpc {:<21} metrics http://{}:{}/metrics  log {}  pid {}",
            r.peer.name,
            r.peer.endpoint(),
            r.peer.host(),
            r.peer.metrics_port,
            r.log_path().display(),
            r.child.as_ref().map_or(0, Child::id),
        );
    }
    let raft = program_name();
    println!(
        "Try: cd {} && {raft} put hello world && {raft} get hello && {raft} status",
        dir.display()
    );
    println!(
        "     (or from anywhere: {raft} -c {} status)",
        config.display()
    );
    println!(
        "Ctrl-C stops the cluster; run the same command again to bring it back with its data."
    );
}

/// How the user can call this program: `raft` if that is what their PATH
/// finds, else its full path (e.g. when started by `cargo run`).
fn program_name() -> String {
    let Ok(me) = std::env::current_exe().and_then(fs::canonicalize) else {
        return "raft".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|dir| fs::canonicalize(dir.join("raft")).is_ok_and(|p| p == me))
    });
    if on_path {
        "raft".into()
    } else {
        me.display().to_string()
    }
}

/// Shows a live status line until Ctrl-C, SIGTERM, or every replica exited.
async fn watch(replicas: &mut [Replica], config: &Path) -> anyhow::Result<()> {
    let tty = std::io::stdout().is_terminal();
    let mut last_line = String::new();
    let mut marked_existing = initial_state(config)? == "existing";
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let started = Instant::now();
    loop {
        for r in replicas.iter_mut() {
            if let (Some(child), None) = (r.child.as_mut(), &r.exit)
                && let Ok(Some(status)) = child.try_wait()
            {
                let how = describe_exit(status);
                if tty {
                    println!();
                }
                println!(
                    "raft local: replica {} {how}; it is not restarted. Its log: {}",
                    r.peer.name,
                    r.log_path().display()
                );
                let _ = fs::remove_file(r.pid_path());
                r.exit = Some(how);
                last_line.clear();
            }
        }
        if replicas.iter().all(|r| r.exit.is_some()) {
            bail!("every replica exited; see their logs");
        }
        let statuses = poll(replicas).await;
        if !marked_existing && every_group_has_led(&statuses) {
            mark_existing(config)?;
            marked_existing = true;
        }
        let line = status_line(replicas, &statuses);
        if tty {
            let up = started.elapsed().as_secs();
            print!("\r\x1b[2K{line} | up {up}s");
            let _ = std::io::stdout().flush();
        } else if line != last_line {
            // Not a terminal (a file, a pipe): one line per change.
            println!("{line}");
        }
        last_line = line;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    if tty {
        println!();
    }
    Ok(())
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "exited".to_string(),
    }
}

fn initial_state(config: &Path) -> anyhow::Result<String> {
    Ok(read_json(config)?
        .get("initial_cluster_state")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("new")
        .to_string())
}

fn mark_existing(config: &Path) -> anyhow::Result<()> {
    let mut value = read_json(config)?;
    value["initial_cluster_state"] = "existing".into();
    write_json(config, &value)
}

async fn poll(replicas: &[Replica]) -> Vec<Option<NodeStatus>> {
    let calls: Vec<_> = replicas
        .iter()
        .map(|r| {
            let channel = r.channel.clone();
            let running = r.exit.is_none();
            tokio::spawn(async move {
                if !running {
                    return None;
                }
                AdminClient::new(channel)
                    .status(admin_pb::StatusRequest {})
                    .await
                    .ok()
                    .map(tonic::Response::into_inner)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(calls.len());
    for call in calls {
        out.push(call.await.ok().flatten());
    }
    out
}

fn every_group_has_led(statuses: &[Option<NodeStatus>]) -> bool {
    let Some(groups) = statuses.iter().flatten().map(|s| s.groups.len()).max() else {
        return false;
    };
    groups > 0
        && (0..groups).all(|g| {
            statuses
                .iter()
                .flatten()
                .any(|s| s.groups.get(g).is_some_and(|g| g.leader != 0))
        })
}

/// `leader alpha · term 3 · commit 120 | alpha ● leader bravo ● follower charlie ✗ exited`
/// (● ready, ◌ not ready, ○ not answering yet).
fn status_line(replicas: &[Replica], statuses: &[Option<NodeStatus>]) -> String {
    let group0 = |s: &NodeStatus| s.groups.first().cloned();
    let leader = statuses
        .iter()
        .flatten()
        .filter_map(|s| group0(s).map(|g| (s, g)))
        .find(|(_, g)| g.role == Role::Leader as i32);
    let mut line = match &leader {
        Some((s, g)) => format!(
            "leader {} · term {} · commit {}",
            s.name, g.term, g.commit_index
        ),
        None => "no leader yet".to_string(),
    };
    line.push_str(" |");
    for (r, s) in replicas.iter().zip(statuses) {
        let state = match (&r.exit, s) {
            (Some(_), _) => "✗ exited".to_string(),
            (None, None) => "○ starting".to_string(),
            (None, Some(s)) => {
                let role = group0(s).map_or("-", |g| super::output::role_name(g.role));
                let mark = if s.ready { "●" } else { "◌" };
                format!("{mark} {role}")
            }
        };
        line.push_str(&format!(" {} {state}", r.peer.name));
    }
    line
}

/// SIGTERM to every running replica; SIGKILL after the grace period.
async fn stop_all(replicas: &mut [Replica]) {
    for r in replicas.iter() {
        if let (Some(child), None) = (&r.child, &r.exit) {
            // SAFETY: sending a signal to our own child's pid.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    for r in replicas.iter_mut() {
        let Some(child) = r.child.as_mut() else {
            continue;
        };
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    println!(
                        "raft local: replica {} did not stop within {STOP_GRACE:?}; killing it",
                        r.peer.name
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let _ = fs::remove_file(r.pid_path());
    }
}
