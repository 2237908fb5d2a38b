//! The replica end to end, measured: leader failover after SIGKILL, and
//! write throughput and latency, on a local 3-replica cluster of real
//! processes with the default timeouts and fsync on (the WAL always syncs).
//!
//! `cargo bench -p kuberaft-tests --bench failover` (build the `raft`
//! binary first: `cargo build --release -p kuberaft-replica`).
//!
//! - Failover: a writer writes continuously; the leader of group 0 is
//!   SIGKILLed; the time from the kill to the first acknowledged write
//!   committed by a new leader (a higher term, from the response header) is
//!   one trial. The killed replica is restarted between trials. Printed:
//!   median, p90, max; and, to tell the election from the client, when the
//!   new leader won its election (the time of its own log line). The
//!   trials run twice: with the client as applications use it, and with a
//!   writer that gives up each write after 100 ms and starts the next, which
//!   shows what the client's retry backoff adds.
//! - Throughput: 1 and 64 concurrent clients (one client each) writing
//!   256-byte values for a bounded time: writes per second, p50 and p99.
//!
//! Environment: `KUBERAFT_BENCH_TRIALS` (default 10), `KUBERAFT_BENCH_SECS`
//! (per throughput run, default 10).

use kuberaft_tests::load::{WriteLoad, percentile};
use kuberaft_tests::log_scan;
use kuberaft_tests::wait::{WAIT, group, until};
use kuberaft_tests::{Cluster, ClusterOptions, DataDir};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// One failover: (kill to first new-term ack, kill to the election won).
/// `request_timeout` is the writer's deadline per write: the client's own
/// (30 s, retries with its backoff inside) or a short one, after which the
/// writer simply starts the next write (a client that never backs off long).
async fn failover_trial(
    cluster: &mut Cluster,
    trial: u64,
    request_timeout: Duration,
) -> (Duration, Duration) {
    let leader = cluster.wait_leader(0).await.expect("a leader");
    let ids = cluster.ids();
    cluster.wait_ready(&ids).await.expect("all ready");
    let term = group(&cluster.status(leader).await.expect("status"), 0)
        .expect("group 0")
        .term;
    let load = WriteLoad {
        writers: 1,
        writes_per_writer: 1_000_000,
        duration: Duration::from_secs(60),
        value_len: 256,
        key_prefix: format!("failover-{}-{trial}-", request_timeout.as_millis()),
        request_timeout,
    };
    let running = load.start(|| cluster.client_with_timeout(load.request_timeout));
    until("the writer to get going", WAIT, async || {
        if running.acked_count() >= 20 {
            Ok(())
        } else {
            Err("warming up".to_string())
        }
    })
    .await
    .expect("writes before the kill");

    let killed = Instant::now();
    let killed_wall = SystemTime::now();
    cluster.kill(leader).expect("kill");
    let acked = until("an acknowledged write of the new term", WAIT, async || {
        running
            .first_ack_in_term_after(term)
            .ok_or_else(|| "none yet".to_string())
    })
    .await
    .expect("the new leader acknowledges writes");
    let new_leader = cluster.wait_leader(0).await.expect("the new leader");
    // When it won, by its own log (no polling that would disturb it).
    let log = cluster.replica(new_leader).expect("replica").log();
    let won = log_scan::first_after(
        &log,
        killed_wall,
        &["leader known", "group=0", "role=Leader"],
    )
    .and_then(|t| t.duration_since(killed_wall).ok())
    .expect("the new leader logged its election");
    running.stop().await;

    cluster
        .restart(leader, DataDir::Keep)
        .await
        .expect("the killed replica restarts");
    cluster.wait_converged(&ids, 0).await.expect("converged");
    (acked - killed, won)
}

async fn throughput(cluster: &Cluster, clients: usize, seconds: u64) -> String {
    let load = WriteLoad {
        writers: clients,
        writes_per_writer: 10_000_000,
        duration: Duration::from_secs(seconds),
        value_len: 256,
        key_prefix: format!("tp{clients}-"),
        request_timeout: Duration::from_secs(30),
    };
    let report = load
        .run(|| cluster.client_with_timeout(load.request_timeout))
        .await;
    let lat = report.latencies();
    let failed = report.indeterminate().count();
    format!(
        "| {clients} | {} | {:.0} | {} | {} | {failed} |",
        report.acked().count(),
        report.throughput(),
        ms(percentile(&lat, 0.50)),
        ms(percentile(&lat, 0.99)),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; a filter other than ours skips us.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "failover".contains(a.as_str())) {
        return;
    }
    let trials = env_number("KUBERAFT_BENCH_TRIALS", 10).max(1);
    let seconds = env_number("KUBERAFT_BENCH_SECS", 10).max(1);
    let mut cluster = Cluster::start("bench-failover", ClusterOptions::default())
        .await
        .expect("the cluster starts");
    let options = cluster.options().clone();
    println!(
        "3 replicas, 1 group, tick {:?}, election timeout {:?} (randomized up to twice that), fsync on",
        options.tick,
        options.election_timeout()
    );

    // The client as applications use it, then one whose writes give up
    // after 100 ms (so its retry backoff never grows past that): the
    // difference is what the client's backoff costs.
    for (label, request_timeout) in [
        ("", Duration::from_secs(30)),
        (
            ", writer giving up each write after 100 ms",
            Duration::from_millis(100),
        ),
    ] {
        let mut failovers = Vec::new();
        let mut elections = Vec::new();
        let mut client_side = Vec::new();
        for trial in 0..trials {
            let (failover, election) = failover_trial(&mut cluster, trial, request_timeout).await;
            println!(
                "trial {trial}{label}: first acknowledged write {} after the kill (election won after {})",
                ms(failover),
                ms(election)
            );
            failovers.push(failover);
            elections.push(election);
            client_side.push(failover.saturating_sub(election));
        }
        failovers.sort();
        elections.sort();
        client_side.sort();
        println!();
        println!("| leader failover after SIGKILL ({trials} trials{label}) | median | p90 | max |");
        println!("|---|---|---|---|");
        for (what, v) in [
            ("kill to first acknowledged write", &failovers),
            ("kill to election won (new leader's log)", &elections),
            ("election won to first acknowledged write", &client_side),
        ] {
            println!(
                "| {what} | {} | {} | {} |",
                ms(percentile(v, 0.5)),
                ms(percentile(v, 0.9)),
                ms(*v.last().expect("at least one trial"))
            );
        }
        println!();
    }

    println!("| clients | writes acked | writes/s | p50 | p99 | not acked |");
    println!("|---|---|---|---|---|---|");
    for clients in [1, 64] {
        println!("{}", throughput(&cluster, clients, seconds).await);
    }
}
