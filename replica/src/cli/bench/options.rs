//! The options of `raft bench`, and their check into a [`Plan`]: every
//! combination that makes no sense is refused here, with a message saying
//! what to change, before anything connects.

use super::target::TargetKind;
use super::workload::{ReadConsistency, Workload};
use crate::cli::commands::parse_duration;
use crate::kv::limits::MAX_VALUE_BYTES;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Concurrency above this is refused (it would measure the load generator).
pub const MAX_CLIENTS: u64 = 10_000;
/// A run is bounded: at most this long, at most this many requests.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
pub const MAX_REQUESTS: u64 = 100_000_000;
/// Connections opened by default: one per client up to this many.
pub const DEFAULT_MAX_CONNS: u32 = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// C clients, each sending its requests back to back.
    Simple,
    /// Every request in its own task, C of them in flight at once.
    Blast,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Simple => "simple",
            Mode::Blast => "blast",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A readable summary.
    Human,
    /// One CSV row per run (the column names with --header).
    Csv,
    /// One JSON object per run, on one line.
    Json,
}

/// `raft bench`: measure a cluster's throughput and latency.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// What to drive: a kuberaft cluster, or an etcd cluster through etcd's
    /// own v3 gRPC KV API (give its client URLs with --endpoints).
    #[arg(long, value_enum, default_value_t = TargetKind::Kuberaft)]
    pub target: TargetKind,
    #[arg(long, value_enum, default_value_t = Mode::Simple)]
    pub mode: Mode,
    /// simple: concurrent clients (default 16). blast: requests in flight
    /// at once (default: all of --requests, or 256 with --duration).
    #[arg(long)]
    pub clients: Option<u64>,
    /// simple: requests per client (default 1000). blast: requests in all
    /// (default 10000).
    #[arg(short = 'n', long, conflicts_with = "duration")]
    pub requests: Option<u64>,
    /// Send requests for this long (e.g. 10s) instead of a fixed number.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// gRPC connections the clients share (default: one per client, at
    /// most 256).
    #[arg(long)]
    pub conns: Option<u64>,
    /// Bytes per written value.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Keys are drawn uniformly from this many (`bench/0000000000`...).
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Out of 100 requests, how many are reads (the rest are writes).
    #[arg(long, default_value_t = 0)]
    pub read_percent: u8,
    /// Serve reads from the replica asked (kuberaft: serializable reads;
    /// etcd: serializable Range) instead of linearizable ones.
    #[arg(long)]
    pub serializable: bool,
    /// The number of Raft groups the cluster must have (checked, and
    /// written into the row; a kuberaft cluster's groups are fixed when it
    /// is created, e.g. `raft local --groups 64`; etcd has one).
    #[arg(long)]
    pub groups: Option<u32>,
    /// Write every key of the key space once before measuring, so that
    /// reads find values.
    #[arg(long)]
    pub prefill: bool,
    /// Run the workload this long, unmeasured, before measuring.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub warmup: Duration,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// With --format csv: print the column names first.
    #[arg(long)]
    pub header: bool,
    /// Also draw the latency histogram and the throughput over time into
    /// this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// A tag written into the row (the machine, the commit, the workload).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Seed of the keys and of the read/write mix (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// When a run stops sending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// simple: requests per client; blast: requests in all.
    Requests(u64),
    Duration(Duration),
}

/// A checked benchmark run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub target: TargetKind,
    pub mode: Mode,
    /// simple: clients; blast: requests in flight.
    pub clients: u32,
    pub conns: u32,
    pub stop: Stop,
    pub workload: Workload,
    /// The groups the cluster must have, if given.
    pub groups: Option<u32>,
    pub prefill: bool,
    pub warmup: Duration,
    /// Per request, the client's retries included.
    pub timeout: Duration,
    pub seed: u64,
    pub format: Format,
    pub header: bool,
    pub plot: Option<PathBuf>,
    pub label: String,
}

impl Plan {
    /// Requests the run will send, if it is bounded by count.
    pub fn total_requests(&self) -> Option<u64> {
        match (self.stop, self.mode) {
            (Stop::Requests(n), Mode::Simple) => Some(n * u64::from(self.clients)),
            (Stop::Requests(n), Mode::Blast) => Some(n),
            (Stop::Duration(_), _) => None,
        }
    }
}

