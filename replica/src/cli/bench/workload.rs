//! What the benchmark asks of the store: which keys, how large the values,
//! how many reads among the writes and how consistent those reads are.
//!
//! Every client draws its operations from its own seeded stream, so a run
//! is reproducible with `--seed` and the clients do not share a lock. Keys
//! are `bench/` and a zero-padded number below the key space, the same for
//! every target, so kuberaft and etcd store and hash the same bytes.

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// How reads are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Reflects every write acknowledged before it (kuberaft: ReadIndex;
    /// etcd: a Range without `serializable`, etcd's default).
    Linearizable,
    /// From the replica asked, possibly stale (etcd: `serializable` Range).
    Serializable,
}

impl ReadConsistency {
    pub fn name(self) -> &'static str {
        match self {
            ReadConsistency::Linearizable => "linearizable",
            ReadConsistency::Serializable => "serializable",
        }
    }
}

/// The mix of operations and the data they touch.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Keys are drawn uniformly from `0..keys`.
    pub keys: u64,
    pub value_size: usize,
    /// Out of 100 operations, how many are reads.
    pub read_percent: u8,
    pub reads: ReadConsistency,
}

/// One operation to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put { key: Bytes },
    Get { key: Bytes },
}

/// The name of key `i` of the key space.
pub fn key(i: u64) -> Bytes {
    Bytes::from(format!("bench/{i:010}"))
}

/// A value of `size` bytes (printable, so a value is readable in a dump).
pub fn value(size: usize) -> Bytes {
    Bytes::from(
        (0..size)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    )
}

impl Workload {
    /// The operations of client `client` of a run seeded with `seed`.
    pub fn stream(&self, seed: u64, client: u64) -> OpStream {
        OpStream {
            rng: Xoshiro256PlusPlus::seed_from_u64(
                seed ^ client.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ),
            keys: self.keys,
            read_percent: self.read_percent,
        }
    }
}

/// A client's endless, seeded sequence of operations.
pub struct OpStream {
    rng: Xoshiro256PlusPlus,
    keys: u64,
    read_percent: u8,
}

impl OpStream {
    pub fn next_op(&mut self) -> Op {
        let key = key(self.rng.random_range(0..self.keys));
        if self.read_percent > 0 && self.rng.random_range(0..100u8) < self.read_percent {
            Op::Get { key }
        } else {
            Op::Put { key }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(read_percent: u8) -> Workload {
        Workload {
            keys: 1000,
            value_size: 16,
            read_percent,
            reads: ReadConsistency::Linearizable,
        }
    }

    #[test]
    fn the_mix_follows_the_read_percentage() {
        let mut s = workload(10).stream(7, 0);
        let reads = (0..10_000)
            .filter(|_| matches!(s.next_op(), Op::Get { .. }))
            .count();
        assert!((800..1200).contains(&reads), "about 10% reads: {reads}");
        let mut s = workload(0).stream(7, 0);
        assert!((0..1000).all(|_| matches!(s.next_op(), Op::Put { .. })));
        let mut s = workload(100).stream(7, 0);
        assert!((0..1000).all(|_| matches!(s.next_op(), Op::Get { .. })));
    }

    #[test]
    fn keys_stay_in_the_key_space_and_streams_replay_from_their_seed() {
        let w = workload(50);
        let ops = |seed, client| {
            let mut s = w.stream(seed, client);
            (0..200).map(|_| s.next_op()).collect::<Vec<_>>()
        };
        assert_eq!(ops(1, 3), ops(1, 3));
        assert_ne!(ops(1, 3), ops(1, 4), "clients draw different keys");
        for op in ops(1, 3) {
            let (Op::Put { key } | Op::Get { key }) = op;
            let n: u64 = std::str::from_utf8(&key[6..]).unwrap().parse().unwrap();
            assert!(key.starts_with(b"bench/") && n < 1000);
        }
    }

    #[test]
    fn values_have_the_size_asked() {
        assert_eq!(value(256).len(), 256);
        assert!(value(0).is_empty());
        assert_eq!(&value(3)[..], b"abc");
    }
}
