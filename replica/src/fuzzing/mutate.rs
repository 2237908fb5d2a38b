//! Deterministic mutation of inputs: how the fuzz targets run without
//! libFuzzer (in `replica/tests/fuzz_smoke.rs`). The same seed gives the
//! same inputs, so a failure in the test replays exactly.
//!
//! The mutations are libFuzzer's usual ones: bit flips, random and
//! "interesting" bytes and words (0, -1, sign bits: the values that break
//! length checks), insertions, deletions, duplicated ranges, truncation,
//! splicing two inputs, and now and then an input of random bytes.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Inputs never grow past this; larger ones reach no new code.
pub const MAX_INPUT: usize = 64 * 1024;

const INTERESTING_BYTES: [u8; 8] = [0, 1, 2, 0x7f, 0x80, 0xfe, 0xff, 0x10];
const INTERESTING_WORDS: [u64; 8] = [
    0,
    1,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
    1 << 30,
];

pub struct Mutator {
    rng: Xoshiro256PlusPlus,
}

impl Mutator {
    pub fn new(seed: u64) -> Mutator {
        Mutator {
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
        }
    }

    /// The next input: one time in 16 random bytes, otherwise `base` with
    /// one to four mutations, some of which splice in parts of `other`.
    pub fn next(&mut self, base: &[u8], other: &[u8]) -> Vec<u8> {
        if base.is_empty() || self.rng.random_ratio(1, 16) {
            let len = self.rng.random_range(0..512);
            return (0..len).map(|_| self.rng.random()).collect();
        }
        let mut out = base.to_vec();
        for _ in 0..self.rng.random_range(1..=4) {
            self.mutate(&mut out, other);
        }
        out.truncate(MAX_INPUT);
        out
    }

    fn pos(&mut self, len: usize) -> usize {
        if len == 0 {
            0
        } else {
            self.rng.random_range(0..len)
        }
    }

    fn mutate(&mut self, out: &mut Vec<u8>, other: &[u8]) {
        let len = out.len();
        match self.rng.random_range(0..10) {
            0 if len > 0 => {
                let i = self.pos(len);
                out[i] ^= 1 << self.rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = self.pos(len);
                out[i] = self.rng.random();
            }
            2 if len > 0 => {
                let i = self.pos(len);
                out[i] = INTERESTING_BYTES[self.rng.random_range(0..INTERESTING_BYTES.len())];
            }
            3 if len >= 4 => {
                let word = INTERESTING_WORDS[self.rng.random_range(0..INTERESTING_WORDS.len())];
                let width = if self.rng.random::<bool>() { 4 } else { 8 };
                let width = width.min(len);
                let i = self.pos(len - width + 1);
                out[i..i + width].copy_from_slice(&word.to_le_bytes()[..width]);
            }
            4 => {
                let i = self.pos(len + 1);
                let n = self.rng.random_range(1..=8);
                let bytes: Vec<u8> = (0..n).map(|_| self.rng.random()).collect();
                insert(out, i, &bytes);
            }
            5 if len > 0 => {
                let i = self.pos(len);
                let n = self.rng.random_range(1..=(len - i).min(16));
                out.drain(i..i + n);
            }
            6 if len > 0 => {
                let i = self.pos(len);
                let n = self.rng.random_range(1..=(len - i).min(64));
                let copy = out[i..i + n].to_vec();
                let at = self.pos(len + 1);
                insert(out, at, &copy);
            }
            7 if len > 0 => {
                let at = self.pos(len);
                out.truncate(at);
            }
            8 if !other.is_empty() => {
                let keep = self.pos(len + 1);
                let from = self.pos(other.len());
                out.truncate(keep);
                out.extend_from_slice(&other[from..]);
            }
            _ if len > 0 => {
                // A varint that never ends, or a huge LEB128 length.
                let i = self.pos(len);
                let n = self.rng.random_range(1..=10).min(len - i);
                out[i..i + n].fill(0xff);
            }
            _ => out.push(self.rng.random()),
        }
    }
}

fn insert(out: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let tail = out.split_off(at);
    out.extend_from_slice(bytes);
    out.extend_from_slice(&tail);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_inputs() {
        let (mut a, mut b) = (Mutator::new(3), Mutator::new(3));
        for _ in 0..1000 {
            assert_eq!(
                a.next(b"hello world", b"other"),
                b.next(b"hello world", b"other")
            );
        }
    }
}
