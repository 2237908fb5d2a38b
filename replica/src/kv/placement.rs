//! Which group a key belongs to.
//!
//! Data placement depends on this function: a key's group decides which log
//! and which snapshot hold it. It must therefore never change between
//! versions; the pinned test vectors below fail if it does.
//!
//! The key is hashed with 64-bit FNV-1a (offset basis 0xcbf29ce484222325,
//! prime 0x100000001b3), and the hash is mapped onto the groups with Lamping
//! and Veach's jump consistent hash ("A Fast, Minimal Memory, Consistent Hash
//! Algorithm", 2014). Growing the number of groups from n to n + 1 then moves
//! only about 1/(n + 1) of the keys, all of them to the new group, which is
//! what a future re-sharding needs. Both steps use only integer arithmetic
//! and IEEE-754 double division, which is exact-rounded and the same on
//! every platform.

use crate::raft::GroupId;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// Jump consistent hash of `hash` onto `0..buckets` (`buckets` >= 1).
fn jump_consistent_hash(mut hash: u64, buckets: u32) -> u32 {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < i64::from(buckets) {
        b = j;
        hash = hash.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((hash >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

/// The group (`0..groups`) that holds `key`. `groups` is the configured
/// number of groups; 0 is treated as 1.
pub fn group_for_key(key: &[u8], groups: u32) -> GroupId {
    GroupId(u64::from(jump_consistent_hash(fnv1a64(key), groups.max(1))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn placement_is_pinned() {
        // Changing any of these moves stored data: never update them.
        let keys: [&[u8]; 6] = [b"", b"a", b"user/1", b"user/2", b"config", b"\xff\x00"];
        let got: Vec<u64> = keys.iter().map(|k| group_for_key(k, 16).0).collect();
        assert_eq!(got, PINNED_16);
        let got: Vec<u64> = keys.iter().map(|k| group_for_key(k, 1000).0).collect();
        assert_eq!(got, PINNED_1000);
    }

    const PINNED_16: [u64; 6] = [13, 12, 10, 10, 14, 3];
    // Cross-checked against an independent implementation of the algorithm.
    const PINNED_1000: [u64; 6] = [266, 163, 446, 135, 282, 135];

    #[test]
    fn one_group_holds_everything_and_zero_means_one() {
        for k in [&b"x"[..], b"yz", b""] {
            assert_eq!(group_for_key(k, 1), GroupId(0));
            assert_eq!(group_for_key(k, 0), GroupId(0));
        }
    }

    #[test]
    fn keys_spread_evenly_and_growing_moves_few() {
        let n = 20_000u32;
        let mut counts = [0u32; 8];
        let mut moved = 0;
        for i in 0..n {
            let key = format!("key-{i}");
            let g8 = group_for_key(key.as_bytes(), 8).0;
            counts[g8 as usize] += 1;
            let g9 = group_for_key(key.as_bytes(), 9).0;
            if g9 != g8 {
                assert_eq!(g9, 8, "a moved key goes to the new group");
                moved += 1;
            }
        }
        for c in counts {
            assert!((2200..2800).contains(&c), "uneven spread: {counts:?}");
        }
        assert!((1800..2700).contains(&moved), "moved {moved} of {n}");
    }
}
