//! Fuzz target `kv_snapshot`: a key-value snapshot's bytes, restored into
//! a state machine (a snapshot file from disk, or data from a peer).
//!
//! Input: a mode byte, then the snapshot. Mode bit 1 appends the right
//! CRC32C trailer, so the fuzzer reaches the record decoder; bit 2 restores
//! into the group the header names, so a group mismatch does not stop it.
//!
//! Checked, whatever the bytes: restoring succeeds or fails with an error
//! that leaves the state machine as it was, never panics, and allocates
//! no more than the bytes present can justify; a restored state survives
//! its own snapshot unchanged.

use super::snapshot_chunks::{restore_round_trip, sample_snapshot};
use super::{split_mode, with_mode};
use crate::raft::GroupId;

pub fn run(input: &[u8]) {
    let Some((mode, rest)) = split_mode(input) else {
        return;
    };
    let mut data = rest.to_vec();
    if mode & 1 == 1 {
        let crc = crc32c::crc32c(&data);
        data.extend_from_slice(&crc.to_le_bytes());
    }
    let group = match (mode & 2 == 2, data.get(9..17)) {
        (true, Some(g)) => GroupId(u64::from_le_bytes(g.try_into().expect("8 bytes"))),
        _ => GroupId(0),
    };
    restore_round_trip(group, &data);
}

pub fn seeds() -> Vec<Vec<u8>> {
    let whole = sample_snapshot(GroupId(0));
    let other_group = sample_snapshot(GroupId(5));
    let body = &whole[..whole.len() - 4];
    vec![
        with_mode(0, &whole),
        with_mode(1, body),
        with_mode(3, &other_group[..other_group.len() - 4]),
    ]
}
