//! The progress bar of a run, on stderr (stdout carries the results), and
//! only when stderr is a terminal: in a pipe, a file or CI it draws
//! nothing.
//!
//! Clients only bump a shared counter; a ticker task redraws the bar ten
//! times a second, so the bar costs the hot path one atomic add.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the bar counts towards.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    Requests(u64),
    Time(Duration),
}

pub struct Progress {
    done: Arc<AtomicU64>,
    bar: ProgressBar,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// A bar titled `what`, shown if stderr is a terminal and `visible`.
    pub fn start(what: &str, goal: Goal, visible: bool) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        let shown = visible && std::io::stderr().is_terminal();
        let bar = if !shown {
            ProgressBar::hidden()
        } else {
            let (len, template) = match goal {
                Goal::Requests(n) => (
                    n,
                    "{msg} [{bar:40}] {pos}/{len} requests, {per_sec}, eta {eta}",
                ),
                Goal::Time(d) => (d.as_millis() as u64, "{msg} [{bar:40}] {prefix}"),
            };
            let bar = ProgressBar::new(len);
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what.to_string());
            bar
        };
        let ticker = shown.then(|| {
            let bar = bar.clone();
            let done = done.clone();
            let start = Instant::now();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tick.tick().await;
                    let n = done.load(Ordering::Relaxed);
                    match goal {
                        Goal::Requests(_) => bar.set_position(n),
                        Goal::Time(d) => {
                            let elapsed = start.elapsed().min(d);
                            bar.set_position(elapsed.as_millis() as u64);
                            let secs = start.elapsed().as_secs_f64().max(1e-3);
                            bar.set_prefix(format!(
                                "{:.0}/{:.0} s, {n} requests, {:.0}/s",
                                elapsed.as_secs_f64(),
                                d.as_secs_f64(),
                                n as f64 / secs
                            ));
                        }
                    }
                }
            })
        });
        Progress { done, bar, ticker }
    }

    /// The counter clients add their completed requests to.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.done.clone()
    }

    /// Removes the bar.
    pub fn finish(mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
    }
}
