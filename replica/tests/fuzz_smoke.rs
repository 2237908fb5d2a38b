//! Every fuzz target (`kuberaft::fuzzing`), run without libFuzzer on the
//! stable toolchain: over its seeds and the regression inputs checked in
//! under `fuzz/regressions/<target>/`, then
//! over a bounded number of deterministic mutations of them (counted, not
//! timed: `RAFT_FUZZ_ITERATIONS`, default 20 000 per target).
//!
//! Besides the targets' own checks, no single allocation may exceed what
//! the input can justify (1 MiB plus 16 bytes per input byte): a length
//! prefix read from hostile bytes must never be believed before the bytes
//! are there.
//!
//! The seed files under `fuzz/seeds/` are what the targets' generators
//! produce (checked here; `RAFT_FUZZ_WRITE_SEEDS=1` rewrites them).
//! A failing input is written to `$TMPDIR/kuberaft-fuzz-failures/` and can
//! be replayed with `cargo fuzz run <target> <file>`, or added to
//! `fuzz/regressions/<target>/` once fixed.

use kuberaft::fuzzing::mutate::Mutator;
use kuberaft::fuzzing::{TARGETS, Target, target};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};

/// Records the largest allocation each thread makes.
struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| {
        if size > l.get() {
            l.set(size);
        }
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

const DEFAULT_ITERATIONS: u64 = 20_000;

fn iterations() -> u64 {
    match std::env::var("RAFT_FUZZ_ITERATIONS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("RAFT_FUZZ_ITERATIONS={v:?} is not a number of inputs")),
        Err(_) => DEFAULT_ITERATIONS,
    }
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of a directory, by name; none if it does not exist.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| {
            let path = e.expect("listing a fuzz input directory").path();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.display().to_string(), bytes)
        })
        .collect();
    out.sort();
    out
}

/// Runs one input; on a failure (a panic, or an oversized allocation) says
/// which input and keeps it for replay.
fn run_one(t: &Target, origin: &str, input: &[u8]) {
    LARGEST.with(|l| l.set(0));
    let outcome = catch_unwind(AssertUnwindSafe(|| (t.run)(input)));
    let largest = LARGEST.with(|l| l.get());
    let bound = (1 << 20) + 16 * input.len();
    if outcome.is_ok() && largest <= bound {
        return;
    }
    let dir = std::env::temp_dir().join("kuberaft-fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{}-{:08x}", t.name, fnv1a(input)));
    let _ = std::fs::write(&path, input);
    let replay = format!(
        "target {} failed on {origin} ({} bytes, kept in {}; replay: \
         RUSTC_BOOTSTRAP=1 cargo fuzz run {} {})",
        t.name,
        input.len(),
        path.display(),
        t.name,
        path.display()
    );
    match outcome {
        Err(panic) => {
            eprintln!("{replay}");
            resume_unwind(panic)
        }
        Ok(()) => panic!(
            "{replay}: one allocation took {largest} bytes, more than the {bound} this input \
             can justify (a length prefix believed before its bytes arrived?)"
        ),
    }
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn fuzz(name: &str) {
    let t = target(name).expect("a fuzz target of that name");
    let mut inputs: Vec<(String, Vec<u8>)> = (t.seeds)()
        .into_iter()
        .enumerate()
        .map(|(i, s)| (format!("generated seed {i}"), s))
        .collect();
    inputs.extend(files(&fuzz_dir().join("regressions").join(name)));
    for (origin, input) in &inputs {
        run_one(t, origin, input);
    }
    let mut mutator = Mutator::new(u64::from(fnv1a(name.as_bytes())));
    for i in 0..iterations() {
        let base = &inputs[i as usize % inputs.len()].1;
        let other = &inputs[(i as usize * 7 + 3) % inputs.len()].1;
        let input = mutator.next(base, other);
        run_one(t, &format!("mutation {i}"), &input);
    }
}

#[test]
fn wal() {
    fuzz("wal");
}

#[test]
fn peer_message() {
    fuzz("peer_message");
}

#[test]
fn snapshot_chunks() {
    fuzz("snapshot_chunks");
}

#[test]
fn kv_snapshot() {
    fuzz("kv_snapshot");
}

#[test]
fn kv_command() {
    fuzz("kv_command");
}

#[test]
fn client_request() {
    fuzz("client_request");
}

#[test]
fn config_file() {
    fuzz("config_file");
}

#[test]
fn every_target_is_tested_here_and_has_a_cargo_fuzz_target() {
    let here = include_str!("fuzz_smoke.rs");
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for t in TARGETS {
        assert!(
            here.contains(&format!("fn {}() {{\n    fuzz(\"{}\");", t.name, t.name)),
            "fuzz_smoke.rs has no test for target {}",
            t.name
        );
        assert!(
            manifest.contains(&format!("path = \"fuzz_targets/{}.rs\"", t.name)),
            "fuzz/Cargo.toml has no target {}",
            t.name
        );
        let source = fuzz_dir()
            .join("fuzz_targets")
            .join(format!("{}.rs", t.name));
        let text = std::fs::read_to_string(&source)
            .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert!(
            text.contains(&format!("kuberaft::fuzzing::{}::run(data)", t.name)),
            "{} does not run target {}",
            source.display(),
            t.name
        );
    }
}

#[test]
fn the_seed_files_are_what_the_generators_make() {
    let write = std::env::var_os("RAFT_FUZZ_WRITE_SEEDS").is_some();
    for t in TARGETS {
        let dir = fuzz_dir().join("seeds").join(t.name);
        let expected: Vec<(String, Vec<u8>)> = (t.seeds)()
            .into_iter()
            .enumerate()
            .map(|(i, s)| (dir.join(format!("seed-{i:02}")).display().to_string(), s))
            .collect();
        if write {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("creating the seed directory");
            for (path, bytes) in &expected {
                std::fs::write(path, bytes).expect("writing a seed");
            }
        }
        assert!(
            files(&dir) == expected,
            "{} is not what the generator of target {} makes; run \
             RAFT_FUZZ_WRITE_SEEDS=1 cargo test --release -p kuberaft-replica --test fuzz_smoke \
             the_seed_files and commit the result",
            dir.display(),
            t.name
        );
    }
}
