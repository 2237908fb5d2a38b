//! The commands of `raft` and what each does.
//!
//! Exit status: 0 success; 1 an error (the message says what and how to
//! fix it); 2 bad usage; 3 `cas` did not swap because the current value
//! differs; 4 the cluster did not answer within the timeout (no quorum, no
//! replica reachable); 5 `get` found no such key.
//!
//! Client commands find the cluster from `--endpoints`, else from the peers
//! of the configuration (`-c FILE`, else `./raft.*`, `~/.raft.*`,
//! `/etc/raft.*`): run from the directory of `raft local` they need nothing.

use super::bench::{self, BenchArgs};
use super::local::{self, LocalArgs};
use super::logging;
use super::output::status_table;
use super::serve::{self, ServeOptions};
use crate::client::{Client, ClientError, ClientOptions};
use crate::config::{self, ConfigError, LogFormat, LogLevel, Sources};
use crate::security::ClientSecurity;
use clap::{Args, Parser, Subcommand};
use kuberaft_proto::admin as admin_pb;
use kuberaft_proto::kv::Consistency;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

pub const EXIT_ERROR: u8 = 1;
pub const EXIT_CAS_MISMATCH: u8 = 3;
pub const EXIT_UNAVAILABLE: u8 = 4;
pub const EXIT_NOT_FOUND: u8 = 5;

#[derive(Parser, Debug)]
#[command(
    name = "raft",
    version,
    about = "kuberaft: a Raft-replicated, strongly consistent key-value store",
    long_about = None
)]
pub struct Cli {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub command: Command,
}

