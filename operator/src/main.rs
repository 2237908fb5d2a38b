//! `raft-operator`: the kuberaft Kubernetes operator.
//!
//! `raft-operator crd` prints the RaftCluster CRD; `raft-operator run` (the
//! default) serves `/metrics` and `/healthz`, waits for the leader lease,
//! and reconciles RaftClusters while it holds it. Losing the lease ends the
//! process (Kubernetes restarts it as a standby), so two instances never
//! reconcile at once.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kuberaft_operator::admin::GrpcAdmin;
use kuberaft_operator::controller::{self, Context};
use kuberaft_operator::http::{HttpState, now_secs, router};
use kuberaft_operator::lease::LeaseLock;
use kuberaft_operator::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tracing::{error, info, warn};

#[derive(Parser, Debug)]
#[command(
    name = "raft-operator",
    version,
    about = "The kuberaft Kubernetes operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the RaftCluster CustomResourceDefinition as YAML.
    Crd,
    /// Run the operator (the default).
    Run(RunArgs),
}

#[derive(clap::Args, Debug, Clone)]
struct RunArgs {
    /// Where `/metrics` and `/healthz` listen.
    #[arg(long, env = "OPERATOR_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    metrics_address: SocketAddr,
    /// The namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "kuberaft-system")]
    lease_namespace: String,
    #[arg(long, default_value = "kuberaft-operator")]
    lease_name: String,
    /// This instance's name in the Lease (its pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Reconcile without a Lease (a single instance, e.g. on a laptop).
    #[arg(long)]
    no_leader_election: bool,
}

/// `raft-operator` without a subcommand: `run` with its defaults (and
/// environment).
#[derive(Parser, Debug)]
struct RunDefaults {
    #[command(flatten)]
    args: RunArgs,
}

const LEASE_DURATION: Duration = Duration::from_secs(15);
const RENEW_EVERY: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => {
            print!("{}", kuberaft_operator::crd::crd_yaml());
            Ok(())
        }
        Some(Command::Run(args)) => run(args).await,
        None => run(RunDefaults::parse_from(["raft-operator"]).args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let metrics = Metrics::new();
    let heartbeat = Arc::new(AtomicU64::new(now_secs()));
    let state = HttpState {
        metrics: metrics.clone(),
        heartbeat: heartbeat.clone(),
        stall_after: LEASE_DURATION * 2,
    };
    let listener = tokio::net::TcpListener::bind(args.metrics_address)
        .await
        .with_context(|| format!("cannot listen on {} for /metrics", args.metrics_address))?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(state)).await {
            error!(error = %e, "the metrics server stopped");
        }
    });

    let client = kube::Client::try_default().await.context(
        "cannot reach the Kubernetes API: run in a pod with a service account, or set KUBECONFIG",
    )?;
    let admin = Arc::new(GrpcAdmin::new(
        Duration::from_secs(3),
        Duration::from_secs(30),
    ));
    let ctx = Arc::new(Context::new(client.clone(), admin, metrics.clone()));

    if args.no_leader_election {
        metrics.is_leader.set(1);
        let beat = heartbeat.clone();
        tokio::spawn(async move {
            loop {
                beat.store(now_secs(), Ordering::Relaxed);
                tokio::time::sleep(RENEW_EVERY).await;
            }
        });
        controller::run(ctx).await;
        return Ok(());
    }

    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("raft-operator-{}", std::process::id()));
    let lock = LeaseLock::new(
        client,
        &args.lease_namespace,
        &args.lease_name,
        &identity,
        LEASE_DURATION,
    );
    info!(identity, "waiting for the leader lease");
    loop {
        heartbeat.store(now_secs(), Ordering::Relaxed);
        match lock.try_acquire().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => warn!(error = %e, "lease"),
        }
        tokio::time::sleep(RENEW_EVERY).await;
    }
    info!(identity, "holding the leader lease: reconciling");
    metrics.is_leader.set(1);
    let controller = tokio::spawn(controller::run(ctx));
    let mut last_renewed = std::time::Instant::now();
    let outcome = loop {
        tokio::select! {
            _ = tokio::time::sleep(RENEW_EVERY) => {}
            _ = tokio::signal::ctrl_c() => break Ok(()),
        }
        if controller.is_finished() {
            break Ok(());
        }
        heartbeat.store(now_secs(), Ordering::Relaxed);
        match lock.try_acquire().await {
            Ok(true) => last_renewed = std::time::Instant::now(),
            Ok(false) => break Err(anyhow::anyhow!("another instance took the leader lease")),
            Err(e) => {
                warn!(error = %e, "could not renew the lease");
                // Stop before the lease can expire and a standby takes over.
                if last_renewed.elapsed() > LEASE_DURATION - RENEW_EVERY {
                    break Err(anyhow::anyhow!(
                        "could not renew the leader lease in time: {e}"
                    ));
                }
            }
        }
    };
    metrics.is_leader.set(0);
    controller.abort();
    if let Err(e) = lock.release().await {
        warn!(error = %e, "could not release the lease");
    }
    outcome
}