/// Checks `args` (with the global request `timeout`) into a plan.
pub fn plan(args: &RunArgs, timeout: Duration) -> Result<Plan, String> {
    let stop = match (args.duration, args.requests) {
        (Some(d), _) => {
            if d.is_zero() {
                return Err("--duration must be more than 0 (e.g. --duration 10s)".into());
            }
            if d > MAX_DURATION {
                return Err(format!(
                    "--duration {d:?} is longer than the limit of {MAX_DURATION:?}; run several shorter benchmarks"
                ));
            }
            Stop::Duration(d)
        }
        (None, Some(0)) => {
            return Err("--requests must be at least 1".into());
        }
        (None, Some(n)) => Stop::Requests(n),
        (None, None) => Stop::Requests(match args.mode {
            Mode::Simple => 1000,
            Mode::Blast => 10_000,
        }),
    };
    let clients = match (args.mode, args.clients, stop) {
        (_, Some(0), _) => return Err("--clients must be at least 1".into()),
        (_, Some(c), _) => c,
        (Mode::Simple, None, _) => 16,
        (Mode::Blast, None, Stop::Requests(n)) => {
            if n > MAX_CLIENTS {
                return Err(format!(
                    "--mode blast sends all {n} requests at once by default, more than {MAX_CLIENTS} \
                     in flight; bound what is in flight with --clients (e.g. --clients 1000)"
                ));
            }
            n
        }
        (Mode::Blast, None, Stop::Duration(_)) => 256,
    };
    if clients > MAX_CLIENTS {
        return Err(format!(
            "--clients {clients} is more than {MAX_CLIENTS}: beyond that the load generator, not the \
             cluster, is measured; run several `raft bench` processes instead"
        ));
    }
    if let (Mode::Blast, Stop::Requests(n)) = (args.mode, stop)
        && clients > n
    {
        return Err(format!(
            "--mode blast with --clients {clients} in flight but only --requests {n} in all: \
             lower --clients or raise --requests"
        ));
    }
    if let Stop::Requests(n) = stop {
        let total = match args.mode {
            Mode::Simple => n.saturating_mul(clients),
            Mode::Blast => n,
        };
        if total > MAX_REQUESTS {
            return Err(format!(
                "{total} requests in all is more than the limit of {MAX_REQUESTS}; use --duration \
                 or fewer --requests"
            ));
        }
    }
    let conns = match args.conns {
        Some(0) => return Err("--conns must be at least 1".into()),
        Some(k) if k > clients => {
            return Err(format!(
                "--conns {k} is more than the {clients} clients: a connection without a client \
                 sends nothing; give at most --conns {clients}"
            ));
        }
        Some(k) => k,
        None => clients.min(u64::from(DEFAULT_MAX_CONNS)),
    };
    if args.value_size > MAX_VALUE_BYTES {
        return Err(format!(
            "--value-size {} is more than kuberaft's largest value ({MAX_VALUE_BYTES} bytes)",
            args.value_size
        ));
    }
    if args.keys == 0 {
        return Err("--keys must be at least 1".into());
    }
    if args.read_percent > 100 {
        return Err(format!(
            "--read-percent {} is not a percentage: give 0 (writes only) to 100 (reads only)",
            args.read_percent
        ));
    }
    if args.serializable && args.read_percent == 0 {
        return Err(
            "--serializable applies to reads, and this run has none: add --read-percent (e.g. 90)"
                .into(),
        );
    }
    if args.prefill && args.keys > 10_000_000 {
        return Err(format!(
            "--prefill would write all {} keys first; use at most 10000000 --keys with --prefill",
            args.keys
        ));
    }
    match (args.target, args.groups) {
        (_, Some(0)) => return Err("--groups must be at least 1".into()),
        (TargetKind::Etcd, Some(g)) if g > 1 => {
            return Err(format!(
                "--groups {g} with --target etcd: an etcd cluster is one Raft group; drop --groups"
            ));
        }
        _ => {}
    }
    if args.warmup > MAX_DURATION {
        return Err(format!(
            "--warmup {:?} is longer than the limit of {MAX_DURATION:?}",
            args.warmup
        ));
    }
    if args.header && args.format != Format::Csv {
        return Err("--header goes with --format csv (JSON rows name their fields)".into());
    }
    if let Some(plot) = &args.plot
        && plot.extension().and_then(|e| e.to_str()) != Some("svg")
    {
        return Err(format!(
            "--plot {}: the plot is an SVG file; give a name ending in .svg",
            plot.display()
        ));
    }
    if timeout.is_zero() {
        return Err("--timeout must be more than 0".into());
    }
    Ok(Plan {
        target: args.target,
        mode: args.mode,
        clients: clients as u32,
        conns: conns as u32,
        stop,
        workload: Workload {
            keys: args.keys,
            value_size: args.value_size,
            read_percent: args.read_percent,
            reads: if args.serializable {
                ReadConsistency::Serializable
            } else {
                ReadConsistency::Linearizable
            },
        },
        groups: args.groups,
        prefill: args.prefill,
        warmup: args.warmup,
        timeout,
        seed: args.seed.unwrap_or_else(crate::random::nonzero_u64),
        format: args.format,
        header: args.header,
        plot: args.plot.clone(),
        label: args.label.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: RunArgs,
    }

    fn parse(line: &[&str]) -> Result<Plan, String> {
        let mut argv = vec!["bench"];
        argv.extend_from_slice(line);
        let w = Wrap::try_parse_from(argv).map_err(|e| e.to_string())?;
        plan(&w.args, Duration::from_secs(10))
    }

    #[test]
    fn defaults_are_a_bounded_simple_write_run() {
        let p = parse(&[]).unwrap();
        assert_eq!(p.target, TargetKind::Kuberaft);
        assert_eq!(p.mode, Mode::Simple);
        assert_eq!((p.clients, p.conns), (16, 16));
        assert_eq!(p.stop, Stop::Requests(1000));
        assert_eq!(p.total_requests(), Some(16_000));
        assert_eq!(p.workload.value_size, 256);
        assert_eq!(p.workload.read_percent, 0);
        assert_eq!(p.workload.reads, ReadConsistency::Linearizable);
    }

    #[test]
    fn blast_puts_every_request_in_flight_unless_bounded() {
        let p = parse(&["--mode", "blast", "-n", "500"]).unwrap();
        assert_eq!((p.clients, p.total_requests()), (500, Some(500)));
        let p = parse(&["--mode", "blast", "-n", "500", "--clients", "50"]).unwrap();
        assert_eq!((p.clients, p.total_requests()), (50, Some(500)));
        let p = parse(&["--mode", "blast", "--duration", "2s"]).unwrap();
        assert_eq!(
            (p.clients, p.stop),
            (256, Stop::Duration(Duration::from_secs(2)))
        );
        let e = parse(&["--mode", "blast", "-n", "50000"]).unwrap_err();
        assert!(e.contains("--clients"), "{e}");
        let e = parse(&["--mode", "blast", "-n", "5", "--clients", "6"]).unwrap_err();
        assert!(e.contains("lower --clients"), "{e}");
    }

    #[test]
    fn connections_default_to_one_per_client_up_to_a_bound() {
        assert_eq!(parse(&["--clients", "1000"]).unwrap().conns, 256);
        assert_eq!(parse(&["--clients", "8", "--conns", "2"]).unwrap().conns, 2);
        let e = parse(&["--clients", "8", "--conns", "9"]).unwrap_err();
        assert!(e.contains("at most --conns 8"), "{e}");
    }

    #[test]
    fn nonsense_is_refused_with_what_to_do() {
        for (line, expect) in [
            (&["--clients", "0"][..], "at least 1"),
            (&["--clients", "20000"], "several `raft bench`"),
            (&["-n", "0"], "at least 1"),
            (&["--duration", "0s"], "more than 0"),
            (&["--duration", "61m"], "limit"),
            (&["--read-percent", "101"], "percentage"),
            (&["--serializable"], "--read-percent"),
            (&["--value-size", "2000000"], "largest value"),
            (&["--keys", "0"], "--keys"),
            (&["--format", "json", "--header"], "--format csv"),
            (&["--plot", "out.png"], ".svg"),
            (&["--target", "etcd", "--groups", "4"], "one Raft group"),
            (&["--groups", "0"], "at least 1"),
            (&["--clients", "100000", "-n", "2000"], "more than"),
        ] {
            let e = parse(line).expect_err(&format!("{line:?} must be refused"));
            assert!(e.contains(expect), "{line:?}: {e}");
        }
        let e = parse(&["-n", "5", "--duration", "1s"]).unwrap_err();
        assert!(e.contains("cannot be used with"), "{e}");
    }

    #[test]
    fn a_full_command_line_is_kept_in_the_plan() {
        let p = parse(&[
            "--target",
            "etcd",
            "--mode",
            "simple",
            "--clients",
            "64",
            "--duration",
            "5s",
            "--value-size",
            "128",
            "--keys",
            "5000",
            "--read-percent",
            "90",
            "--serializable",
            "--prefill",
            "--warmup",
            "1s",
            "--format",
            "csv",
            "--header",
            "--plot",
            "x.svg",
            "--label",
            "laptop",
            "--seed",
            "42",
        ])
        .unwrap();
        assert_eq!(p.target, TargetKind::Etcd);
        assert_eq!(p.clients, 64);
        assert_eq!(p.stop, Stop::Duration(Duration::from_secs(5)));
        assert_eq!(p.total_requests(), None);
        assert_eq!(p.workload.reads, ReadConsistency::Serializable);
        assert_eq!(
            (
                p.workload.keys,
                p.workload.value_size,
                p.workload.read_percent
            ),
            (5000, 128, 90)
        );
        assert!(p.prefill && p.header);
        assert_eq!(p.warmup, Duration::from_secs(1));
        assert_eq!(p.seed, 42);
        assert_eq!(p.label, "laptop");
    }
}
