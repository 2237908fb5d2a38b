//! Where the `raft` program's log lines go and how they look.
//!
//! `RUST_LOG`, when set, wins over the configured level (it takes
//! per-module filters, e.g. `RUST_LOG=info,kuberaft::transport=debug`).
//! Logs go to stderr; stdout is kept for command output that scripts read.

use crate::config::{LogFormat, LogLevel};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Calling it twice is harmless (the first
/// one stays), which keeps tests that start several servers simple.
pub fn init(level: LogLevel, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // Our own crate at the configured level; the libraries below us
        // (tonic, h2, hyper) only when they have something to warn about.
        let ours = level.as_str();
        let theirs = if level >= LogLevel::Warn {
            "warn"
        } else {
            ours
        };
        EnvFilter::new(format!("{theirs},kuberaft={ours},raft={ours}"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
