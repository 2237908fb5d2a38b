//! The deterministic simulation of the Raft core and the multi layer (see
//! `sim/mod.rs`): many seeds per cluster shape, each checked for safety
//! after every step and for liveness once its faults heal.
//!
//! - `RAFT_SIM_SEEDS=N` runs N seeds per configuration (defaults below add
//!   up to 1,000 random histories and 250 Figure 8 histories);
//! - `RAFT_SIM_SEED=S` replays seed S only (a failure prints the command);
//! - `RAFT_SIM_TRACE=1` prints what the faults and the operator did.

mod sim;

use sim::{Chaos, Outcome, Sim, SimConfig, replay_command};

fn seeds(default: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("RAFT_SIM_SEED") {
        let seed = seed.trim().parse().unwrap_or_else(|_| {
            panic!("RAFT_SIM_SEED={seed:?} is not a number: give the seed a failure printed, e.g. RAFT_SIM_SEED=1234")
        });
        return vec![seed];
    }
    let count = match std::env::var("RAFT_SIM_SEEDS") {
        Ok(n) => n.trim().parse().unwrap_or_else(|_| {
            panic!("RAFT_SIM_SEEDS={n:?} is not a number: give how many seeds to run per configuration, e.g. RAFT_SIM_SEEDS=10000")
        }),
        Err(_) => default,
    };
    (0..count).collect()
}

fn run(name: &'static str, nodes: u64, groups: u64, default_seeds: u64) {
    run_with(name, nodes, groups, default_seeds, Chaos::Random);
}

fn run_with(name: &'static str, nodes: u64, groups: u64, default_seeds: u64, chaos: Chaos) {
    let cfg = SimConfig {
        name,
        nodes,
        groups,
        chaos_ms: 3_000,
        chaos,
    };
    let mut total = Outcome::default();
    let mut worst_recovery = 0;
    let seeds = seeds(default_seeds);
    for &seed in &seeds {
        let result = std::panic::catch_unwind(|| Sim::new(cfg, seed).run());
        let outcome = match result {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(violation)) => panic!("{name}, seed {seed}: {violation}"),
            Err(panic) => {
                eprintln!(
                    "{name}, seed {seed} panicked; replay with: {}",
                    replay_command(name, seed)
                );
                std::panic::resume_unwind(panic);
            }
        };
        worst_recovery = worst_recovery.max(outcome.recovery_ms);
        let (t, o) = (&mut total, outcome);
        t.stats.leaders += o.stats.leaders;
        t.stats.applied += o.stats.applied;
        t.stats.writes_acked += o.stats.writes_acked;
        t.stats.reads_checked += o.stats.reads_checked;
        t.stats.reads_dropped += o.stats.reads_dropped;
        t.crashes += o.crashes;
        t.lost_volumes += o.lost_volumes;
        t.partitions += o.partitions;
        t.conf_changes += o.conf_changes;
        t.transfers += o.transfers;
        t.compactions += o.compactions;
    }
    println!(
        "{name}: {} seeds, {} leaders, {} entries applied, {} writes acked, {} reads checked ({} dropped), \
         {} crashes, {} lost volumes, {} partitions, {} membership changes, {} transfers, {} compactions; \
         slowest recovery after healing {} ms",
        seeds.len(),
        total.stats.leaders,
        total.stats.applied,
        total.stats.writes_acked,
        total.stats.reads_checked,
        total.stats.reads_dropped,
        total.crashes,
        total.lost_volumes,
        total.partitions,
        total.conf_changes,
        total.transfers,
        total.compactions,
        worst_recovery
    );
    if seeds.len() >= 20 {
        // The runs must have exercised what they claim to check.
        let t = &total;
        let mut exercised = vec![
            ("writes acknowledged", t.stats.writes_acked),
            ("reads checked", t.stats.reads_checked),
            ("crashes", t.crashes),
            ("partitions", t.partitions),
            ("compactions", t.compactions),
        ];
        if chaos == Chaos::Random {
            exercised.extend([
                ("lost volumes", t.lost_volumes),
                ("membership changes", t.conf_changes),
                ("leader transfers", t.transfers),
            ]);
        }
        for (what, n) in exercised {
            assert!(
                n > 0,
                "{name}: no {what} in {} seeds: the schedule is broken",
                seeds.len()
            );
        }
    }
}

#[test]
fn three_nodes_one_group() {
    run("three_nodes_one_group", 3, 1, 300);
}

#[test]
fn three_nodes_four_groups() {
    run("three_nodes_four_groups", 3, 4, 250);
}

#[test]
fn five_nodes_one_group() {
    run("five_nodes_one_group", 5, 1, 150);
}

#[test]
fn five_nodes_three_groups() {
    run("five_nodes_three_groups", 5, 3, 150);
}

#[test]
fn seven_nodes_one_group() {
    run("seven_nodes_one_group", 7, 1, 75);
}

#[test]
fn seven_nodes_two_groups() {
    run("seven_nodes_two_groups", 7, 2, 75);
}

/// Figure 8 of the Raft paper, over and over (see `Sim::figure8_chaos`):
/// leaders of alternating terms, each cut off with a minority or crashed
/// right after its election, leave logs that disagree in their tails. A
/// core that committed an entry of an earlier term by counting its
/// replicas would fail here: committed entries get overwritten. (Checked
/// by mutating `Raft::maybe_commit` so: 12 of the 150 default seeds of
/// `figure8_three_nodes` fail (the first is seed 1) and 1 of the 100 of
/// `figure8_five_nodes` (seed 69), as does `scenarios/figure8_commit_rule.txt`;
/// none of the 1,000 random seeds above do.)
#[test]
fn figure8_three_nodes() {
    run_with("figure8_three_nodes", 3, 1, 150, Chaos::Figure8);
}

#[test]
fn figure8_five_nodes() {
    run_with("figure8_five_nodes", 5, 1, 100, Chaos::Figure8);
}

/// Coalescing: an idle 3-node cluster sends at most one envelope per node
/// pair per tick whatever the number of groups, so 256 groups (led from
/// every node) cost at most 1.5x the envelopes of one group (whose single
/// leader talks to 2 followers: 4 per tick instead of 6). Counts, not time.
#[test]
fn idle_traffic_does_not_grow_with_groups() {
    let one = sim::measure::idle_envelopes_per_second(3, 1, 10).expect("one group settles");
    let many = sim::measure::idle_envelopes_per_second(3, 256, 10).expect("256 groups settle");
    println!(
        "idle 3-node cluster: {one:.0} envelopes/s with 1 group, {many:.0} with 256 groups ({:.2}x)",
        many / one
    );
    assert!(one > 0.0, "an idle cluster must still heartbeat");
    assert!(
        many <= 1.5 * one,
        "256 groups send {many:.0} envelopes/s, 1 group {one:.0}: heartbeats are not coalesced"
    );
}

/// The benchmark's workload, checked: a quiet cluster with many groups
/// commits a stream of pipelined proposals, safely.
#[test]
fn quiet_cluster_commits_pipelined_proposals() {
    let mut cluster = sim::measure::quiet(3, 64);
    sim::measure::elect(&mut cluster).expect("leaders are elected");
    sim::measure::commit_proposals(&mut cluster, 5_000, 16).expect("proposals commit");
    assert!(cluster.checker.stats.writes_acked >= 5_000);
}
