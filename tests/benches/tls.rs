//! What TLS costs: write throughput and latency of a 3-replica cluster of
//! real processes with and without TLS (mutual TLS between replicas, the
//! client over TLS with a client certificate), measured in alternating
//! runs on the same machine so drifting load hits both alike.
//!
//! `cargo bench -p kuberaft-tests --bench tls` (build the `raft` binary
//! first: `cargo build --release -p kuberaft-replica`).
//!
//! Environment: `KUBERAFT_BENCH_ROUNDS` (alternations, default 2),
//! `KUBERAFT_BENCH_SECS` (per run, default 10).

use kuberaft_tests::cluster::TlsOptions;
use kuberaft_tests::load::{WriteLoad, percentile};
use kuberaft_tests::{Cluster, ClusterOptions};
use std::time::Duration;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn run(cluster: &Cluster, what: &str, clients: usize, seconds: u64, round: u64) -> String {
    let load = WriteLoad {
        writers: clients,
        writes_per_writer: 10_000_000,
        duration: Duration::from_secs(seconds),
        value_len: 256,
        key_prefix: format!("{what}-{round}-{clients}-"),
        request_timeout: Duration::from_secs(30),
    };
    let report = load
        .run(|| cluster.client_with_timeout(load.request_timeout))
        .await;
    let lat = report.latencies();
    format!(
        "| {what} | {clients} | {round} | {:.0} | {} | {} | {} |",
        report.throughput(),
        ms(percentile(&lat, 0.50)),
        ms(percentile(&lat, 0.99)),
        report.indeterminate().count(),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "tls".contains(a.as_str())) {
        return;
    }
    let rounds = env_number("KUBERAFT_BENCH_ROUNDS", 2).max(1);
    let seconds = env_number("KUBERAFT_BENCH_SECS", 10).max(1);
    let plain = Cluster::start("bench-plain", ClusterOptions::default())
        .await
        .expect("the plain cluster starts");
    let tls = Cluster::start(
        "bench-tls",
        ClusterOptions {
            tls: Some(TlsOptions::default()),
            ..ClusterOptions::default()
        },
    )
    .await
    .expect("the TLS cluster starts");
    println!("3 replicas, 1 group, fsync on, 256-byte values, {seconds} s per run");
    println!("| cluster | clients | round | writes/s | p50 | p99 | not acked |");
    println!("|---|---|---|---|---|---|---|");
    for clients in [1, 16] {
        for round in 1..=rounds {
            println!("{}", run(&plain, "plain", clients, seconds, round).await);
            println!("{}", run(&tls, "tls", clients, seconds, round).await);
        }
    }
}
