//! `raft bench`: throughput and latency of a kuberaft cluster, or of an
//! etcd cluster through etcd's own v3 gRPC API, measured by the same load
//! generator; and `raft bench compare`, both side by side on this machine.
//!
//! A run: connect (every client writes once, unmeasured: connections and
//! write sessions exist before the clock starts), optionally fill the key
//! space (`--prefill`) and warm up (`--warmup`), then measure (see [`run`]
//! for what is timed) and report one row (see [`output`]).
//!
//! - [`options`]: the options and their checks;
//! - [`workload`]: keys, values, read/write mix;
//! - [`target`]: kuberaft's client and an etcd client behind one trait;
//! - [`run`]: simple and blast modes;
//! - [`stats`]: the histogram and the per-second series;
//! - [`output`], [`plot`], [`progress`]: the table, CSV/JSON rows, the SVG
//!   and the progress bar;
//! - [`clusters`], [`compare`]: local etcd and kuberaft clusters and the
//!   side-by-side comparison.

pub mod clusters;
pub mod compare;
pub mod options;
pub mod output;
pub mod plot;
pub mod progress;
pub mod run;
pub mod stats;
pub mod target;
pub mod workload;

use super::commands::{self, Target as Endpoints};
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use options::{Plan, RunArgs, Stop};
use output::Row;
use progress::{Goal, Progress};
use stats::Summary;
use std::sync::Arc;
use target::{Target, TargetKind};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Start a 3-member etcd and a 3-replica kuberaft cluster on loopback
    /// and compare them, workload by workload, round after round.
    Compare(compare::CompareArgs),
}

/// Runs `raft bench` (or `raft bench compare`).
pub async fn command(endpoints: Endpoints, args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        Some(BenchCommand::Compare(c)) => compare::run(c).await,
        None => bench(endpoints, args.run).await,
    }
}

async fn bench(given: Endpoints, args: RunArgs) -> anyhow::Result<()> {
    let plan = options::plan(&args, given.timeout).map_err(anyhow::Error::msg)?;
    let endpoints = match plan.target {
        TargetKind::Kuberaft => commands::endpoints(&given)?,
        TargetKind::Etcd => {
            if given.config.is_some() {
                bail!(
                    "-c/--config describes a kuberaft cluster; for --target etcd give etcd's \
                     client URLs with --endpoints (e.g. --endpoints 127.0.0.1:2379)"
                );
            }
            if given.endpoints.is_empty() {
                bail!(
                    "--target etcd needs the etcd members' client addresses: --endpoints \
                     HOST:PORT[,HOST:PORT...] (e.g. 127.0.0.1:2379)"
                );
            }
            given.endpoints.clone()
        }
    };
    let measured = measure(&plan, &endpoints).await?;
    print!(
        "{}",
        output::render(&measured.row, &measured.summary, plan.format, plan.header)
    );
    if let Some(path) = &plan.plot {
        let title = format!(
            "{} {} {}x{}",
            measured.row.target, measured.row.mode, measured.row.clients, measured.row.value_size
        );
        let svg = plot::svg(&title, &measured.summary).map_err(anyhow::Error::msg)?;
        std::fs::write(path, svg)
            .with_context(|| format!("cannot write the plot to {}", path.display()))?;
    }
    Ok(())
}

/// A measured run.
pub struct Measured {
    pub row: Row,
    pub summary: Summary,
}

/// Connects, prepares and measures one run of `plan` against `endpoints`.
pub async fn measure(plan: &Plan, endpoints: &[String]) -> anyhow::Result<Measured> {
    match plan.target {
        TargetKind::Kuberaft => {
            let targets =
                target::kuberaft_clients(endpoints, plan.clients, plan.conns, plan.timeout)?;
            let groups = targets[0].groups().await.with_context(|| {
                format!(
                    "cannot reach the kuberaft cluster at {}",
                    endpoints.join(",")
                )
            })?;
            drive(plan, endpoints, &targets, groups).await
        }
        TargetKind::Etcd => {
            let targets = target::etcd_clients(endpoints, plan.clients, plan.conns, plan.timeout)?;
            drive(plan, endpoints, &targets, 1).await
        }
    }
}

async fn drive<T: Target>(
    plan: &Plan,
    endpoints: &[String],
    targets: &[Arc<T>],
    groups: u32,
) -> anyhow::Result<Measured> {
    if let Some(want) = plan.groups
        && want != groups
    {
        bail!(
            "the cluster at {} has {groups} group(s), not --groups {want}: a cluster's groups are \
             fixed when it is created (e.g. `raft local --groups {want}` on a new --dir); drop \
             --groups to measure it as it is",
            endpoints.join(",")
        );
    }
    let keys = plan.workload.keys;
    let size = plan.workload.value_size;
    let n = targets.len();
    let p = Progress::start("connecting", Goal::Requests(n as u64), true);
    let (errors, message) = run::write_keys(
        targets,
        |i| vec![i as u64 % keys],
        size,
        plan.timeout,
        p.counter(),
    )
    .await;
    p.finish();
    if errors > 0 {
        bail!(
            "{errors} of the {n} clients' first writes to {} failed ({}); is the cluster up and \
             healthy (`raft status`)?",
            endpoints.join(","),
            message.unwrap_or_default()
        );
    }
    if plan.prefill {
        let p = Progress::start("prefill", Goal::Requests(keys), true);
        let (errors, message) = run::write_keys(
            targets,
            |i| (i as u64..keys).step_by(n).collect(),
            size,
            plan.timeout,
            p.counter(),
        )
        .await;
        p.finish();
        if errors > 0 {
            bail!(
                "{errors} of the {keys} --prefill writes failed ({})",
                message.unwrap_or_default()
            );
        }
    }
    let load = run::Load {
        mode: plan.mode,
        stop: plan.stop,
        workload: plan.workload.clone(),
        seed: plan.seed,
        timeout: plan.timeout,
    };
    if !plan.warmup.is_zero() {
        let warm = run::Load {
            stop: Stop::Duration(plan.warmup),
            seed: plan.seed.rotate_left(17),
            ..load.clone()
        };
        let p = Progress::start("warm-up", Goal::Time(plan.warmup), true);
        run::run(targets, &warm, p.counter()).await;
        p.finish();
    }
    let goal = match plan.total_requests() {
        Some(n) => Goal::Requests(n),
        None => match plan.stop {
            Stop::Duration(d) => Goal::Time(d),
            Stop::Requests(n) => Goal::Requests(n),
        },
    };
    let what = format!("{} {}", plan.target.name(), plan.mode.name());
    let p = Progress::start(&what, goal, true);
    let summary = run::run(targets, &load, p.counter()).await;
    p.finish();
    Ok(Measured {
        row: Row::new(plan, endpoints, groups, &summary),
        summary,
    })
}
