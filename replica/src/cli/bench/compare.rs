//! `raft bench compare`: kuberaft and etcd side by side, on this machine,
//! in one run, measured by the same load generator.
//!
//! It starts a 3-member etcd cluster and a 3-replica kuberaft cluster on
//! loopback (default settings, fsync on), then for each workload runs
//! kuberaft and etcd in turn, round after round (A B A B ...), so that
//! whatever else the machine is doing hits both. Each run has the same
//! duration, warm-up, key space, value size, seed and connection layout
//! for both systems. It prints, per workload, the medians over the rounds
//! of throughput, p50 and p99 for each system and the ratios
//! kuberaft/etcd, and writes every run (`runs.csv`, `runs.jsonl`) and the
//! summary (`summary.md`, `summary.csv`) into `--out`. The 64-group
//! workload runs against a second kuberaft cluster of 64 groups (started
//! after the first is stopped) and etcd's one group.

use super::clusters::LocalCluster;
use super::options::{Format, Mode, Plan, Stop};
use super::output::{Row, csv_rows};
use super::target::TargetKind;
use super::workload::{ReadConsistency, Workload as Mix};
use crate::cli::commands::parse_duration;
use anyhow::{Context as _, bail};
use clap::Args;
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A workload of the comparison.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Workload {
    pub name: &'static str,
    pub what: &'static str,
    pub clients: u32,
    pub read_percent: u8,
    /// Groups of the kuberaft cluster it runs on (etcd always has one).
    pub kuberaft_groups: u32,
}

/// The workloads of issue 7, in the order they run.
pub const WORKLOADS: [Workload; 6] = [
    Workload {
        name: "write-1",
        what: "writes, 1 client",
        clients: 1,
        read_percent: 0,
        kuberaft_groups: 1,
    },
    Workload {
        name: "write-16",
        what: "writes, 16 clients",
        clients: 16,
        read_percent: 0,
        kuberaft_groups: 1,
    },
    Workload {
        name: "write-64",
        what: "writes, 64 clients",
        clients: 64,
        read_percent: 0,
        kuberaft_groups: 1,
    },
    Workload {
        name: "write-256",
        what: "writes, 256 clients",
        clients: 256,
        read_percent: 0,
        kuberaft_groups: 1,
    },
    Workload {
        name: "mixed-64",
        what: "90% linearizable reads, 10% writes, 64 clients",
        clients: 64,
        read_percent: 90,
        kuberaft_groups: 1,
    },
    Workload {
        name: "groups-64",
        what: "writes, 256 clients; kuberaft with 64 groups, etcd with its one",
        clients: 256,
        read_percent: 0,
        kuberaft_groups: 64,
    },
];

#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// Rounds per workload; each round runs kuberaft, then etcd.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// How long each run sends requests.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub duration: Duration,
    /// Unmeasured load before each run.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub warmup: Duration,
    /// The workloads to run, comma-separated (default: all): write-1,
    /// write-16, write-64, write-256, mixed-64, groups-64.
    #[arg(long, value_delimiter = ',')]
    pub workloads: Vec<String>,
    /// Where results, the clusters' logs and (while running) their data go.
    #[arg(long, default_value = "./bench-compare")]
    pub out: PathBuf,
    /// The etcd program.
    #[arg(long, default_value = "etcd")]
    pub etcd: PathBuf,
    /// The first loopback port used; the clusters take ports up to 32
    /// above it (and kuberaft's metrics 1000 above those).
    #[arg(long, default_value_t = 24000)]
    pub base_port: u16,
    /// The loopback address every member listens on (any of 127.0.0.0/8).
    #[arg(long, default_value = "127.0.0.1")]
    pub ip: std::net::Ipv4Addr,
    /// Keys the workloads draw from.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Bytes per written value.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Keep the clusters' data directories (default: removed at the end,
    /// logs kept).
    #[arg(long)]
    pub keep_data: bool,
    /// A tag put in front of every row's label (the machine, the commit).
    #[arg(long, default_value = "")]
    pub label: String,
}

