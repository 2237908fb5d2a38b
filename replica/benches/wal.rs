//! Benchmark of the shared write-ahead log against the disk it runs on.
//!
//! Measures, on one directory of one disk in one run: the raw limits (fsyncs
//! per second of 4 KiB appends, sequential write bandwidth), the log's
//! appends per second with 1 to 256 concurrent proposers over 1 and 64
//! groups (each proposer waits for its append to be durable before the
//! next, like a client), large sequential writes through the log, and the
//! replay time of a 1 GiB log. Prints a table and checks the goals of
//! issue 3.
//!
//! `cargo bench -p kuberaft-replica --bench wal`
//! - `KUBERAFT_BENCH_DIR`: where to write (default: a fresh directory under
//!   the current one; never tmpfs if the figures are to mean anything);
//! - `KUBERAFT_BENCH_QUICK=1`: a smoke run of a few seconds;
//! - `KUBERAFT_BENCH_REPLAY_ONLY=N`: only the replay, N times, on a log kept
//!   in `KUBERAFT_BENCH_DIR` (reused by later runs: compare two builds on
//!   the same files).

use bytes::Bytes;
use kuberaft::raft::{Entry, GroupId, LogIndex, NodeId, Payload, Term};
use kuberaft::storage::{GroupWrite, Identity, Ticket, Wal, WalOptions};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Plan {
    quick: bool,
    /// How long each throughput measurement runs.
    run: Duration,
    /// Bytes of the sequential-write measurements.
    sequential: u64,
    /// Bytes of the log whose replay is timed.
    replay: u64,
}

impl Plan {
    fn from_env() -> Plan {
        let quick = std::env::var("KUBERAFT_BENCH_QUICK").is_ok_and(|v| v != "0");
        if quick {
            Plan {
                quick,
                run: Duration::from_millis(400),
                sequential: 64 << 20,
                replay: 64 << 20,
            }
        } else {
            Plan {
                quick,
                run: Duration::from_secs(3),
                sequential: 256 << 20,
                replay: 1 << 30,
            }
        }
    }
}

fn identity() -> Identity {
    Identity {
        cluster_id: "bench".into(),
        node_id: NodeId(1),
    }
}

/// A fresh, empty directory under `root`.
fn fresh(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("creating a bench directory");
    dir
}

/// The file system `path` is on, from /proc/mounts (longest mount point).
fn file_system(path: &Path) -> String {
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, at, fs) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(at)
                .then(|| (at.len(), format!("{fs} on {dev}, mounted at {at}")))
        })
        .max()
        .map_or_else(|| "unknown file system".into(), |(_, d)| d)
}

fn sync_data(f: &File) {
    f.sync_data().expect("fdatasync");
}

