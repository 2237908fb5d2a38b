//! Driving a quiet cluster (no faults, no operator, no background
//! traffic) for the benchmark and for the idle-traffic test: elect leaders,
//! commit proposals as fast as the cores go, count envelopes.

use super::network::Census;
use super::{Chaos, Sim, SimConfig, Violation};
use kuberaft::raft::{GroupId, NodeId};

/// A cluster of `nodes` nodes hosting `groups` groups, every node a voter
/// of every group, on a perfect network.
pub fn quiet(nodes: u64, groups: u64) -> Sim {
    Sim::new(
        SimConfig {
            name: "quiet",
            nodes,
            groups,
            chaos_ms: u64::MAX,
            chaos: Chaos::Quiet,
        },
        0,
    )
}

/// Steps until every group has a leader, then lets the cluster settle.
pub fn elect(sim: &mut Sim) -> Result<(), Violation> {
    let deadline = sim.now + 30_000;
    while (0..sim.cfg.groups).any(|g| sim.leader_of(GroupId(g)).is_none()) {
        if sim.now >= deadline {
            return Err("no leader for every group after 30 s of simulated time".into());
        }
        sim.now += 1;
        sim.step()?;
    }
    run_for(sim, 1_000)
}

pub fn run_for(sim: &mut Sim, ms: u64) -> Result<(), Violation> {
    for _ in 0..ms {
        sim.now += 1;
        sim.step()?;
    }
    Ok(())
}

/// Envelopes sent per second of simulated time by an idle cluster.
pub fn idle_envelopes_per_second(nodes: u64, groups: u64, seconds: u64) -> Result<f64, Violation> {
    Ok(idle_census(nodes, groups, seconds)?.0)
}

/// Envelopes sent per second of simulated time by an idle cluster, and
/// what they carried over the whole run.
pub fn idle_census(nodes: u64, groups: u64, seconds: u64) -> Result<(f64, Census), Violation> {
    let mut sim = quiet(nodes, groups);
    elect(&mut sim)?;
    sim.net.envelopes_sent = 0;
    sim.net.census = Some(Census::default());
    run_for(&mut sim, seconds * 1_000)?;
    let census = sim.net.census.take().unwrap_or_default();
    Ok((sim.net.envelopes_sent as f64 / seconds as f64, census))
}

/// Proposes writes at every group's leader, keeping at most `window`
/// uncommitted per group, until `count` more writes are acknowledged.
pub fn commit_proposals(sim: &mut Sim, count: u64, window: u64) -> Result<(), Violation> {
    let target = sim.checker.stats.writes_acked + count;
    let deadline = sim.now + 600_000;
    let mut key = 0;
    while sim.checker.stats.writes_acked < target {
        if sim.now >= deadline {
            return Err(format!(
                "{count} proposals did not commit within 600 s of simulated time"
            ));
        }
        for g in (0..sim.cfg.groups).map(GroupId) {
            let Some(l) = sim.leader_of(g) else { continue };
            let Some(raft) = sim.raft(l, g) else { continue };
            let backlog = raft.last_index().0 - raft.commit().0;
            for _ in backlog..window {
                key = (key + 1) % super::workload::KEYS;
                sim.propose_write(l, g, key, false);
            }
        }
        sim.now += 1;
        sim.step()?;
        if sim.now.is_multiple_of(100) {
            let ids: Vec<NodeId> = sim.nodes.keys().copied().collect();
            for id in ids {
                for g in 0..sim.cfg.groups {
                    sim.compact(id, GroupId(g));
                }
            }
        }
    }
    Ok(())
}
