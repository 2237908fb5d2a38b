//! The simulated network between nodes: every envelope (one per node pair
//! per ready, as the transport sends a batch) is delayed, and may be lost,
//! duplicated or overtaken by a later one. Partitions block directed links.
//!
//! The data of a snapshot travels with the envelope that carries its
//! `InstallSnapshot`, as the transport streams it alongside.

use super::workload::Kv;
use kuberaft::multi::Envelope;
use kuberaft::raft::{GroupId, NodeId, SnapshotMeta};
use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::{BTreeMap, BTreeSet};

/// An envelope on the wire, with the snapshot data it carries.
#[derive(Clone, Debug)]
pub struct Packet {
    pub envelope: Envelope,
    pub snapshots: Vec<(GroupId, SnapshotMeta, Kv)>,
}

/// How badly the network behaves (fixed per seed; `reset` heals it).
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Probability that an envelope is lost.
    pub loss: f64,
    /// Probability that an envelope is delivered twice.
    pub duplicate: f64,
    /// Delivery after `1..=max_delay` ms (envelopes overtake one another).
    pub max_delay: u64,
    /// Probability of a long delay (up to `10 * max_delay`): heavy reordering.
    pub long_delay: f64,
}

impl Faults {
    pub const NONE: Faults = Faults {
        loss: 0.0,
        duplicate: 0.0,
        max_delay: 1,
        long_delay: 0.0,
    };

    /// A random fault profile, from mild to harsh.
    pub fn random(rng: &mut Xoshiro256PlusPlus) -> Faults {
        Faults {
            loss: rng.random_range(0.0..0.15),
            duplicate: rng.random_range(0.0..0.05),
            max_delay: rng.random_range(1..=15),
            long_delay: rng.random_range(0.0..0.05),
        }
    }
}

/// What happened to an envelope handed to the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    OnItsWay,
    Lost,
    /// A partition blocks the link: the transport reports the peer unreachable.
    Blocked,
}

#[derive(Debug)]
pub struct Network {
    pub faults: Faults,
    /// Directed links that are cut: `(from, to)`.
    pub blocked: BTreeSet<(NodeId, NodeId)>,
    in_flight: BTreeMap<(u64, u64), Packet>,
    seq: u64,
    /// Envelopes handed to the network since the counter was last reset.
    pub envelopes_sent: u64,
    /// When set, what the envelopes carried is counted too.
    pub census: Option<Census>,
}

/// What the envelopes handed to the network carried (for the benchmark's
/// breakdown of idle traffic).
#[derive(Clone, Debug, Default)]
pub struct Census {
    /// Messages, by kind (`MessageBody::kind`).
    pub messages: BTreeMap<&'static str, u64>,
    /// Envelopes, by the set of message kinds inside.
    pub envelopes: BTreeMap<Vec<&'static str>, u64>,
}

impl Network {
    pub fn new(faults: Faults) -> Network {
        Network {
            faults,
            blocked: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            seq: 0,
            envelopes_sent: 0,
            census: None,
        }
    }

    pub fn send(&mut self, packet: Packet, now: u64, rng: &mut Xoshiro256PlusPlus) -> Sent {
        self.envelopes_sent += 1;
        if let Some(census) = self.census.as_mut() {
            let mut kinds: Vec<&'static str> = Vec::new();
            for gm in &packet.envelope.messages {
                let kind = gm.message.body.kind();
                *census.messages.entry(kind).or_default() += 1;
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
            kinds.sort_unstable();
            *census.envelopes.entry(kinds).or_default() += 1;
        }
        let link = (packet.envelope.from, packet.envelope.to);
        if self.blocked.contains(&link) {
            return Sent::Blocked;
        }
        let f = self.faults;
        if f.loss > 0.0 && rng.random_bool(f.loss) {
            return Sent::Lost;
        }
        let copies = if f.duplicate > 0.0 && rng.random_bool(f.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = rng.random_range(1..=f.max_delay);
            if f.long_delay > 0.0 && rng.random_bool(f.long_delay) {
                delay = rng.random_range(1..=10 * f.max_delay);
            }
            self.seq += 1;
            self.in_flight
                .insert((now + delay, self.seq), packet.clone());
        }
        Sent::OnItsWay
    }

    /// The packets that arrive by `now`, in arrival order. A packet whose
    /// link was cut while it travelled is lost.
    pub fn arrivals(&mut self, now: u64) -> Vec<Packet> {
        let mut out = Vec::new();
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let packet = entry.remove();
            if !self
                .blocked
                .contains(&(packet.envelope.from, packet.envelope.to))
            {
                out.push(packet);
            }
        }
        out
    }

    /// Cuts every link between the two sides, both ways.
    pub fn split(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                self.blocked.insert((x, y));
                self.blocked.insert((y, x));
            }
        }
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }
}
