//! Where the configuration comes from: the file's search order, the
//! environment and the command line, gathered so tests can inject them.

use super::file::Format;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Everything the configuration is loaded from.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// `-c PATH`: use this file, search nowhere else.
    pub path: Option<PathBuf>,
    /// `-n NAME`: this replica's name, over the file and `RAFT_NAME`.
    pub name: Option<String>,
    /// The environment (only `RAFT_*` variables are read).
    pub env: BTreeMap<String, String>,
    /// Directory searched first for `raft.*` (the working directory).
    pub cwd: PathBuf,
    /// Directory searched second for `.raft.*` (the home directory), if any.
    pub home: Option<PathBuf>,
    /// Directory searched last for `raft.*` (`/etc`).
    pub etc: PathBuf,
}

impl Sources {
    /// The process's own environment, working and home directories, with
    /// the command line's `-c` and `-n`.
    pub fn from_process(path: Option<PathBuf>, name: Option<String>) -> Sources {
        Sources {
            path,
            name,
            env: std::env::vars().collect(),
            cwd: PathBuf::from("."),
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
            etc: PathBuf::from("/etc"),
        }
    }

    /// The files tried when no `-c` is given, in order: `./raft.EXT`,
    /// `~/.raft.EXT`, `/etc/raft.EXT`, for EXT in json, toml, yaml, yml.
    pub fn candidates(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut dir = |dir: &PathBuf, stem: &str| {
            for ext in Format::EXTENSIONS {
                out.push(dir.join(format!("{stem}.{ext}")));
            }
        };
        dir(&self.cwd, "raft");
        if let Some(home) = &self.home {
            dir(home, ".raft");
        }
        dir(&self.etc, "raft");
        out
    }
}
