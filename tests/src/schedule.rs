//! The fault schedule of a run, drawn from a seed: which fault each cycle
//! injects, at whom, and for how long. Targets are roles ("the leader of
//! group 0", "a replica other than the leader"), resolved when the fault is
//! injected, so the same seed gives the same schedule even though elections
//! differ between runs; the [`nemesis`](crate::nemesis) logs what it did
//! with the concrete replicas.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::fmt;
use std::time::Duration;

/// Who a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The leader of group 0 when the fault starts.
    Leader,
    /// The `n`-th (modulo their number) of the voters other than the leader.
    Other(u64),
}

/// One kind of fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL, restart with the same data after the hold.
    Kill(Target),
    /// SIGSTOP for the hold (longer than the election timeout), SIGCONT.
    Pause(Target),
    /// The leader cut off from everyone.
    IsolateLeader,
    /// A random minority cut off from the majority (by a seed-drawn
    /// shuffle of the replicas: the first `minority` of them).
    Split { shuffle: u64 },
    /// Two halves that see only a bridge replica in the middle.
    Bridge { shuffle: u64 },
    /// Packets from the leader to some followers are dropped, the other way
    /// still flows.
    OneWayFromLeader { shuffle: u64 },
    /// Leadership of every group moved to another voter.
    TransferLeader(Target),
    /// SIGKILL, the tail of the newest WAL segment torn, restart.
    TornTail(Target),
    /// SIGKILL, the data directory emptied, restart: the replica must wait,
    /// be removed, added back as a learner and promoted.
    LostVolume(Target),
    /// A voter removed, its volume replaced, added back as a learner and
    /// promoted, while another replica is killed.
    ReconfigureDuringKill { moved: u64, killed: u64 },
}

impl Fault {
    /// The fault's family, for the figures.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Kill(Target::Leader) => "kill-leader",
            Fault::Kill(_) => "kill",
            Fault::Pause(Target::Leader) => "pause-leader",
            Fault::Pause(_) => "pause",
            Fault::IsolateLeader => "isolate-leader",
            Fault::Split { .. } => "split",
            Fault::Bridge { .. } => "bridge",
            Fault::OneWayFromLeader { .. } => "one-way",
            Fault::TransferLeader(_) => "transfer-leader",
            Fault::TornTail(_) => "torn-tail",
            Fault::LostVolume(_) => "lost-volume",
            Fault::ReconfigureDuringKill { .. } => "reconfigure-during-kill",
        }
    }

    /// Whether it needs packet filtering.
    pub fn is_network(&self) -> bool {
        matches!(
            self,
            Fault::IsolateLeader
                | Fault::Split { .. }
                | Fault::Bridge { .. }
                | Fault::OneWayFromLeader { .. }
        )
    }
}

/// One cycle: a fault, held for `hold`, then healed; then `quiet` with no
/// fault before the next.
#[derive(Clone, Debug)]
pub struct Step {
    pub fault: Fault,
    pub hold: Duration,
    pub quiet: Duration,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} held {} ms, then {} ms quiet",
            self.fault,
            self.hold.as_millis(),
            self.quiet.as_millis()
        )
    }
}

/// What the schedule may use.
#[derive(Clone, Debug)]
pub struct ScheduleOptions {
    pub cycles: usize,
    pub replicas: u64,
    pub election_timeout: Duration,
    /// False where links cannot be cut: network faults are left out.
    pub network: bool,
}

/// The steps of a run, drawn from `seed`.
pub fn generate(seed: u64, o: &ScheduleOptions) -> Vec<Step> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    // (weight, fault family). The leader is killed and paused more often
    // than the others.
    let mut families: Vec<(u32, &str)> = vec![
        (3, "kill-leader"),
        (2, "kill"),
        (2, "pause-leader"),
        (1, "pause"),
        (2, "transfer-leader"),
        (2, "torn-tail"),
        (2, "lost-volume"),
    ];
    if o.replicas >= 5 {
        families.push((2, "reconfigure-during-kill"));
    }
    if o.network {
        families.extend([
            (2, "isolate-leader"),
            (2, "split"),
            (1, "bridge"),
            (2, "one-way"),
        ]);
    }
    let total: u32 = families.iter().map(|f| f.0).sum();
    let et = o.election_timeout;
    let mut steps = Vec::with_capacity(o.cycles);
    let mut previous = "";
    while steps.len() < o.cycles {
        let mut pick = rng.random_range(0..total);
        let family = families
            .iter()
            .find(|(w, _)| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .map(|f| f.1)
            .expect("a family");
        // The same family twice in a row tells less than another one.
        if family == previous && families.len() > 1 {
            continue;
        }
        previous = family;
        let other = Target::Other(rng.random_range(0..o.replicas));
        let shuffle = rng.random();
        let target = *[Target::Leader, other].choose(&mut rng).expect("two");
        let fault = match family {
            "kill-leader" => Fault::Kill(Target::Leader),
            "kill" => Fault::Kill(other),
            "pause-leader" => Fault::Pause(Target::Leader),
            "pause" => Fault::Pause(other),
            "transfer-leader" => Fault::TransferLeader(other),
            "torn-tail" => Fault::TornTail(target),
            "lost-volume" => Fault::LostVolume(target),
            "reconfigure-during-kill" => Fault::ReconfigureDuringKill {
                moved: rng.random_range(0..o.replicas),
                killed: rng.random_range(0..o.replicas),
            },
            "isolate-leader" => Fault::IsolateLeader,
            "split" => Fault::Split { shuffle },
            "bridge" => Fault::Bridge { shuffle },
            "one-way" => Fault::OneWayFromLeader { shuffle },
            f => unreachable!("family {f}"),
        };
        // Held from 1.5 to 4 election timeouts: a pause or a partition
        // always outlasts the followers' patience.
        let hold = et.mul_f64(rng.random_range(1.5..4.0));
        let quiet = et.mul_f64(rng.random_range(0.5..1.5));
        steps.push(Step { fault, hold, quiet });
    }
    steps
}

/// A permutation of `0..n` drawn from `shuffle`.
pub fn permutation(shuffle: u64, n: usize) -> Vec<usize> {
    use rand::seq::SliceRandom;
    let mut v: Vec<usize> = (0..n).collect();
    v.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(shuffle));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(network: bool) -> ScheduleOptions {
        ScheduleOptions {
            cycles: 200,
            replicas: 5,
            election_timeout: Duration::from_secs(1),
            network,
        }
    }

    #[test]
    fn a_seed_gives_one_schedule() {
        let a: Vec<String> = generate(7, &options(true))
            .iter()
            .map(|s| s.to_string())
            .collect();
        let b: Vec<String> = generate(7, &options(true))
            .iter()
            .map(|s| s.to_string())
            .collect();
        let c: Vec<String> = generate(8, &options(true))
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn every_family_is_drawn_and_network_faults_only_when_possible() {
        let with: std::collections::BTreeSet<&str> = generate(1, &options(true))
            .iter()
            .map(|s| s.fault.kind())
            .collect();
        assert_eq!(with.len(), 12, "{with:?}");
        let without = generate(1, &options(false));
        assert!(without.iter().all(|s| !s.fault.is_network()));
        assert!(
            generate(1, &options(true))
                .iter()
                .all(|s| s.hold > Duration::from_secs(1)),
            "pauses and partitions outlast the election timeout"
        );
    }
}