/// Raw limit 1: 4 KiB appends to a plain file, each followed by fdatasync.
fn raw_fsyncs_per_sec(root: &Path, plan: &Plan) -> f64 {
    let dir = fresh(root, "raw-fsync");
    let mut f = File::create(dir.join("file")).expect("create");
    let block = noise(4096, 7);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < plan.run {
        f.write_all(&block).expect("write");
        sync_data(&f);
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = fs::remove_dir_all(dir);
    rate
}

/// For comparison: 4 KiB writes in place into a preallocated file (what the
/// log does inside a segment), each followed by fdatasync. No file size
/// change to journal, so often much cheaper than an append.
fn raw_preallocated_fsyncs_per_sec(root: &Path, plan: &Plan) -> f64 {
    let dir = fresh(root, "raw-prealloc");
    let f = File::create(dir.join("file")).expect("create");
    let size: u64 = 256 << 20;
    // SAFETY: plain syscall on an open descriptor.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, size as libc::off_t) };
    if rc != 0 {
        f.set_len(size).expect("set_len");
    }
    sync_data(&f);
    let block = noise(4096, 8);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < plan.run && (n + 1) * 4096 <= size {
        f.write_all_at(&block, n * 4096).expect("write");
        sync_data(&f);
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let _ = fs::remove_dir_all(dir);
    rate
}

/// Raw limit 2: large writes, one fdatasync at the end.
fn raw_sequential_mb_per_sec(root: &Path, plan: &Plan) -> f64 {
    let dir = fresh(root, "raw-seq");
    let mut f = File::create(dir.join("file")).expect("create");
    let blocks: Vec<Vec<u8>> = (0..16).map(|i| noise(1 << 20, 100 + i)).collect();
    let start = Instant::now();
    for i in 0..plan.sequential >> 20 {
        f.write_all(&blocks[i as usize % 16]).expect("write");
    }
    sync_data(&f);
    let rate = plan.sequential as f64 / 1e6 / start.elapsed().as_secs_f64();
    let _ = fs::remove_dir_all(dir);
    rate
}

/// Incompressible bytes (xorshift), so that a disk or host that compresses
/// or deduplicates cannot flatter one measurement over another.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn command(len: usize, seed: u64) -> Payload {
    Payload::Command(Bytes::from(noise(len, seed)))
}

struct Proposers {
    proposers: usize,
    groups: u64,
    appends_per_sec: f64,
    fsyncs_per_sec: f64,
    mean_latency: Duration,
}

/// `proposers` threads, each appending one 256-byte entry to its group and
/// waiting until it is durable before the next.
fn proposers(root: &Path, plan: &Plan, proposers: usize, groups: u64) -> Proposers {
    let dir = fresh(root, &format!("log-p{proposers}-g{groups}"));
    let wal = Wal::open(&dir, identity(), WalOptions::default()).expect("open");
    // Next index of each group; held while submitting so that submission
    // order is index order.
    let next: Vec<Mutex<u64>> = (0..groups).map(|_| Mutex::new(1)).collect();
    let stop = AtomicBool::new(false);
    let appends = AtomicU64::new(0);
    let latency_ns = AtomicU64::new(0);
    let payload = command(256, 1);
    let fsyncs_before = wal.stats().fsyncs;
    let start = Instant::now();
    std::thread::scope(|s| {
        for p in 0..proposers {
            let (wal, next, stop, appends, latency_ns, payload) =
                (&wal, &next, &stop, &appends, &latency_ns, &payload);
            s.spawn(move || {
                let g = (p as u64) % groups;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let ticket = {
                        let mut n = next[g as usize].lock().expect("lock");
                        let index = LogIndex(*n);
                        *n += 1;
                        wal.submit_ticket(vec![GroupWrite {
                            group: GroupId(g),
                            snapshot: None,
                            entries: vec![Entry {
                                term: Term(1),
                                index,
                                payload: payload.clone(),
                            }],
                            hard_state: None,
                        }])
                    };
                    ticket.wait().expect("append");
                    appends.fetch_add(1, Ordering::Relaxed);
                    latency_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(plan.run);
        stop.store(true, Ordering::Relaxed);
    });
    let secs = start.elapsed().as_secs_f64();
    let n = appends.load(Ordering::Relaxed);
    let fsyncs = wal.stats().fsyncs - fsyncs_before;
    drop(wal);
    let _ = fs::remove_dir_all(dir);
    Proposers {
        proposers,
        groups,
        appends_per_sec: n as f64 / secs,
        fsyncs_per_sec: fsyncs as f64 / secs,
        mean_latency: Duration::from_nanos(latency_ns.load(Ordering::Relaxed) / n.max(1)),
    }
}

/// 1 MiB entries submitted back to back (up to 64 in flight), all waited for.
fn log_sequential_mb_per_sec(root: &Path, plan: &Plan) -> f64 {
    let dir = fresh(root, "log-seq");
    let wal = Wal::open(&dir, identity(), WalOptions::default()).expect("open");
    let payloads: Vec<Payload> = (0..16).map(|i| command(1 << 20, 100 + i)).collect();
    let count = plan.sequential >> 20;
    let mut in_flight: std::collections::VecDeque<Ticket> = Default::default();
    let start = Instant::now();
    for i in 0..count {
        if in_flight.len() >= 64
            && let Some(t) = in_flight.pop_front()
        {
            t.wait().expect("append");
        }
        in_flight.push_back(wal.submit_ticket(vec![GroupWrite {
            group: GroupId(0),
            snapshot: None,
            entries: vec![Entry {
                term: Term(1),
                index: LogIndex(i + 1),
                payload: payloads[i as usize % 16].clone(),
            }],
            hard_state: None,
        }]));
    }
    for t in in_flight {
        t.wait().expect("append");
    }
    let rate = plan.sequential as f64 / 1e6 / start.elapsed().as_secs_f64();
    drop(wal);
    let _ = fs::remove_dir_all(dir);
    rate
}

/// Drops the page cache of every file under `dir` (they are synced, so
/// their pages are clean), so that replay reads from the disk.
fn evict(dir: &Path) {
    for e in fs::read_dir(dir).expect("list").flatten() {
        let path = e.path();
        if path.is_dir() {
            evict(&path);
        } else if let Ok(f) = OpenOptions::new().read(true).open(&path) {
            // SAFETY: a plain advisory syscall on an open descriptor.
            unsafe {
                libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
            }
        }
    }
}

struct Replay {
    bytes: u64,
    entries: u64,
    cold: Duration,
    warm: Duration,
}

/// Writes a log of `bytes` bytes (1 KiB entries, 64 groups) into `dir`;
/// returns the bytes written and the number of entries.
fn write_replay_log(dir: &Path, bytes: u64) -> (u64, u64) {
    let wal = Wal::open(dir, identity(), WalOptions::default()).expect("open");
    let payload = command(1024, 3);
    let per_batch = 256u64;
    let mut next = vec![1u64; 64];
    let mut tickets = Vec::new();
    let mut entries = 0u64;
    while wal.stats().bytes + (tickets.len() as u64) * per_batch * 1040 < bytes {
        let writes = (0..64)
            .map(|g| {
                let from = next[g];
                next[g] += per_batch / 64;
                GroupWrite {
                    group: GroupId(g as u64),
                    snapshot: None,
                    entries: (0..per_batch / 64)
                        .map(|i| Entry {
                            term: Term(1),
                            index: LogIndex(from + i),
                            payload: payload.clone(),
                        })
                        .collect(),
                    hard_state: None,
                }
            })
            .collect();
        entries += per_batch;
        tickets.push(wal.submit_ticket(writes));
        if tickets.len() >= 64 {
            for t in tickets.drain(..) {
                t.wait().expect("append");
            }
        }
    }
    for t in tickets {
        t.wait().expect("append");
    }
    (wal.stats().bytes, entries)
}

/// Times opening the log of `dir` (which holds `entries` entries): cold
/// (page cache dropped) and warm.
fn time_replay(dir: &Path, entries: u64) -> (Duration, Duration) {
    evict(dir);
    let start = Instant::now();
    let mut wal = Wal::open(dir, identity(), WalOptions::default()).expect("reopen");
    let cold = start.elapsed();
    let recovered = wal.take_recovered();
    let got: u64 = recovered.values().map(|s| s.entries.len() as u64).sum();
    assert_eq!(got, entries, "replay returned every entry");
    drop(recovered);
    drop(wal);

    let start = Instant::now();
    let wal = Wal::open(dir, identity(), WalOptions::default()).expect("reopen");
    let warm = start.elapsed();
    drop(wal);
    (cold, warm)
}

/// Writes a log of `plan.replay` bytes (1 KiB entries, 64 groups), then
/// times opening it: cold (page cache dropped) and warm.
fn replay(root: &Path, plan: &Plan) -> Replay {
    let dir = fresh(root, "replay");
    let (bytes, entries) = write_replay_log(&dir, plan.replay);
    let (cold, warm) = time_replay(&dir, entries);
    let _ = fs::remove_dir_all(dir);
    Replay {
        bytes,
        entries,
        cold,
        warm,
    }
}

/// `KUBERAFT_BENCH_REPLAY_ONLY=N`: only the replay measurement, N times, on
/// a log kept under the bench directory (written by the first such run and
/// reused by the next ones, so that two builds can be compared on the same
/// files, alternately).
fn replay_only(root: &Path, plan: &Plan, runs: usize) {
    let dir = root.join(format!("replay-{}MiB", plan.replay >> 20));
    let count_file = root.join(format!("replay-{}MiB.entries", plan.replay >> 20));
    let entries = match fs::read_to_string(&count_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        Some(n) if dir.is_dir() => n,
        _ => {
            let _ = fs::remove_dir_all(&dir);
            let (_, entries) = write_replay_log(&dir, plan.replay);
            fs::write(&count_file, entries.to_string()).expect("writing the entry count");
            entries
        }
    };
    for run in 1..=runs {
        let load = load_average();
        let (cold, warm) = time_replay(&dir, entries);
        println!(
            "replay run {run}: {} MiB, {entries} entries: {:.2} s from disk, {:.2} s from page cache (load average {load})",
            plan.replay >> 20,
            cold.as_secs_f64(),
            warm.as_secs_f64()
        );
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn runs(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let plan = Plan::from_env();
    let (root, own_root) = match std::env::var_os("KUBERAFT_BENCH_DIR") {
        Some(d) => (PathBuf::from(d), false),
        None => (
            std::env::current_dir()
                .expect("current dir")
                .join(format!(".wal-bench-{}", std::process::id())),
            true,
        ),
    };
    fs::create_dir_all(&root).expect("creating the bench directory");
    if let Ok(runs) = std::env::var("KUBERAFT_BENCH_REPLAY_ONLY") {
        assert!(
            !own_root,
            "KUBERAFT_BENCH_REPLAY_ONLY keeps its log: set KUBERAFT_BENCH_DIR to where it should live"
        );
        let runs = runs.trim().parse().unwrap_or_else(|_| {
            panic!("KUBERAFT_BENCH_REPLAY_ONLY={runs:?}: give the number of replays, e.g. 3")
        });
        replay_only(&root, &plan, runs);
        return;
    }
    println!(
        "write-ahead log benchmark{}",
        if plan.quick { " (quick mode)" } else { "" }
    );
    println!("directory: {} ({})", root.display(), file_system(&root));
    println!(
        "machine: {} cores, {}; load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        load_average()
    );

    let raw_fsync = raw_fsyncs_per_sec(&root, &plan);
    let raw_prealloc = raw_preallocated_fsyncs_per_sec(&root, &plan);
    // The disk's bandwidth drifts (other tenants, host caches): alternate
    // raw and log runs and compare medians.
    let mut raw_runs = Vec::new();
    let mut log_runs = Vec::new();
    for _ in 0..if plan.quick { 1 } else { 5 } {
        raw_runs.push(raw_sequential_mb_per_sec(&root, &plan));
        log_runs.push(log_sequential_mb_per_sec(&root, &plan));
    }
    let raw_seq = median(&raw_runs);
    let log_seq = median(&log_runs);
    println!();
    println!("| measurement | result |");
    println!("|---|---|");
    println!("| raw: 4 KiB append + fdatasync (the raw limit) | {raw_fsync:.0} fsyncs/s |");
    println!(
        "| raw: 4 KiB write in place in a preallocated file + fdatasync | {raw_prealloc:.0} fsyncs/s |"
    );
    println!(
        "| raw: sequential 1 MiB writes + one fdatasync ({} MiB, median of {}) | {raw_seq:.0} MB/s (runs: {}) |",
        plan.sequential >> 20,
        raw_runs.len(),
        runs(&raw_runs)
    );

    // The disk's fsync rate drifts too: each configuration is compared with
    // a raw measurement taken right before it.
    let mut results = Vec::new();
    for groups in [1u64, 64] {
        for p in [1usize, 8, 64, 256] {
            let raw = raw_fsyncs_per_sec(&root, &plan);
            let r = proposers(&root, &plan, p, groups);
            println!(
                "| log: {p} proposers, {groups} group{}, 256 B entries | {:.0} appends/s ({:.1}x the {raw:.0} raw fsyncs/s measured just before), {:.0} fsyncs/s, {:.1} appends per fsync, mean latency {:.2} ms |",
                if groups == 1 { "" } else { "s" },
                r.appends_per_sec,
                r.appends_per_sec / raw,
                r.fsyncs_per_sec,
                r.appends_per_sec / r.fsyncs_per_sec.max(1e-9),
                r.mean_latency.as_secs_f64() * 1e3
            );
            results.push((r, raw));
        }
    }
    println!(
        "| log: 1 MiB entries back to back ({} MiB, median of {}, alternating with raw) | {log_seq:.0} MB/s ({:.0}% of raw; runs: {}) |",
        plan.sequential >> 20,
        log_runs.len(),
        100.0 * log_seq / raw_seq,
        runs(&log_runs)
    );
    let r = replay(&root, &plan);
    println!(
        "| log: replay of {} MiB ({} entries of 1 KiB, 64 groups) | {:.2} s from disk (page cache dropped), {:.2} s from page cache |",
        r.bytes >> 20,
        r.entries,
        r.cold.as_secs_f64(),
        r.warm.as_secs_f64()
    );

    println!();
    let at64 = results
        .iter()
        .filter(|(r, _)| r.proposers == 64)
        .map(|(r, raw)| (r.groups, r.appends_per_sec / raw))
        .collect::<Vec<_>>();
    let worst64 = at64.iter().map(|(_, x)| *x).fold(f64::INFINITY, f64::min);
    println!(
        "goal: 64 proposers >= 20x raw fsyncs/s: {} ({})",
        verdict(worst64 >= 20.0),
        at64.iter()
            .map(|(g, x)| format!("{x:.1}x with {g} group(s)"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    println!("load average at the end: {}", load_average());
    println!(
        "goal: large sequential writes >= 80% of raw bandwidth: {} ({:.0}%)",
        verdict(log_seq >= 0.8 * raw_seq),
        100.0 * log_seq / raw_seq
    );
    // Scaled to 1 GiB when the quick mode replays less.
    let per_gib = r.cold.as_secs_f64() * (1u64 << 30) as f64 / r.bytes.max(1) as f64;
    println!(
        "goal: replay of 1 GiB < 10 s: {} ({per_gib:.2} s per GiB from disk)",
        verdict(per_gib < 10.0)
    );
    if own_root {
        let _ = fs::remove_dir_all(&root);
    }
}

/// The 1-minute load average: other work on the machine skews the figures.
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
