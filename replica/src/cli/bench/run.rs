//! Sending the load and timing every request.
//!
//! - simple: every client is one task sending its requests back to back,
//!   so `clients` requests are in flight at any moment;
//! - blast: every request is a task of its own, at most `clients` in
//!   flight; each in-flight slot owns a client (a kuberaft client keeps one
//!   write per group in flight, so a slot is a session) and its recorder.
//!
//! A run is bounded by its count or its duration, and every request by the
//! timeout (the client's own retries included); a request that fails or
//! times out counts as an error. Latency is from just before the request
//! is handed to the client to just after its answer; throughput is the
//! successful requests over the time from the first request to the last
//! answer, so requests in flight when a `--duration` ends are waited for
//! and counted.

use super::options::{Mode, Stop};
use super::stats::{Recorder, Summary};
use super::target::Target;
use super::workload::{self, Op, ReadConsistency, Workload};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Beyond the request timeout, how long the run waits for a client that
/// does not return (its own deadline should have ended it).
const GRACE: Duration = Duration::from_secs(5);

/// What one run sends.
#[derive(Clone, Debug)]
pub struct Load {
    pub mode: Mode,
    pub stop: Stop,
    pub workload: Workload,
    pub seed: u64,
    pub timeout: Duration,
}

/// Runs `load` with `targets` as the clients (blast: one per slot in
/// flight), adding each completed request to `done`.
pub async fn run<T: Target>(targets: &[Arc<T>], load: &Load, done: Arc<AtomicU64>) -> Summary {
    match load.mode {
        Mode::Simple => simple(targets, load, done).await,
        Mode::Blast => blast(targets, load, done).await,
    }
}

async fn simple<T: Target>(targets: &[Arc<T>], load: &Load, done: Arc<AtomicU64>) -> Summary {
    let start = Instant::now();
    let value = workload::value(load.workload.value_size);
    let mut tasks = JoinSet::new();
    for (i, target) in targets.iter().enumerate() {
        let target = target.clone();
        let mut ops = load.workload.stream(load.seed, i as u64);
        let (value, done, load) = (value.clone(), done.clone(), load.clone());
        tasks.spawn(async move {
            let mut rec = Recorder::new(start);
            let mut sent = 0u64;
            while more(load.stop, sent, start) {
                sent += 1;
                let op = ops.next_op();
                one(
                    &*target,
                    op,
                    &value,
                    load.workload.reads,
                    load.timeout,
                    &mut rec,
                )
                .await;
                done.fetch_add(1, Ordering::Relaxed);
            }
            rec
        });
    }
    let mut total = Recorder::new(start);
    while let Some(result) = tasks.join_next().await {
        total.merge(joined(result));
    }
    total.summary(start.elapsed())
}

/// A blast slot: a client, its operations and its measurements.
struct Slot<T> {
    target: Arc<T>,
    ops: workload::OpStream,
    rec: Recorder,
}

async fn blast<T: Target>(targets: &[Arc<T>], load: &Load, done: Arc<AtomicU64>) -> Summary {
    let start = Instant::now();
    let value = workload::value(load.workload.value_size);
    let in_flight = targets.len();
    let slots: Arc<Mutex<Vec<Slot<T>>>> = Arc::new(Mutex::new(
        targets
            .iter()
            .enumerate()
            .map(|(i, t)| Slot {
                target: t.clone(),
                ops: load.workload.stream(load.seed, i as u64),
                rec: Recorder::new(start),
            })
            .collect(),
    ));
    let permits = Arc::new(Semaphore::new(in_flight));
    let mut sent = 0u64;
    while more(load.stop, sent, start) {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        if !more(load.stop, sent, start) {
            break;
        }
        sent += 1;
        let mut slot = slots
            .lock()
            .expect("not poisoned")
            .pop()
            .expect("a permit stands for a free slot");
        let (slots, value, done) = (slots.clone(), value.clone(), done.clone());
        let (reads, timeout) = (load.workload.reads, load.timeout);
        tokio::spawn(async move {
            let op = slot.ops.next_op();
            one(&*slot.target, op, &value, reads, timeout, &mut slot.rec).await;
            done.fetch_add(1, Ordering::Relaxed);
            slots.lock().expect("not poisoned").push(slot);
            drop(permit);
        });
    }
    // Every slot back: every request answered (or timed out).
    let all = u32::try_from(in_flight).expect("in flight is bounded by the options");
    let _all = tokio::time::timeout(load.timeout + GRACE, permits.acquire_many(all))
        .await
        .expect("every request ends within its timeout")
        .expect("the semaphore is never closed");
    let elapsed = start.elapsed();
    let mut total = Recorder::new(start);
    for slot in slots.lock().expect("not poisoned").drain(..) {
        total.merge(slot.rec);
    }
    total.summary(elapsed)
}

/// Whether a client that has sent `sent` requests sends another.
fn more(stop: Stop, sent: u64, start: Instant) -> bool {
    match stop {
        Stop::Requests(n) => sent < n,
        Stop::Duration(d) => start.elapsed() < d,
    }
}

/// Sends one operation and records how it went.
async fn one<T: Target>(
    target: &T,
    op: Op,
    value: &Bytes,
    reads: ReadConsistency,
    timeout: Duration,
    rec: &mut Recorder,
) {
    let sent = Instant::now();
    let call = async {
        match op {
            Op::Put { key } => target.put(key, value.clone()).await,
            Op::Get { key } => target.get(key, reads).await,
        }
    };
    let result = tokio::time::timeout(timeout + GRACE, call).await;
    let now = Instant::now();
    match result {
        Ok(Ok(())) => rec.ok(now - sent, now),
        Ok(Err(e)) => rec.error(&e, now),
        Err(_) => rec.error("no answer within the request timeout", now),
    }
}

