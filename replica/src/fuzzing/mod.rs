//! Fuzz targets: one per decoder of bytes a replica does not control.
//!
//! Each target is a function from arbitrary bytes that drives a decoder the
//! way the replica does and checks what must hold whatever the bytes: no
//! panic, errors instead of bad state, and the invariants listed in the
//! target's module. The same functions run
//! - under libFuzzer, from `fuzz/fuzz_targets/<name>.rs`
//!   (`RUSTC_BOOTSTRAP=1 cargo fuzz run <name>`, see docs/security.md),
//!   each calling `kuberaft::fuzzing::<name>::run`;
//! - in the normal test command, over the checked-in seeds and regression
//!   inputs plus a bounded number of deterministic mutations of them
//!   (`replica/tests/fuzz_smoke.rs`, `RAFT_FUZZ_ITERATIONS` for more).
//!
//! Every target's [`Target::seeds`] builds its starting inputs from real
//! encodings, so that fuzzing starts from bytes the replica really sees.
//! Nothing here is an API: it exists so that the fuzzers and the tests reach
//! crate-internal decoders.

pub mod client_request;
pub mod config_file;
pub mod kv_command;
pub mod kv_snapshot;
pub mod mutate;
pub mod peer_message;
pub mod snapshot_chunks;
pub mod wal;

/// A fuzz target.
#[derive(Clone, Copy)]
pub struct Target {
    /// The name of its `cargo fuzz` target and of its seed directory.
    pub name: &'static str,
    /// Runs one input; panics if an invariant fails.
    pub run: fn(&[u8]),
    /// Starting inputs built from real encodings.
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "wal",
        run: wal::run,
        seeds: wal::seeds,
    },
    Target {
        name: "peer_message",
        run: peer_message::run,
        seeds: peer_message::seeds,
    },
    Target {
        name: "snapshot_chunks",
        run: snapshot_chunks::run,
        seeds: snapshot_chunks::seeds,
    },
    Target {
        name: "kv_snapshot",
        run: kv_snapshot::run,
        seeds: kv_snapshot::seeds,
    },
    Target {
        name: "kv_command",
        run: kv_command::run,
        seeds: kv_command::seeds,
    },
    Target {
        name: "client_request",
        run: client_request::run,
        seeds: client_request::seeds,
    },
    Target {
        name: "config_file",
        run: config_file::run,
        seeds: config_file::seeds,
    },
];

/// The target called `name`.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// A mode byte and the rest.
fn split_mode(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(m, rest)| (*m, rest))
}

/// Seeds that are `mode` followed by `body`.
fn with_mode(mode: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + body.len());
    out.push(mode);
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_of_every_target_runs() {
        for t in TARGETS {
            let seeds = (t.seeds)();
            assert!(!seeds.is_empty(), "{} has seeds", t.name);
            for s in seeds {
                (t.run)(&s);
            }
            (t.run)(&[]);
        }
    }
}