/// Where client commands send their requests.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The configuration file (JSON, TOML or YAML). Default: the first of
    /// ./raft.{json,toml,yaml,yml}, ~/.raft.*, /etc/raft.*.
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Replicas to talk to, as host:port[,host:port...].
    #[arg(long, global = true, env = "RAFT_ENDPOINTS", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// How long a command may take, retries included (e.g. 5s, 500ms).
    #[arg(long, global = true, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The CA bundle that signed the replicas' certificates: speak TLS
    /// (default: the configuration's tls.ca).
    #[arg(long, global = true, env = "RAFT_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// A client certificate to present (with --key-file), e.g. one with the admin role.
    #[arg(long, global = true, env = "RAFT_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert. (Not `--key`: `raft commit --key` is the
    /// original program's key to write.)
    #[arg(
        long = "key-file",
        id = "tls_key",
        global = true,
        env = "RAFT_KEY",
        value_name = "FILE"
    )]
    pub key: Option<PathBuf>,
    /// A file holding the admin bearer token (the replicas' admin_token_file).
    #[arg(long, global = true, env = "RAFT_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a replica until SIGTERM or Ctrl-C (a leader hands over first).
    Serve {
        /// This replica's name, one of the peers' names (overrides `name`
        /// in the file and RAFT_NAME).
        #[arg(short = 'n', long)]
        name: Option<String>,
    },
    /// Run a whole cluster on this machine (loopback), as child processes.
    Local(LocalArgs),
    /// Write a value.
    Put { key: String, value: String },
    /// Write a value (the original program's spelling of `put`).
    Commit {
        #[arg(short, long)]
        key: String,
        #[arg(short, long)]
        value: String,
    },
    /// Print a key's value alone on stdout (exit status 5 if there is none).
    Get {
        key: String,
        /// Read the local replica's state: faster, possibly stale.
        #[arg(long)]
        serializable: bool,
    },
    /// Delete a key.
    Delete { key: String },
    /// Set KEY to NEW if its value is EXPECTED (exit status 3 if it is not):
    /// `raft cas KEY EXPECTED NEW`, or `raft cas --absent KEY NEW`.
    Cas {
        key: String,
        /// EXPECTED NEW, or just NEW with --absent.
        #[arg(num_args = 1..=2, required = true, value_names = ["EXPECTED", "NEW"])]
        values: Vec<String>,
        /// Swap only if the key does not exist.
        #[arg(long)]
        absent: bool,
    },
    /// List keys starting with PREFIX, as `key<TAB>value` lines.
    Scan {
        prefix: String,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[arg(long)]
        serializable: bool,
    },
    /// Members, roles, terms, commit and applied index per group.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change the cluster's membership.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Move leadership to another replica.
    TransferLeader {
        /// The new leader (node id or name); default: the most up-to-date voter.
        #[arg(long)]
        to: Option<String>,
        /// Only this group; default: every group led by the replica asked.
        #[arg(long)]
        group: Option<u64>,
    },
    /// Measure throughput and latency of a kuberaft (or etcd) cluster;
    /// `raft bench compare` runs both side by side on this machine.
    Bench(Box<BenchArgs>),
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Add a replica as a learner of every group.
    Add {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        name: String,
        /// host:port of its peer listener.
        #[arg(long)]
        address: String,
        /// host:port of its client listener (default: the peer address).
        #[arg(long)]
        client_address: Option<String>,
    },
    /// Promote a caught-up learner to voter in every group.
    Promote { id: u64 },
    /// Remove a replica from every group (and from the member directory).
    Remove { id: u64 },
    /// Record a member's new address in the member directory.
    Update {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        name: String,
        /// host:port of its gRPC listener.
        #[arg(long)]
        address: String,
    },
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 300ms, 5s, 1m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("invalid duration unit in {s:?}: use ms, s or m")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    let Cli { target, command } = cli;
    match command {
        Command::Serve { name } => serve_command(target.config, name).await,
        Command::Local(args) => {
            logging::init(LogLevel::Info, LogFormat::Text);
            match local::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("raft local: {e:#}");
                    ExitCode::from(EXIT_ERROR)
                }
            }
        }
        Command::Bench(args) => {
            logging::init(LogLevel::Warn, LogFormat::Text);
            match bench::command(target, *args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("raft bench: {e:#}");
                    ExitCode::from(EXIT_ERROR)
                }
            }
        }
        command => {
            logging::init(LogLevel::Warn, LogFormat::Text);
            match execute(target, command).await {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    eprintln!("raft: {e}");
                    ExitCode::from(match e {
                        ClientError::Unavailable { .. } => EXIT_UNAVAILABLE,
                        _ => EXIT_ERROR,
                    })
                }
            }
        }
    }
}

