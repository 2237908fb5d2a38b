//! Group commit: the node's writes to its log, made durable off the event
//! loop.
//!
//! A dedicated thread owns the [`LogStore`]. It takes every job queued since
//! its last fsync, appends them all, and makes them durable with one fsync;
//! whatever arrives while that fsync runs waits for the next one. So under
//! load one fsync covers the appends of many proposals of many groups, and
//! the event loop never blocks on the disk.
//!
//! Jobs complete in the order they were submitted. A job may carry no
//! writes at all: it then completes once everything before it is durable,
//! which is when messages that promise durability may be sent.

use crate::raft::{GroupId, LogIndex};
use crate::storage::{GroupWrite, LogStore};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

enum Job<T> {
    Write { writes: Vec<GroupWrite>, token: T },
    Compact { group: GroupId, index: LogIndex },
}

/// What the thread reports after each fsync.
#[derive(Debug)]
pub struct Persisted<T> {
    /// The tokens of the jobs made durable, in submission order.
    pub tokens: Vec<T>,
    /// How long the fsync took (zero if nothing needed syncing).
    pub sync_duration: Duration,
    /// Group writes covered by that fsync.
    pub writes: usize,
}

/// A storage failure: the replica must stop (it cannot promise durability).
#[derive(Debug)]
pub struct PersistFailed(pub String);

pub struct Persister<T> {
    jobs: Option<std_mpsc::Sender<Job<T>>>,
    thread: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Persister<T> {
    /// Starts the writer thread. Completions (or the one failure) arrive on
    /// `done`.
    pub fn start<S>(
        mut store: S,
        done: mpsc::UnboundedSender<Result<Persisted<T>, PersistFailed>>,
    ) -> Persister<T>
    where
        S: LogStore + Send + 'static,
    {
        let (tx, rx) = std_mpsc::channel::<Job<T>>();
        let thread = std::thread::Builder::new()
            .name("raft-wal".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    jobs.extend(rx.try_iter());
                    match write_all(&mut store, jobs) {
                        Ok(persisted) => {
                            if done.send(Ok(persisted)).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = done.send(Err(PersistFailed(e)));
                            return;
                        }
                    }
                }
            })
            .expect("spawning the write-ahead log thread");
        Persister {
            jobs: Some(tx),
            thread: Some(thread),
        }
    }

    /// Queues `writes`; `token` comes back in [`Persisted`] once they (and
    /// everything submitted before) are durable.
    pub fn submit(&self, writes: Vec<GroupWrite>, token: T) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(Job::Write { writes, token });
        }
    }

    /// Lets the log discard `group`'s entries up to `index`.
    pub fn compact(&self, group: GroupId, index: LogIndex) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(Job::Compact { group, index });
        }
    }

    /// Finishes what is queued and stops the thread.
    pub fn shutdown(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl<T> Drop for Persister<T> {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_all<S: LogStore, T>(store: &mut S, jobs: Vec<Job<T>>) -> Result<Persisted<T>, String> {
    let mut tokens = Vec::with_capacity(jobs.len());
    let mut writes = 0;
    for job in jobs {
        match job {
            Job::Write { writes: w, token } => {
                if !w.is_empty() {
                    store
                        .append(&w)
                        .map_err(|e| format!("appending to the write-ahead log failed: {e}"))?;
                    writes += w.len();
                }
                tokens.push(token);
            }
            Job::Compact { group, index } => store
                .compact(group, index)
                .map_err(|e| format!("compacting the write-ahead log failed: {e}"))?,
        }
    }
    let mut sync_duration = Duration::ZERO;
    if writes > 0 {
        let started = Instant::now();
        store
            .sync()
            .map_err(|e| format!("fsync of the write-ahead log failed: {e}"))?;
        sync_duration = started.elapsed();
    }
    Ok(Persisted {
        tokens,
        sync_duration,
        writes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Entry, HardState, Payload, RecoveredState, Term};
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    /// Counts appends and syncs; a sync waits until the test opens the
    /// gate, so jobs pile up behind it deterministically.
    #[derive(Clone)]
    struct GatedStore {
        log: Arc<Mutex<Vec<&'static str>>>,
        gate: Arc<Mutex<std_mpsc::Receiver<()>>>,
    }

    impl LogStore for GatedStore {
        type Error = std::io::Error;
        fn append(&mut self, _: &[GroupWrite]) -> Result<(), Self::Error> {
            self.log.lock().unwrap().push("append");
            Ok(())
        }
        fn sync(&mut self) -> Result<(), Self::Error> {
            let _ = self.gate.lock().unwrap().recv();
            self.log.lock().unwrap().push("sync");
            Ok(())
        }
        fn compact(&mut self, _: GroupId, _: LogIndex) -> Result<(), Self::Error> {
            Ok(())
        }
        fn recover(&mut self) -> Result<BTreeMap<GroupId, RecoveredState>, Self::Error> {
            Ok(BTreeMap::new())
        }
    }

    fn write(group: u64, index: u64) -> GroupWrite {
        GroupWrite {
            group: GroupId(group),
            snapshot: None,
            entries: vec![Entry {
                term: Term(1),
                index: LogIndex(index),
                payload: Payload::Empty,
            }],
            hard_state: Some(HardState::default()),
        }
    }

    #[tokio::test]
    async fn jobs_queued_during_an_fsync_share_the_next_one_and_complete_in_order() {
        let (open, gate) = std_mpsc::channel();
        let store = GatedStore {
            log: Arc::default(),
            gate: Arc::new(Mutex::new(gate)),
        };
        let (done, mut rx) = mpsc::unbounded_channel();
        let p = Persister::start(store.clone(), done);
        for i in 0..50u64 {
            p.submit(vec![write(i % 4, i + 1)], i);
        }
        p.submit(Vec::new(), 50);
        // Whatever the thread took before the gate opens, the rest waits
        // behind that first fsync and goes into the second.
        open.send(()).unwrap();
        open.send(()).unwrap();
        let mut tokens = Vec::new();
        let mut syncs = 0;
        while tokens.len() < 51 {
            let persisted = rx.recv().await.unwrap().unwrap();
            if persisted.writes > 0 {
                syncs += 1;
            }
            tokens.extend(persisted.tokens);
        }
        assert_eq!(
            tokens,
            (0..51).collect::<Vec<u64>>(),
            "completions keep submission order"
        );
        assert!(syncs <= 2, "group commit: 50 jobs took {syncs} fsyncs");
        let log = store.log.lock().unwrap();
        assert_eq!(log.iter().filter(|s| **s == "append").count(), 50);
    }
}
