//! What a run measured: latencies in an HDR histogram (microseconds, three
//! significant digits, so p99.9 of a few milliseconds is exact to 0.1%),
//! errors by message, and completions per second of the run.
//!
//! Every client records into its own [`Recorder`] (no shared lock on the
//! hot path); the run merges them at the end into a [`Summary`].

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The largest latency the histogram holds exactly (longer ones are
/// recorded as this): far beyond any request timeout a run allows.
const HIGHEST_US: u64 = 3_600_000_000;
/// Different error messages kept per run (the rest are only counted).
const ERROR_KINDS: usize = 8;

/// One client's measurements.
pub struct Recorder {
    latency: Histogram<u64>,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    /// Operations (successful or not) completed in each second of the run.
    per_second: Vec<u64>,
    start: Instant,
}

impl Recorder {
    /// A recorder of a run that started at `start`.
    pub fn new(start: Instant) -> Recorder {
        Recorder {
            latency: Histogram::new_with_bounds(1, HIGHEST_US, 3)
                .expect("constant bounds are valid"),
            errors: 0,
            error_kinds: BTreeMap::new(),
            per_second: Vec::new(),
            start,
        }
    }

    /// An operation that succeeded after `latency`, completing at `now`.
    pub fn ok(&mut self, latency: Duration, now: Instant) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(us.max(1));
        self.completed(now);
    }

    /// An operation that failed with `message`, completing at `now`. Its
    /// latency is not recorded: a timeout would otherwise pose as a slow
    /// success.
    pub fn error(&mut self, message: &str, now: Instant) {
        self.errors += 1;
        if let Some(n) = self.error_kinds.get_mut(message) {
            *n += 1;
        } else if self.error_kinds.len() < ERROR_KINDS {
            self.error_kinds.insert(message.to_string(), 1);
        }
        self.completed(now);
    }

    fn completed(&mut self, now: Instant) {
        let second = now.saturating_duration_since(self.start).as_secs() as usize;
        if self.per_second.len() <= second {
            self.per_second.resize(second + 1, 0);
        }
        self.per_second[second] += 1;
    }

    pub fn merge(&mut self, other: Recorder) {
        self.latency
            .add(&other.latency)
            .expect("recorders share their bounds");
        self.errors += other.errors;
        for (message, n) in other.error_kinds {
            if let Some(m) = self.error_kinds.get_mut(&message) {
                *m += n;
            } else if self.error_kinds.len() < ERROR_KINDS {
                self.error_kinds.insert(message, n);
            }
        }
        if self.per_second.len() < other.per_second.len() {
            self.per_second.resize(other.per_second.len(), 0);
        }
        for (mine, theirs) in self.per_second.iter_mut().zip(other.per_second) {
            *mine += theirs;
        }
    }

    /// The summary of a run that took `elapsed`.
    pub fn summary(self, elapsed: Duration) -> Summary {
        let ms = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        let ops = self.latency.len();
        let seconds = elapsed.as_secs_f64();
        Summary {
            ops,
            errors: self.errors,
            duration: elapsed,
            throughput: if seconds > 0.0 {
                ops as f64 / seconds
            } else {
                0.0
            },
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: self.latency.max() as f64 / 1000.0,
            mean_ms: if ops > 0 {
                self.latency.mean() / 1000.0
            } else {
                0.0
            },
            error_kinds: self.error_kinds,
            per_second: self.per_second,
            latency: self.latency,
        }
    }
}

/// A whole run's figures.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Operations that succeeded.
    pub ops: u64,
    /// Operations that failed (after the client's own retries).
    pub errors: u64,
    /// From the first request sent to the last answer received.
    pub duration: Duration,
    /// Successful operations per second.
    pub throughput: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// Up to a few distinct error messages, with how often each occurred.
    pub error_kinds: BTreeMap<String, u64>,
    /// Completions (successful or not) in each second of the run.
    pub per_second: Vec<u64>,
    /// Latencies in microseconds of the successful operations.
    pub latency: Histogram<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn quantiles_throughput_and_errors_come_out_of_the_merged_recorders() {
        let start = Instant::now();
        let mut a = Recorder::new(start);
        let mut b = Recorder::new(start);
        // 1..=1000 ms, spread over two recorders.
        for i in 1..=1000u64 {
            let r = if i % 2 == 0 { &mut a } else { &mut b };
            r.ok(ms(i), start + ms(i));
        }
        b.error("timed out", start + ms(1500));
        b.error("timed out", start + ms(1600));
        a.error("refused", start + ms(10));
        a.merge(b);
        let s = a.summary(Duration::from_secs(2));
        assert_eq!(s.ops, 1000);
        assert_eq!(s.errors, 3);
        assert_eq!(s.error_kinds["timed out"], 2);
        assert_eq!(s.error_kinds["refused"], 1);
        assert!((s.throughput - 500.0).abs() < 1e-9);
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.002;
        assert!(near(s.p50_ms, 500.0), "p50 {}", s.p50_ms);
        assert!(near(s.p90_ms, 900.0), "p90 {}", s.p90_ms);
        assert!(near(s.p99_ms, 990.0), "p99 {}", s.p99_ms);
        assert!(near(s.p999_ms, 999.0), "p999 {}", s.p999_ms);
        assert!(near(s.max_ms, 1000.0), "max {}", s.max_ms);
        assert!(near(s.mean_ms, 500.5), "mean {}", s.mean_ms);
        // Second 0: the successes at 1..=999 ms and the error at 10 ms;
        // second 1: the success at 1000 ms and the two later errors.
        assert_eq!(s.per_second, vec![1000, 3]);
        assert_eq!(s.per_second.iter().sum::<u64>(), s.ops + s.errors);
    }

    #[test]
    fn an_empty_run_summarizes_to_zeros_and_kinds_are_bounded() {
        let start = Instant::now();
        let mut r = Recorder::new(start);
        for i in 0..100 {
            r.error(&format!("error {i}"), start);
        }
        let s = r.summary(Duration::ZERO);
        assert_eq!((s.ops, s.errors), (0, 100));
        assert_eq!(s.throughput, 0.0);
        assert_eq!(s.p99_ms, 0.0);
        assert_eq!(s.error_kinds.len(), ERROR_KINDS);
    }

    #[test]
    fn absurd_latencies_saturate_instead_of_failing() {
        let start = Instant::now();
        let mut r = Recorder::new(start);
        r.ok(Duration::from_secs(100_000), start);
        r.ok(Duration::ZERO, start);
        let s = r.summary(Duration::from_secs(1));
        assert_eq!(s.ops, 2);
        assert!(s.max_ms >= 3_600_000.0 * 0.99);
    }
}