/// The workloads `names` selects (all if empty), in their running order.
pub fn select(names: &[String]) -> Result<Vec<Workload>, String> {
    let known = || {
        WORKLOADS
            .iter()
            .map(|w| w.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    for n in names {
        if !WORKLOADS.iter().any(|w| w.name == n) {
            return Err(format!(
                "no workload named {n:?}; the workloads are {}",
                known()
            ));
        }
    }
    Ok(WORKLOADS
        .iter()
        .filter(|w| names.is_empty() || names.iter().any(|n| n == w.name))
        .copied()
        .collect())
}

fn check(args: &CompareArgs) -> Result<Vec<Workload>, String> {
    if args.rounds == 0 || args.rounds > 100 {
        return Err(format!(
            "--rounds {} : give 1 to 100 rounds (3 or more for a median that means something)",
            args.rounds
        ));
    }
    if args.duration.is_zero() || args.duration > super::options::MAX_DURATION {
        return Err(format!(
            "--duration {:?}: give more than 0 and at most {:?} per run",
            args.duration,
            super::options::MAX_DURATION
        ));
    }
    if args.warmup > super::options::MAX_DURATION {
        return Err(format!("--warmup {:?} is too long", args.warmup));
    }
    if !args.ip.is_loopback() {
        return Err(format!(
            "--ip {}: the clusters run on loopback only; give an address of 127.0.0.0/8",
            args.ip
        ));
    }
    if args.keys == 0 {
        return Err("--keys must be at least 1".into());
    }
    if args.value_size > crate::kv::limits::MAX_VALUE_BYTES {
        return Err(format!(
            "--value-size {} is more than kuberaft's largest value",
            args.value_size
        ));
    }
    if u32::from(args.base_port) + 32 + u32::from(crate::config::METRICS_PORT_OFFSET)
        > u32::from(u16::MAX)
        || args.base_port < 1024
    {
        return Err(format!(
            "--base-port {}: give a port from 1024 to {} so that every cluster's ports fit",
            args.base_port,
            u16::MAX - 32 - crate::config::METRICS_PORT_OFFSET
        ));
    }
    select(&args.workloads)
}

/// The path of `program`: as given if it has a `/`, else found on PATH.
fn find_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Medians over the rounds of one system on one workload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Medians {
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub runs: usize,
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

pub fn medians(rows: &[Row]) -> Medians {
    Medians {
        throughput: median(rows.iter().map(|r| r.throughput_ops).collect()),
        p50_ms: median(rows.iter().map(|r| r.p50_ms).collect()),
        p99_ms: median(rows.iter().map(|r| r.p99_ms).collect()),
        errors: rows.iter().map(|r| r.errors).sum(),
        runs: rows.len(),
    }
}

/// One workload's outcome.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub workload: Workload,
    pub kuberaft: Medians,
    pub etcd: Medians,
    /// The 1-minute load average when the workload started.
    pub load_before: String,
}

/// The goals of issue 7, checked against the outcomes (a goal whose
/// workloads did not run is reported as not measured).
pub fn goals(outcomes: &[Outcome]) -> Vec<String> {
    let find = |name: &str| outcomes.iter().find(|o| o.workload.name == name);
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    let mut out = Vec::new();
    match find("write-64") {
        Some(o) => {
            let ratio = o.kuberaft.throughput / o.etcd.throughput;
            out.push(format!(
                "write throughput at 64 clients >= 3x etcd's: {} ({ratio:.2}x: {:.0} vs {:.0} ops/s)",
                verdict(ratio >= 3.0),
                o.kuberaft.throughput,
                o.etcd.throughput
            ));
            out.push(format!(
                "p99 at 64 clients no worse than etcd's: {} ({:.2} vs {:.2} ms)",
                verdict(o.kuberaft.p99_ms <= o.etcd.p99_ms),
                o.kuberaft.p99_ms,
                o.etcd.p99_ms
            ));
        }
        None => out.push("64 clients: not measured (workload write-64 not run)".into()),
    }
    match find("write-1") {
        Some(o) => out.push(format!(
            "median latency at 1 client no worse than etcd's: {} ({:.2} vs {:.2} ms)",
            verdict(o.kuberaft.p50_ms <= o.etcd.p50_ms),
            o.kuberaft.p50_ms,
            o.etcd.p50_ms
        )),
        None => out.push("1 client: not measured (workload write-1 not run)".into()),
    }
    match (find("groups-64"), find("write-256")) {
        (Some(g), Some(one)) => {
            let ratio = g.kuberaft.throughput / one.kuberaft.throughput;
            out.push(format!(
                "64 groups >= 2x one group (256 clients): {} ({ratio:.2}x: {:.0} vs {:.0} ops/s)",
                verdict(ratio >= 2.0),
                g.kuberaft.throughput,
                one.kuberaft.throughput
            ));
        }
        _ => out.push(
            "64 groups vs one group: not measured (needs workloads groups-64 and write-256)".into(),
        ),
    }
    out
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

/// The summary as a markdown table, with the goals below it.
pub fn summary_markdown(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| workload | kuberaft ops/s | etcd ops/s | ratio | kuberaft p50 ms | etcd p50 ms | ratio | kuberaft p99 ms | etcd p99 ms | ratio | errors k/e | load |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for o in outcomes {
        let (k, e) = (&o.kuberaft, &o.etcd);
        let _ = writeln!(
            out,
            "| {} ({}) | {:.0} | {:.0} | {} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {} | {}/{} | {} |",
            o.workload.name,
            o.workload.what,
            k.throughput,
            e.throughput,
            ratio(k.throughput, e.throughput),
            k.p50_ms,
            e.p50_ms,
            ratio(k.p50_ms, e.p50_ms),
            k.p99_ms,
            e.p99_ms,
            ratio(k.p99_ms, e.p99_ms),
            k.errors,
            e.errors,
            o.load_before,
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Medians over {} round(s); ratios are kuberaft/etcd (throughput: higher is better for kuberaft; latency: lower is). Load: the 1-minute load average when the workload started.",
        outcomes.first().map_or(0, |o| o.kuberaft.runs)
    );
    let _ = writeln!(out);
    for g in goals(outcomes) {
        let _ = writeln!(out, "- {g}");
    }
    out
}

/// The summary as CSV, one line per workload.
pub fn summary_csv(outcomes: &[Outcome]) -> String {
    let mut out = String::from(
        "workload,clients,read_percent,kuberaft_groups,rounds,kuberaft_throughput_ops,etcd_throughput_ops,throughput_ratio,kuberaft_p50_ms,etcd_p50_ms,p50_ratio,kuberaft_p99_ms,etcd_p99_ms,p99_ratio,kuberaft_errors,etcd_errors\n",
    );
    for o in outcomes {
        let (k, e) = (&o.kuberaft, &o.etcd);
        let _ = writeln!(
            out,
            "{},{},{},{},{},{:.1},{:.1},{},{:.3},{:.3},{},{:.3},{:.3},{},{},{}",
            o.workload.name,
            o.workload.clients,
            o.workload.read_percent,
            o.workload.kuberaft_groups,
            k.runs,
            k.throughput,
            e.throughput,
            ratio(k.throughput, e.throughput),
            k.p50_ms,
            e.p50_ms,
            ratio(k.p50_ms, e.p50_ms),
            k.p99_ms,
            e.p99_ms,
            ratio(k.p99_ms, e.p99_ms),
            k.errors,
            e.errors
        );
    }
    out
}

/// What the machine is, for the record.
pub fn machine() -> String {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |s| s.trim().to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or("?".into(), |kb| {
            format!("{:.1} GiB", kb as f64 / 1024.0 / 1024.0)
        });
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
    format!("{cores} cores ({cpu}), {mem} RAM, Linux {kernel}")
}

/// The load averages (1, 5, 15 minutes).
pub fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// The filesystem `dir` is on (device, type), from /proc/mounts.
fn filesystem(dir: &Path) -> String {
    let Ok(dir) = fs::canonicalize(dir) else {
        return "?".into();
    };
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && dir.starts_with(f[1])).then(|| {
                (
                    f[1].len(),
                    format!("{} ({}) mounted on {}", f[0], f[2], f[1]),
                )
            })
        })
        .max_by_key(|(len, _)| *len)
        .map_or("?".into(), |(_, s)| s)
}

fn program_version(program: &Path) -> String {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown version".into())
}

/// Runs the comparison.
pub async fn run(args: CompareArgs) -> anyhow::Result<()> {
    let workloads = check(&args).map_err(anyhow::Error::msg)?;
    let Some(etcd) = find_program(&args.etcd) else {
        bail!(
            "etcd not found ({}): install it (Debian: apt-get install etcd-server) or pass --etcd PATH",
            args.etcd.display()
        );
    };
    let raft = std::env::current_exe().context("cannot find the raft program itself")?;
    fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let out = fs::canonicalize(&args.out)?;
    if out.join("runs.csv").exists() || out.join("data").exists() {
        bail!(
            "{} already holds a comparison (runs.csv or data/); give another --out or remove it",
            out.display()
        );
    }
    let data = out.join("data");
    let header = format!(
        "raft bench compare: raft {} against {} on {}\n\
         data on {}; each run {:?} after {:?} of warm-up, {} round(s); load average at start {}\n",
        env!("CARGO_PKG_VERSION"),
        program_version(&etcd),
        machine(),
        {
            fs::create_dir_all(&data)?;
            filesystem(&data)
        },
        args.duration,
        args.warmup,
        args.rounds,
        load_average(),
    );
    print!("{header}");
    let runs = RunFiles::create(&out)?;

    let body = compare(&args, &workloads, &etcd, &raft, &data, &runs);
    let outcomes = tokio::select! {
        r = body => r?,
        _ = tokio::signal::ctrl_c() => {
            bail!("interrupted: the clusters were stopped; the runs so far are in {}", runs.csv.display());
        }
    };
    let load_after = load_average();
    let markdown = summary_markdown(&outcomes);
    let summary = format!("{header}\n{markdown}\nLoad average at the end: {load_after}\n");
    fs::write(out.join("summary.md"), &summary)?;
    fs::write(out.join("summary.csv"), summary_csv(&outcomes))?;
    println!("\n{markdown}\nLoad average at the end: {load_after}");
    if !args.keep_data {
        remove_data(&data);
    }
    println!(
        "Every run: {}; summary: {}",
        runs.csv.display(),
        out.join("summary.md").display()
    );
    Ok(())
}

/// Where each run's row is appended as soon as it is measured, so an
/// interrupted comparison keeps what it measured.
struct RunFiles {
    csv: PathBuf,
    jsonl: PathBuf,
}

impl RunFiles {
    fn create(out: &Path) -> anyhow::Result<RunFiles> {
        let files = RunFiles {
            csv: out.join("runs.csv"),
            jsonl: out.join("runs.jsonl"),
        };
        fs::write(&files.jsonl, "")?;
        fs::write(&files.csv, "")?;
        Ok(files)
    }

    fn append(&self, row: &Row, first: bool) -> anyhow::Result<()> {
        let mut csv = OpenOptions::new().append(true).open(&self.csv)?;
        csv.write_all(csv_rows(std::slice::from_ref(row), first).as_bytes())?;
        let mut jsonl = OpenOptions::new().append(true).open(&self.jsonl)?;
        writeln!(jsonl, "{}", serde_json::to_string(row)?)?;
        Ok(())
    }
}

async fn compare(
    args: &CompareArgs,
    workloads: &[Workload],
    etcd_program: &Path,
    raft: &Path,
    data: &Path,
    runs: &RunFiles,
) -> anyhow::Result<Vec<Outcome>> {
    let mut etcd =
        LocalCluster::start_etcd(etcd_program, &data.join("etcd"), args.ip, args.base_port)?;
    etcd.wait_ready().await?;
    println!(
        "etcd cluster up: {} (pids {:?})",
        etcd.endpoints.join(","),
        etcd.pids()
    );
    let mut kuberaft: Option<LocalCluster> = None;
    let mut outcomes = Vec::new();
    let mut first_row = true;
    for w in workloads {
        if kuberaft.as_ref().map(|k| k.groups) != Some(w.kuberaft_groups) {
            if let Some(k) = kuberaft.take() {
                k.stop().await;
            }
            let port = args.base_port + if w.kuberaft_groups == 1 { 20 } else { 30 };
            let dir = data.join(format!("kuberaft-{}", w.kuberaft_groups));
            let mut k = LocalCluster::start_kuberaft(raft, &dir, args.ip, port, w.kuberaft_groups)?;
            k.wait_ready().await?;
            println!(
                "kuberaft cluster up: {} ({} group{}, pids {:?})",
                k.endpoints.join(","),
                k.groups,
                if k.groups == 1 { "" } else { "s" },
                k.pids()
            );
            kuberaft = Some(k);
        }
        let k = kuberaft.as_mut().expect("started above");
        let load_before = load_average()
            .split_whitespace()
            .next()
            .unwrap_or("?")
            .to_string();
        let mut rows_k = Vec::new();
        let mut rows_e = Vec::new();
        for round in 1..=args.rounds {
            // The same seed for both systems within a round: the same keys
            // in the same order.
            let seed = seed_of(w.name, round);
            for (cluster, rows) in [(&mut *k, &mut rows_k), (&mut etcd, &mut rows_e)] {
                cluster.check_running()?;
                let plan = plan_for(args, w, cluster, round, seed);
                let measured = super::measure(&plan, &cluster.endpoints).await?;
                let row = measured.row;
                println!(
                    "[{} {round}/{}] {:<8} {:>8.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
                    w.name,
                    args.rounds,
                    row.target,
                    row.throughput_ops,
                    row.p50_ms,
                    row.p99_ms,
                    row.errors
                );
                runs.append(&row, first_row)?;
                first_row = false;
                rows.push(row);
            }
        }
        outcomes.push(Outcome {
            workload: *w,
            kuberaft: medians(&rows_k),
            etcd: medians(&rows_e),
            load_before,
        });
    }
    if let Some(k) = kuberaft.take() {
        k.stop().await;
    }
    etcd.stop().await;
    Ok(outcomes)
}

fn plan_for(
    args: &CompareArgs,
    w: &Workload,
    cluster: &LocalCluster,
    round: u32,
    seed: u64,
) -> Plan {
    let target = if cluster.kind == "etcd" {
        TargetKind::Etcd
    } else {
        TargetKind::Kuberaft
    };
    let label = if args.label.is_empty() {
        format!("{} round {round}", w.name)
    } else {
        format!("{} {} round {round}", args.label, w.name)
    };
    Plan {
        target,
        mode: Mode::Simple,
        clients: w.clients,
        conns: w.clients.min(super::options::DEFAULT_MAX_CONNS),
        stop: Stop::Duration(args.duration),
        workload: Mix {
            keys: args.keys,
            value_size: args.value_size,
            read_percent: w.read_percent,
            reads: ReadConsistency::Linearizable,
        },
        groups: Some(cluster.groups),
        // Reads should find values: fill the key space before the first
        // round of a workload that reads.
        prefill: w.read_percent > 0 && round == 1,
        warmup: args.warmup,
        timeout: Duration::from_secs(10),
        seed,
        format: Format::Human,
        header: false,
        plot: None,
        label,
    }
}

/// A seed that depends only on the workload and the round.
fn seed_of(name: &str, round: u32) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) ^ u64::from(round)
}

