//! Random identifiers drawn outside the deterministic core: client ids,
//! data-directory incarnations, local cluster ids. (The core takes its
//! randomness only from the seed it is given; never call this from it.)

/// 64 random bits, never 0 (0 means "unknown" on the wire).
pub fn nonzero_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS: good enough to keep ids apart.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish() | 1
}