/// Writes, unmeasured, the keys `keys(i)` with client `i`: connections,
/// sessions and the keys a read workload needs are in place before the
/// clock starts. Returns the errors seen (count, one message).
pub async fn write_keys<T: Target>(
    targets: &[Arc<T>],
    keys: impl Fn(usize) -> Vec<u64>,
    value_size: usize,
    timeout: Duration,
    done: Arc<AtomicU64>,
) -> (u64, Option<String>) {
    let value = workload::value(value_size);
    let mut tasks = JoinSet::new();
    for (i, target) in targets.iter().enumerate() {
        let (target, value, done) = (target.clone(), value.clone(), done.clone());
        let mine = keys(i);
        tasks.spawn(async move {
            let mut rec = Recorder::new(Instant::now());
            for k in mine {
                let op = Op::Put {
                    key: workload::key(k),
                };
                one(
                    &*target,
                    op,
                    &value,
                    ReadConsistency::Linearizable,
                    timeout,
                    &mut rec,
                )
                .await;
                done.fetch_add(1, Ordering::Relaxed);
            }
            rec
        });
    }
    let mut total = Recorder::new(Instant::now());
    while let Some(result) = tasks.join_next().await {
        total.merge(joined(result));
    }
    let s = total.summary(Duration::ZERO);
    (s.errors, s.error_kinds.into_keys().next())
}

/// A client task's recorder; a panic in the task is the run's panic.
fn joined(result: Result<Recorder, tokio::task::JoinError>) -> Recorder {
    match result {
        Ok(rec) => rec,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("a client task was cancelled: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// An in-memory store that answers after a fixed delay and fails every
    /// write to a key ending in 7.
    #[derive(Default)]
    struct Fake {
        in_flight: AtomicU64,
        most_in_flight: AtomicU64,
        writes: Mutex<BTreeMap<Bytes, usize>>,
    }

    impl Target for Fake {
        async fn put(&self, key: Bytes, value: Bytes) -> Result<(), String> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(1)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if key.ends_with(b"7") {
                return Err("keys ending in 7 are refused".into());
            }
            *self.writes.lock().unwrap().entry(key).or_default() += value.len();
            Ok(())
        }
        async fn get(&self, _key: Bytes, _reads: ReadConsistency) -> Result<(), String> {
            Ok(())
        }
    }

    fn load(mode: Mode, stop: Stop) -> Load {
        Load {
            mode,
            stop,
            workload: Workload {
                keys: 100,
                value_size: 8,
                read_percent: 50,
                reads: ReadConsistency::Linearizable,
            },
            seed: 1,
            timeout: Duration::from_secs(5),
        }
    }

    fn fakes(n: usize) -> (Arc<Fake>, Vec<Arc<Fake>>) {
        let fake = Arc::new(Fake::default());
        (fake.clone(), (0..n).map(|_| fake.clone()).collect())
    }

    #[tokio::test]
    async fn simple_sends_clients_times_requests_and_counts_every_outcome() {
        let (fake, targets) = fakes(4);
        let done = Arc::new(AtomicU64::new(0));
        let s = run(
            &targets,
            &load(Mode::Simple, Stop::Requests(50)),
            done.clone(),
        )
        .await;
        assert_eq!(s.ops + s.errors, 200);
        assert_eq!(done.load(Ordering::SeqCst), 200);
        assert!(s.errors > 0 && s.error_kinds.contains_key("keys ending in 7 are refused"));
        assert!(fake.most_in_flight.load(Ordering::SeqCst) <= 4);
        assert_eq!(s.per_second.iter().sum::<u64>(), 200);
        // Half the requests are writes, which take the fake 1 ms.
        assert!(
            s.p99_ms >= 1.0,
            "the fake's delay is measured: {}",
            s.p99_ms
        );
    }

    #[tokio::test]
    async fn blast_keeps_at_most_its_slots_in_flight_and_sends_exactly_n() {
        let (fake, targets) = fakes(8);
        let done = Arc::new(AtomicU64::new(0));
        let s = run(&targets, &load(Mode::Blast, Stop::Requests(100)), done).await;
        assert_eq!(s.ops + s.errors, 100);
        let most = fake.most_in_flight.load(Ordering::SeqCst);
        assert!((1..=8).contains(&most), "{most} in flight");
    }

    #[tokio::test]
    async fn a_duration_bounds_both_modes() {
        for mode in [Mode::Simple, Mode::Blast] {
            let (_, targets) = fakes(3);
            let d = Duration::from_millis(200);
            let s = run(&targets, &load(mode, Stop::Duration(d)), Arc::default()).await;
            assert!(s.ops + s.errors > 0, "{mode:?} sent requests");
            assert!(s.duration >= d, "{mode:?} ran its duration");
        }
    }

    #[tokio::test]
    async fn write_keys_writes_each_key_given_once() {
        let (fake, targets) = fakes(3);
        let (errors, message) = write_keys(
            &targets,
            |i| (i as u64..20).step_by(3).collect(),
            4,
            Duration::from_secs(5),
            Arc::default(),
        )
        .await;
        assert_eq!(errors, 2, "keys 7 and 17 are refused");
        assert!(message.unwrap().contains("refused"));
        let writes = fake.writes.lock().unwrap();
        assert_eq!(writes.len(), 18);
        assert!(writes.values().all(|&bytes| bytes == 4));
    }
}
