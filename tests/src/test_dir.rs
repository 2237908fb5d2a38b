//! A test's own directory: removed when the test passes, kept when it fails
//! (the guard is dropped while panicking), with its path and the tail of
//! every replica log printed so the failure can be read without rerunning.
//!
//! `KUBERAFT_KEEP_TEST_DIRS=1` keeps the directory of a passing test too.

use crate::error::HarnessError;
use std::fs;
use std::path::{Path, PathBuf};

/// Lines of each log printed when a test fails.
const TAIL_LINES: usize = 60;
pub const KEEP_VAR: &str = "KUBERAFT_KEEP_TEST_DIRS";

#[derive(Debug)]
pub struct TestDir {
    /// `None` once kept or removed.
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    /// A fresh directory named after the test, under the system temp dir.
    pub fn new(test: &str) -> Result<TestDir, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("kuberaft-{test}-"))
            .tempdir()
            .map_err(|e| HarnessError::io("cannot create the test directory", e))?;
        let path = dir.path().to_path_buf();
        Ok(TestDir {
            dir: Some(dir),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory whatever the outcome.
    pub fn keep(&mut self) -> PathBuf {
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
        self.path.clone()
    }

    /// Prints where the test's files are and the tail of every log found in
    /// the directory (see [`logs`]).
    pub fn report(&self) {
        eprintln!(
            "\n==== test failed; its files are kept in {} ====",
            self.path.display()
        );
        for log in logs(&self.path) {
            let text = fs::read_to_string(&log).unwrap_or_else(|e| format!("(unreadable: {e})\n"));
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(TAIL_LINES);
            eprintln!(
                "---- {} (last {} of {} lines) ----",
                log.display(),
                lines.len() - from,
                lines.len()
            );
            for line in &lines[from..] {
                eprintln!("{line}");
            }
        }
        eprintln!("==== end of logs ====\n");
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let keep = std::env::var_os(KEEP_VAR).is_some_and(|v| v != "0");
        if std::thread::panicking() {
            self.report();
            self.keep();
        } else if keep {
            let path = self.keep();
            eprintln!("kept the test directory {}", path.display());
        }
        // Otherwise the TempDir removes itself.
    }
}

/// How deep [`logs`] looks: `<test>/<replica>/raft.log` and
/// `<test>/<cluster dir>/<replica>/raft.log` (as `raft local` lays it out).
const LOG_DEPTH: usize = 3;

/// Every `*.log` file in `dir` and below, down to [`LOG_DEPTH`], skipping
/// data directories; in path order.
fn logs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    collect_logs(dir, LOG_DEPTH, &mut out);
    out.sort();
    out
}

fn collect_logs(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for path in entries.flatten().map(|e| e.path()) {
        if path.is_dir() {
            if depth > 1 && !path.ends_with("data") {
                collect_logs(&path, depth - 1, out);
            }
        } else if is_log(&path) {
            out.push(path);
        }
    }
}

fn is_log(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|e| e == "log")
}
