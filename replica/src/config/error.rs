//! What can be wrong with a configuration, said so a person can fix it.

use std::fmt;
use std::path::PathBuf;
use thiserror::Error;

/// One thing wrong with a configuration value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The key, as written in the file (`tick`, `peers[2].port`).
    pub key: String,
    /// The offending value as the user wrote it, or `(not set)`.
    pub value: String,
    /// Where the value came from when not the file, e.g. `RAFT_TICK`.
    pub from: Option<String>,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}", self.key, self.value)?;
        if let Some(from) = &self.from {
            write!(f, " (from {from})")?;
        }
        write!(f, ": {}; {}", self.problem, self.fix)
    }
}

/// Why no configuration could be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("no configuration file found; tried, in order: {}; pass one with -c PATH", list(.tried))]
    NotFound { tried: Vec<PathBuf> },
    #[error("cannot read the configuration file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot tell the format of {}: name it *.json, *.toml, *.yaml or *.yml",
        .path.display()
    )]
    UnknownFormat { path: PathBuf },
    #[error("{}{}: {message}", .path.display(), position(*.line, *.column))]
    Parse {
        path: PathBuf,
        /// 1-based, when the format reports it.
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    #[error("environment variable {var}={value:?} is not valid: {message}")]
    Env {
        var: String,
        value: String,
        message: String,
    },
    #[error("invalid configuration in {}:\n{}", .path.display(), bullets(.problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn list(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

fn position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

fn bullets(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
    lines.join("\n")
}