/// `raft serve`: load the configuration, set up logging, serve.
async fn serve_command(path: Option<PathBuf>, name: Option<String>) -> ExitCode {
    let loaded = match config::load(&Sources::from_process(path, name)) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("raft serve: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let c = &loaded.config;
    logging::init(c.log_level, c.log_format);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    tracing::info!(config = %loaded.path.display(), name = %c.name, "configuration loaded");
    match serve::serve(ServeOptions::from_config(c)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("raft serve: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The replicas client commands talk to: `--endpoints`, else the peers of
/// the configuration.
pub fn endpoints(target: &Target) -> Result<Vec<String>, ClientError> {
    if !target.endpoints.is_empty() {
        return Ok(target.endpoints.clone());
    }
    Ok(cluster_file(target)?
        .map(|view| view.peers.values().map(config::Peer::endpoint).collect())
        .unwrap_or_default())
}

/// The cluster's configuration file, when client commands read it: when
/// no `--endpoints` are given, or `-c` is.
fn cluster_file(target: &Target) -> Result<Option<config::ClientView>, ClientError> {
    if !target.endpoints.is_empty() && target.config.is_none() {
        return Ok(None);
    }
    let sources = Sources::from_process(target.config.clone(), None);
    match config::load_client(&sources) {
        Ok(view) => Ok(Some(view)),
        Err(ConfigError::NotFound { .. }) if target.config.is_none() => Err(ClientError::Rejected(
            "no cluster to talk to: pass --endpoints HOST:PORT[,HOST:PORT...], or -c FILE \
                 with the cluster's configuration, or run from a directory that holds raft.json \
                 (such as the --dir of `raft local`)"
                .into(),
        )),
        Err(e) => Err(ClientError::Rejected(format!(
            "cannot find the cluster's replicas: {e}"
        ))),
    }
}

/// TLS and token of client commands: the flags, else the configuration's
/// `tls` section and `admin_token_file`.
pub fn security(target: &Target) -> Result<ClientSecurity, ClientError> {
    let file = if target.cacert.is_some() {
        None
    } else {
        cluster_file(target)?
    };
    let from_file = |f: fn(&config::ClientView) -> Option<PathBuf>| file.as_ref().and_then(f);
    let cacert = target
        .cacert
        .clone()
        .or_else(|| from_file(|v| v.ca.clone()));
    let (cert, key) = match (&target.cert, &target.key) {
        (None, None) => (from_file(|v| v.cert.clone()), from_file(|v| v.key.clone())),
        (cert, key) => (cert.clone(), key.clone()),
    };
    let token_file = target
        .token_file
        .clone()
        .or_else(|| from_file(|v| v.admin_token_file.clone()));
    ClientSecurity::from_files(
        cacert.as_deref(),
        cert.as_deref(),
        key.as_deref(),
        token_file.as_deref(),
    )
    .map_err(ClientError::Rejected)
}

fn client(target: &Target, endpoints: &[String]) -> Result<Client, ClientError> {
    let options = ClientOptions {
        timeout: target.timeout,
        attempt_timeout: target.timeout.min(Duration::from_secs(3)),
        security: security(target)?,
        ..ClientOptions::default()
    };
    Client::new(endpoints, options)
}

fn consistency(serializable: bool) -> Consistency {
    if serializable {
        Consistency::Serializable
    } else {
        Consistency::Linearizable
    }
}

async fn execute(target: Target, command: Command) -> Result<u8, ClientError> {
    let endpoints = endpoints(&target)?;
    let c = client(&target, &endpoints)?;
    let mut stdout = std::io::stdout().lock();
    match command {
        Command::Serve { .. } | Command::Local(_) | Command::Bench(_) => {
            unreachable!("run() handles the server commands")
        }
        Command::Put { key, value } | Command::Commit { key, value } => {
            c.put(key.as_bytes(), value.as_bytes()).await?;
        }
        Command::Get { key, serializable } => {
            let r = c.get(key.as_bytes(), consistency(serializable)).await?;
            if !r.found {
                eprintln!("raft: key {key:?} not found");
                return Ok(EXIT_NOT_FOUND);
            }
            let _ = stdout.write_all(&r.value);
            let _ = stdout.write_all(b"\n");
        }
        Command::Delete { key } => {
            let r = c.delete(key.as_bytes()).await?;
            if !r.deleted {
                eprintln!("raft: key {key:?} did not exist");
            }
        }
        Command::Cas {
            key,
            values,
            absent,
        } => {
            let (expected, new) = match (absent, values.as_slice()) {
                (false, [expected, new]) => (Some(expected.clone()), new.clone()),
                (true, [new]) => (None, new.clone()),
                (false, _) => {
                    return Err(ClientError::Rejected(
                        "usage: raft cas KEY EXPECTED NEW (or raft cas --absent KEY NEW to swap only if the key does not exist)"
                            .into(),
                    ));
                }
                (true, _) => {
                    return Err(ClientError::Rejected(
                        "with --absent give only the new value: raft cas --absent KEY NEW".into(),
                    ));
                }
            };
            let r = c
                .compare_and_swap(
                    key.as_bytes(),
                    expected.as_deref().map(str::as_bytes),
                    new.as_bytes(),
                )
                .await?;
            if !r.swapped {
                match r.current {
                    Some(v) => eprintln!(
                        "raft: not swapped: the current value is {:?}",
                        String::from_utf8_lossy(&v)
                    ),
                    None => eprintln!("raft: not swapped: the key does not exist"),
                }
                return Ok(EXIT_CAS_MISMATCH);
            }
        }
        Command::Scan {
            prefix,
            limit,
            serializable,
        } => {
            let r = c
                .scan(prefix.as_bytes(), limit, b"", consistency(serializable))
                .await?;
            for kv in &r.pairs {
                let _ = stdout.write_all(&kv.key);
                let _ = stdout.write_all(b"\t");
                let _ = stdout.write_all(&kv.value);
                let _ = stdout.write_all(b"\n");
            }
            if r.more {
                eprintln!("raft: more keys follow; raise --limit to see them");
            }
        }
        Command::Status { json } => {
            let statuses = c.status_all().await;
            if statuses.iter().all(|(_, s)| s.is_err()) {
                let last = statuses
                    .last()
                    .map(|(e, s)| format!("{e}: {}", s.as_ref().err().cloned().unwrap_or_default()))
                    .unwrap_or_default();
                return Err(ClientError::Unavailable {
                    timeout: target.timeout,
                    endpoints: endpoints.join(","),
                    last,
                });
            }
            if json {
                let value: Vec<serde_json::Value> = statuses
                    .iter()
                    .map(|(endpoint, s)| match s {
                        Ok(s) => {
                            serde_json::json!({"endpoint": endpoint, "status": status_json(s)})
                        }
                        Err(e) => serde_json::json!({"endpoint": endpoint, "error": e}),
                    })
                    .collect();
                let _ = writeln!(
                    stdout,
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                );
            } else {
                let _ = write!(stdout, "{}", status_table(&statuses));
            }
        }
        Command::Member(m) => member(&c, m, &mut stdout).await?,
        Command::TransferLeader { to, group } => {
            let to = match to {
                None => 0,
                Some(to) => match to.parse::<u64>() {
                    Ok(id) => id,
                    Err(_) => member_id_by_name(&c, &to).await?,
                },
            };
            let req = admin_pb::TransferLeaderRequest { group, to };
            let r = c
                .admin_call(|ch| async move {
                    admin_pb::admin_client::AdminClient::new(ch)
                        .transfer_leader(req)
                        .await
                        .map(|r| r.into_inner())
                })
                .await?;
            if r.new_leaders.is_empty() {
                let _ = writeln!(
                    stdout,
                    "the replica asked leads no group: nothing to transfer (name a group with \
                     --group G to move its leadership wherever it is)"
                );
            }
            let mut moved: Vec<_> = r.new_leaders.into_iter().collect();
            moved.sort_unstable();
            for (group, leader) in moved {
                let _ = writeln!(stdout, "group {group}: leader is now node {leader}");
            }
        }
    }
    Ok(0)
}

async fn member(c: &Client, m: MemberCommand, out: &mut impl Write) -> Result<(), ClientError> {
    use admin_pb::admin_client::AdminClient;
    let response = match m {
        MemberCommand::Add {
            id,
            name,
            address,
            client_address,
        } => {
            let req = admin_pb::AddLearnerRequest {
                member: Some(admin_pb::Member {
                    id,
                    name,
                    client_address: client_address.unwrap_or_else(|| address.clone()),
                    address,
                }),
                group: None,
            };
            c.admin_call(|ch| {
                let req = req.clone();
                async move {
                    AdminClient::new(ch)
                        .add_learner(req)
                        .await
                        .map(|r| r.into_inner())
                }
            })
            .await?
        }
        MemberCommand::Promote { id } => {
            c.admin_call(|ch| async move {
                AdminClient::new(ch)
                    .promote(admin_pb::MemberRequest { id, group: None })
                    .await
                    .map(|r| r.into_inner())
            })
            .await?
        }
        MemberCommand::Update { id, name, address } => {
            let req = admin_pb::UpdateMemberRequest {
                member: Some(admin_pb::Member {
                    id,
                    name,
                    client_address: address.clone(),
                    address,
                }),
                remove: false,
                incarnation: 0,
            };
            c.admin_call(|ch| {
                let req = req.clone();
                async move {
                    AdminClient::new(ch)
                        .update_member(req)
                        .await
                        .map(|r| r.into_inner())
                }
            })
            .await?
        }
        MemberCommand::Remove { id } => {
            c.admin_call(|ch| async move {
                AdminClient::new(ch)
                    .remove_member(admin_pb::MemberRequest { id, group: None })
                    .await
                    .map(|r| r.into_inner())
            })
            .await?
        }
    };
    let mut groups: Vec<_> = response.committed.into_iter().collect();
    groups.sort();
    for (group, index) in groups {
        let _ = writeln!(out, "group {group}: committed at index {index}");
    }
    Ok(())
}

/// The node id of the member named `name`, from the member directory of
/// the replicas that answer.
async fn member_id_by_name(c: &Client, name: &str) -> Result<u64, ClientError> {
    let statuses = c.status_all().await;
    let members: Vec<&admin_pb::Member> = statuses
        .iter()
        .filter_map(|(_, s)| s.as_ref().ok())
        .flat_map(|s| &s.members)
        .collect();
    if let Some(m) = members.iter().find(|m| m.name == name) {
        return Ok(m.id);
    }
    let mut known: Vec<String> = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.id))
        .collect();
    known.sort();
    known.dedup();
    Err(ClientError::Rejected(format!(
        "--to {name:?}: no member has that name (members: {}); give a node id or one of these names",
        if known.is_empty() {
            "none answered".to_string()
        } else {
            known.join(", ")
        }
    )))
}

fn status_json(s: &admin_pb::NodeStatus) -> serde_json::Value {
    serde_json::json!({
        "node_id": s.node_id,
        "name": s.name,
        "cluster_id": s.cluster_id,
        "version": s.version,
        "ready": s.ready,
        "not_ready": s.not_ready,
        "members": s.members.iter().map(|m| serde_json::json!({
            "id": m.id, "name": m.name, "address": m.address, "client_address": m.client_address,
        })).collect::<Vec<_>>(),
        "groups": s.groups.iter().map(|g| serde_json::json!({
            "group": g.group,
            "role": super::output::role_name(g.role),
            "term": g.term,
            "leader": g.leader,
            "commit_index": g.commit_index,
            "applied_index": g.applied_index,
            "first_index": g.first_index,
            "last_index": g.last_index,
            "snapshot_index": g.snapshot_index,
            "voters": g.voters,
            "voters_outgoing": g.voters_outgoing,
            "learners": g.learners,
            "state_digest": g.state_digest,
            "progress": g.progress.iter().map(|p| serde_json::json!({
                "node": p.node, "match_index": p.match_index, "next_index": p.next_index,
                "state": p.state, "recent_active": p.recent_active,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_configuration() {
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("5 parsecs").unwrap_err().contains("unit"));
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn the_command_line_parses_as_documented() {
        let cli = Cli::try_parse_from(["raft", "--endpoints", "a:1,b:2", "cas", "k", "old", "new"])
            .unwrap();
        assert_eq!(cli.target.endpoints, vec!["a:1", "b:2"]);
        assert!(
            matches!(&cli.command, Command::Cas { values, absent: false, .. } if values == &["old", "new"])
        );
        let cli = Cli::try_parse_from(["raft", "cas", "--absent", "k", "new"]).unwrap();
        assert!(
            matches!(&cli.command, Command::Cas { values, absent: true, .. } if values == &["new"])
        );
        let cli = Cli::try_parse_from(["raft", "commit", "-k", "x", "-v", "y"]).unwrap();
        assert!(matches!(cli.command, Command::Commit { .. }));
        assert!(Cli::try_parse_from(["raft", "cas", "k", "a", "b", "c"]).is_err());
    }
}
