//! The fault-injection suite (issue 8): real replicas in the test's own
//! network namespace, clients recording a history, a nemesis killing,
//! pausing, partitioning, reconfiguring and tearing WAL tails from a seed,
//! then the linearizability, durability, recovery and convergence checks
//! of [`kuberaft_tests::fault_run`].
//!
//! By default a short run: one seed, a few fault cycles. Longer runs:
//! `RAFT_FAULTS_SEEDS=1,2,3` (or `random`), `RAFT_FAULTS_CYCLES=200`,
//! `RAFT_FAULTS_REPLICAS=3`. Where no network namespace can be made, the
//! network faults are skipped with a loud message and the rest runs.

use kuberaft_tests::fault_run::{RunOptions, namespace, recovery_table, run_seed};
use kuberaft_tests::{bounded, netns};
use std::time::Duration;

#[test]
fn faults_keep_the_store_linearizable_durable_and_convergent() {
    let options = RunOptions::from_env().unwrap_or_else(|e| panic!("{e}"));
    let ns = namespace();
    // A bound on a hang: generous per cycle, not a timing assertion.
    let limit = Duration::from_secs(120 + 90 * options.cycles as u64) * options.seeds.len() as u32;
    let reports = netns::run_in(ns.clone(), 3, || {
        bounded(limit, async {
            let mut reports = Vec::new();
            for &seed in &options.seeds {
                reports.push(run_seed(seed, &options, ns.clone()).await);
            }
            reports
        })
    });
    let all: Vec<_> = reports.iter().flat_map(|r| r.recoveries.clone()).collect();
    let ops: usize = reports.iter().map(|r| r.ops).sum();
    let faults: usize = reports
        .iter()
        .map(|r| r.injected.values().sum::<usize>())
        .sum();
    eprintln!(
        "fault suite: {} seeds, {ops} register operations, {faults} faults, no violation",
        reports.len()
    );
    if reports.len() > 1 {
        for line in recovery_table(&all) {
            eprintln!("{line}");
        }
    }
    for r in &reports {
        assert!(r.ops > 0, "the clients did something");
        assert!(r.keys_checked > 0, "the history was checked");
    }
}