/// Removes the clusters' data directories, keeping their logs.
fn remove_data(data: &Path) {
    let Ok(clusters) = fs::read_dir(data) else {
        return;
    };
    for cluster in clusters.flatten() {
        let Ok(members) = fs::read_dir(cluster.path()) else {
            continue;
        };
        for member in members.flatten() {
            let path = member.path();
            if !path.is_dir() {
                continue;
            }
            // etcd: the member directory is its data directory;
            // kuberaft: the replica's directory holds `data/` and its log.
            let target = if path.join("data").is_dir() {
                path.join("data")
            } else if path.join("member").is_dir() {
                path.clone()
            } else {
                continue;
            };
            let _ = fs::remove_dir_all(target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(throughput: f64, p50_ms: f64, p99_ms: f64) -> Medians {
        Medians {
            throughput,
            p50_ms,
            p99_ms,
            errors: 0,
            runs: 3,
        }
    }

    fn outcome(name: &str, k: Medians, e: Medians) -> Outcome {
        Outcome {
            workload: *WORKLOADS.iter().find(|w| w.name == name).unwrap(),
            kuberaft: k,
            etcd: e,
            load_before: "1.00".into(),
        }
    }

    #[test]
    fn medians_are_the_middle_of_the_rounds() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn workloads_are_selected_by_name_in_running_order() {
        let all = select(&[]).unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(all[0].name, "write-1");
        let two = select(&["mixed-64".into(), "write-1".into()]).unwrap();
        assert_eq!(
            two.iter().map(|w| w.name).collect::<Vec<_>>(),
            ["write-1", "mixed-64"]
        );
        let e = select(&["write-2".into()]).unwrap_err();
        assert!(e.contains("write-2") && e.contains("groups-64"), "{e}");
    }

    #[test]
    fn the_goals_are_judged_from_the_medians() {
        let outcomes = [
            outcome("write-1", m(300.0, 3.0, 5.0), m(250.0, 4.0, 6.0)),
            outcome("write-64", m(9000.0, 5.0, 12.0), m(4000.0, 15.0, 10.0)),
            outcome("write-256", m(10000.0, 20.0, 40.0), m(5000.0, 50.0, 90.0)),
            outcome("groups-64", m(25000.0, 10.0, 20.0), m(5000.0, 50.0, 90.0)),
        ];
        let g = goals(&outcomes);
        assert!(
            g[0].starts_with("write throughput at 64 clients >= 3x etcd's: MISSED (2.25x"),
            "{g:?}"
        );
        assert!(g[1].contains("MISSED (12.00 vs 10.00 ms)"), "{g:?}");
        assert!(g[2].contains(": met (3.00 vs 4.00 ms)"), "{g:?}");
        assert!(g[3].contains(": met (2.50x"), "{g:?}");
        let g = goals(&outcomes[..1]);
        assert!(
            g[0].contains("not measured") && g[2].contains("not measured"),
            "{g:?}"
        );
    }

    #[test]
    fn the_summary_has_one_line_per_workload_with_ratios() {
        let outcomes = [
            outcome("write-64", m(9000.0, 5.0, 12.0), m(3000.0, 15.0, 24.0)),
            outcome("mixed-64", m(8000.0, 1.0, 2.0), m(0.0, 0.0, 0.0)),
        ];
        let md = summary_markdown(&outcomes);
        let line = md.lines().find(|l| l.starts_with("| write-64")).unwrap();
        assert!(line.contains("| 9000 | 3000 | 3.00 |"), "{line}");
        assert!(line.contains("| 12.00 | 24.00 | 0.50 |"), "{line}");
        assert!(
            md.lines()
                .any(|l| l.starts_with("| mixed-64") && l.contains("| - |"))
        );
        let csv = summary_csv(&outcomes);
        assert_eq!(csv.lines().count(), 3);
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .starts_with("write-64,64,0,1,3,9000.0,3000.0,3.00,")
        );
    }

    #[test]
    fn nonsense_options_are_refused() {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrap {
            #[command(flatten)]
            args: CompareArgs,
        }
        let parse = |line: &[&str]| {
            let mut argv = vec!["compare"];
            argv.extend_from_slice(line);
            check(&Wrap::try_parse_from(argv).unwrap().args)
        };
        assert_eq!(parse(&[]).unwrap().len(), 6);
        assert!(parse(&["--rounds", "0"]).unwrap_err().contains("1 to 100"));
        assert!(
            parse(&["--duration", "0s"])
                .unwrap_err()
                .contains("more than 0")
        );
        assert!(
            parse(&["--base-port", "65000"])
                .unwrap_err()
                .contains("--base-port")
        );
        assert!(
            parse(&["--workloads", "nope"])
                .unwrap_err()
                .contains("no workload")
        );
        assert!(
            parse(&["--ip", "10.0.0.1"])
                .unwrap_err()
                .contains("loopback")
        );
    }

    #[test]
    fn seeds_differ_by_workload_and_round_only() {
        assert_eq!(seed_of("write-1", 1), seed_of("write-1", 1));
        assert_ne!(seed_of("write-1", 1), seed_of("write-1", 2));
        assert_ne!(seed_of("write-1", 1), seed_of("write-16", 1));
    }
}
