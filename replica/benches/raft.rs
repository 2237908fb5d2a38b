//! Benchmarks of the Raft core and the multi layer, driven by the
//! simulation of `tests/sim` (in memory, simulated time, no sleeping; the
//! safety checker is switched off so that the cores are what is measured):
//!
//! - proposals committed per second of CPU, 3 nodes, 1 group and 64 groups
//!   (criterion reports the throughput in elements/s);
//! - envelopes sent per second of simulated time by an idle 3-node cluster
//!   with 1 group and with 256 groups, and their ratio (coalesced heartbeats
//!   keep it at most 1.5x). These are counts, printed before criterion runs.
//!
//! Run: `cargo bench -p kuberaft-replica --bench raft`.

#[path = "../tests/sim/mod.rs"]
#[allow(dead_code)]
mod sim;

use criterion::{BenchmarkId, Criterion, Throughput};
use std::time::{Duration, Instant};

/// Proposals committed per measured batch.
const BATCH: u64 = 2_000;

fn idle_traffic() {
    let seconds = 30;
    let count = |groups| {
        sim::measure::idle_census(3, groups, seconds)
            .unwrap_or_else(|e| panic!("idle cluster with {groups} groups: {e}"))
    };
    let (one, one_census) = count(1);
    let (many, many_census) = count(256);
    println!(
        "idle 3-node cluster, {seconds} s simulated, tick {} ms: {one:.1} envelopes/s with 1 group, \
         {many:.1} envelopes/s with 256 groups, ratio {:.3}",
        sim::TICK_MS,
        many / one
    );
    for (groups, census) in [(1, &one_census), (256, &many_census)] {
        let per_second = |n: u64| n as f64 / seconds as f64;
        let envelopes: Vec<String> = census
            .envelopes
            .iter()
            .map(|(kinds, n)| format!("[{}] {:.1}/s", kinds.join("+"), per_second(*n)))
            .collect();
        let messages: Vec<String> = census
            .messages
            .iter()
            .map(|(kind, n)| format!("{kind} {:.1}/s", per_second(*n)))
            .collect();
        println!(
            "  {groups} group(s): envelopes holding {}",
            envelopes.join(", ")
        );
        println!(
            "  {groups} group(s): messages inside: {}",
            messages.join(", ")
        );
    }
}

fn proposals(c: &mut Criterion) {
    let mut group = c.benchmark_group("proposals_committed");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(BATCH));
    for groups in [1u64, 64] {
        let mut cluster = sim::measure::quiet(3, groups);
        cluster.checker.enabled = false;
        sim::measure::elect(&mut cluster).expect("leaders are elected");
        // Enough uncommitted proposals per group to keep every pipeline full.
        let window = (512 / groups).max(8);
        group.bench_function(
            BenchmarkId::new("3_nodes", format!("{groups}_groups")),
            |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        sim::measure::commit_proposals(&mut cluster, BATCH, window)
                            .expect("proposals commit");
                    }
                    start.elapsed()
                })
            },
        );
    }
    group.finish();
}

fn main() {
    idle_traffic();
    let mut c = Criterion::default().configure_from_args();
    proposals(&mut c);
    c.final_summary();
}
