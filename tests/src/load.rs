//! A bounded write load: several concurrent writers, each with its own
//! client, writing distinct keys, and a record of every write (when it was
//! invoked, when it completed, whether it was acknowledged).
//!
//! Every key is written once, with a value derived from the key, so a read
//! tells exactly whether a write took effect: an acknowledged write must be
//! readable with its value; a write that failed (timed out, say) is
//! indeterminate and may or may not be there, but if it is, with its value.
//! The load stops after `writes_per_writer` writes per writer or after
//! `duration`, whichever comes first.

use kuberaft::client::Client;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What to write.
#[derive(Clone, Debug)]
pub struct WriteLoad {
    pub writers: usize,
    pub writes_per_writer: usize,
    pub duration: Duration,
    pub value_len: usize,
    /// Keys are `<prefix><writer>-<n>`.
    pub key_prefix: String,
    /// Each write's deadline, retries included.
    pub request_timeout: Duration,
}

impl Default for WriteLoad {
    fn default() -> Self {
        WriteLoad {
            writers: 4,
            writes_per_writer: 100,
            duration: Duration::from_secs(20),
            value_len: 32,
            key_prefix: "load-".into(),
            request_timeout: Duration::from_secs(20),
        }
    }
}

/// How a write ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Acked,
    /// Not acknowledged: it may or may not have taken effect.
    Indeterminate(String),
}

#[derive(Clone, Debug)]
pub struct WriteRecord {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub invoked: Instant,
    pub completed: Instant,
    pub outcome: Outcome,
    /// From the response header: the term the write committed in and the
    /// leader that committed it (`None` if not acknowledged).
    pub term: Option<u64>,
    pub leader: Option<u64>,
}

impl WriteRecord {
    pub fn latency(&self) -> Duration {
        self.completed - self.invoked
    }
    pub fn acked(&self) -> bool {
        self.outcome == Outcome::Acked
    }
}

/// Everything a load did.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub records: Vec<WriteRecord>,
    pub elapsed: Duration,
}

impl LoadReport {
    pub fn acked(&self) -> impl Iterator<Item = &WriteRecord> {
        self.records.iter().filter(|r| r.acked())
    }

    pub fn indeterminate(&self) -> impl Iterator<Item = &WriteRecord> {
        self.records.iter().filter(|r| !r.acked())
    }

    /// Acknowledged writes per second.
    pub fn throughput(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs == 0.0 {
            0.0
        } else {
            self.acked().count() as f64 / secs
        }
    }

    /// The latencies of acknowledged writes, sorted.
    pub fn latencies(&self) -> Vec<Duration> {
        let mut l: Vec<Duration> = self.acked().map(WriteRecord::latency).collect();
        l.sort();
        l
    }
}

/// The `p`-quantile (0.0 to 1.0) of sorted values, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The value written under `key`: the key, then filler up to `len` bytes.
pub fn value_for(key: &[u8], len: usize) -> Vec<u8> {
    let mut v = key.to_vec();
    v.push(b'=');
    while v.len() < len {
        v.push(b'a' + (v.len() % 26) as u8);
    }
    v
}

/// A load in progress.
pub struct RunningLoad {
    records: Arc<Mutex<Vec<WriteRecord>>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    started: Instant,
}

impl WriteLoad {
    /// Starts the writers, one client each from `make_client`.
    pub fn start(&self, mut make_client: impl FnMut() -> Client) -> RunningLoad {
        let records = Arc::new(Mutex::new(Vec::new()));
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let started = Instant::now();
        let end = started + self.duration;
        for w in 0..self.writers {
            let client = make_client();
            let records = records.clone();
            let stop_rx = stop_rx.clone();
            let load = self.clone();
            tasks.spawn(async move {
                for n in 0..load.writes_per_writer {
                    if *stop_rx.borrow() || Instant::now() >= end {
                        break;
                    }
                    let key = format!("{}{w}-{n}", load.key_prefix).into_bytes();
                    let value = value_for(&key, load.value_len);
                    let invoked = Instant::now();
                    let result = client.put(&key, &value).await;
                    let completed = Instant::now();
                    let (outcome, header) = match result {
                        Ok(r) => (Outcome::Acked, r.header),
                        Err(e) => (Outcome::Indeterminate(e.to_string()), None),
                    };
                    records.lock().expect("not poisoned").push(WriteRecord {
                        key,
                        value,
                        invoked,
                        completed,
                        outcome,
                        term: header.as_ref().map(|h| h.term),
                        leader: header.as_ref().map(|h| h.leader),
                    });
                }
            });
        }
        RunningLoad {
            records,
            stop,
            tasks,
            started,
        }
    }

    /// Runs the load to its end.
    pub async fn run(&self, make_client: impl FnMut() -> Client) -> LoadReport {
        self.start(make_client).finish().await
    }
}

impl RunningLoad {
    /// Writes acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.records
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|r| r.acked())
            .count()
    }

    /// The first acknowledgement of a write invoked at or after `t`.
    pub fn first_ack_invoked_after(&self, t: Instant) -> Option<Instant> {
        self.records
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|r| r.acked() && r.invoked >= t)
            .map(|r| r.completed)
            .min()
    }

    /// The first acknowledgement of a write committed in a term after
    /// `term` (by a leader elected after it).
    pub fn first_ack_in_term_after(&self, term: u64) -> Option<Instant> {
        self.records
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|r| r.acked() && r.term.is_some_and(|t| t > term))
            .map(|r| r.completed)
            .min()
    }

    /// Tells the writers to stop after their current write, and waits.
    pub async fn stop(self) -> LoadReport {
        let _ = self.stop.send(true);
        self.finish().await
    }

    /// Waits for the writers to finish.
    pub async fn finish(mut self) -> LoadReport {
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(e) = joined
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        let elapsed = self.started.elapsed();
        let records = std::mem::take(&mut *self.records.lock().expect("not poisoned"));
        LoadReport { records, elapsed }
    }
}
