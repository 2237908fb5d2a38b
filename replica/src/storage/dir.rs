//! The data directory itself: its identity (cluster and node it belongs to),
//! the lock that keeps a second process out, and the file-system steps that
//! make file creation, renames and removals durable.
//!
//! Layout:
//! ```text
//! <data_dir>/IDENTITY                 cluster id, node id, incarnation, format version (text)
//! <data_dir>/LOCK                     held (flock) by the process using the directory
//! <data_dir>/wal/<seq:016x>.log       write-ahead log segments
//! <data_dir>/snapshots/<group>/...    snapshots, see `snapshot`
//! ```

use super::error::{Result, StorageError};
use crate::raft::NodeId;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The on-disk format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

const IDENTITY: &str = "IDENTITY";
const LOCK: &str = "LOCK";

/// Who a data directory belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: String,
    pub node_id: NodeId,
}

impl Identity {
    /// A 64-bit digest of the identity, stamped into every segment header so
    /// that a segment copied from another node or cluster is recognised.
    pub(crate) fn digest(&self) -> u64 {
        let mut text = self.cluster_id.as_bytes().to_vec();
        text.extend_from_slice(&self.node_id.0.to_le_bytes());
        let lo = crc32c::crc32c(&text) as u64;
        text.push(0xA5);
        let hi = crc32c::crc32c(&text) as u64;
        (hi << 32) | lo
    }
}

/// Makes the directory entry changes in `dir` (creations, renames,
/// removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io(dir, "syncing directory"))
}

/// Creates `dir` (and its parents) durably if it does not exist.
pub(crate) fn create_dir_durable(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_durable(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StorageError::io(dir, "creating directory")(e)),
    }
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Writes `contents` to `path` atomically and durably: temporary file,
/// fsync, rename, fsync of the directory.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let mut f = File::create(&tmp).map_err(StorageError::io(&tmp, "creating"))?;
    f.write_all(contents)
        .and_then(|_| f.sync_all())
        .map_err(StorageError::io(&tmp, "writing"))?;
    fs::rename(&tmp, path).map_err(StorageError::io(path, "renaming into place"))?;
    sync_dir(parent(path))
}

pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

pub(crate) fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// Reserves `len` bytes of disk for `file` so that the log never runs out of
/// space in the middle of a segment and its blocks are allocated together.
/// The reserved range reads as zeros, which the log recognises as its end.
pub(crate) fn preallocate(file: &File, len: u64) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: plain syscall on a valid, open file descriptor.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(err);
        }
    }
    // No fallocate (or not on this file system): a sparse file still gives
    // the fixed size and zeros.
    if file.metadata()?.len() < len {
        file.set_len(len)?;
    }
    Ok(())
}

/// The directory lock: held as long as this value lives.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

pub(crate) fn lock(dir: &Path) -> Result<DirLock> {
    let path = dir.join(LOCK);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(StorageError::io(&path, "opening the lock file"))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => format!("lock held on {}", path.display()),
                h => format!("{h}, lock held on {}", path.display()),
            };
            return Err(StorageError::Locked {
                dir: dir.to_owned(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(StorageError::io(&path, "locking the data directory")(e));
        }
    }
    // Say who holds it, for the message another process will print.
    let _ = file
        .set_len(0)
        .and_then(|_| writeln!(file, "pid {}", std::process::id()));
    Ok(DirLock { _file: file })
}

/// Reads the identity of `dir`, or records `expected` if the directory is
/// new (holds no log, `has_data` false). Returns the directory's
/// incarnation: a random number drawn when the directory was created, so
/// that a replica that lost its volume and starts again under the same node
/// id can be told from its former self.
pub(crate) fn check_identity(dir: &Path, expected: &Identity, has_data: bool) -> Result<u64> {
    if expected.cluster_id.is_empty() || expected.cluster_id.contains(['\n', '\r', '=']) {
        return Err(StorageError::Unrecognized {
            path: dir.to_owned(),
            reason: format!(
                "cluster id {:?} must be non-empty and contain no newline or '='",
                expected.cluster_id
            ),
        });
    }
    let path = dir.join(IDENTITY);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if has_data {
                return Err(StorageError::Missing {
                    dir: dir.to_owned(),
                    reason: format!(
                        "{} is missing but the directory holds a log, so it cannot be told \
                         which cluster and node it belongs to",
                        path.display()
                    ),
                });
            }
            let incarnation = crate::random::nonzero_u64();
            write_atomic(&path, encode_identity(expected, incarnation).as_bytes())?;
            return Ok(incarnation);
        }
        Err(e) => return Err(StorageError::io(&path, "reading")(e)),
    };
    let (found, incarnation) =
        decode_identity(&text).map_err(|reason| StorageError::Unrecognized {
            path: path.clone(),
            reason,
        })?;
    if found != *expected {
        return Err(StorageError::WrongIdentity {
            dir: dir.to_owned(),
            found_cluster: found.cluster_id,
            found_node: found.node_id,
            expected_cluster: expected.cluster_id.clone(),
            expected_node: expected.node_id,
        });
    }
    Ok(incarnation)
}

fn encode_identity(id: &Identity, incarnation: u64) -> String {
    let body = format!(
        "# kuberaft data directory; do not edit or copy to another replica\n\
         format_version={FORMAT_VERSION}\ncluster_id={}\nnode_id={}\nincarnation={incarnation:016x}\n",
        id.cluster_id, id.node_id.0
    );
    let crc = crc32c::crc32c(body.as_bytes());
    format!("{body}checksum={crc:08x}\n")
}

fn decode_identity(bytes: &[u8]) -> std::result::Result<(Identity, u64), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let at = text
        .rfind("checksum=")
        .ok_or_else(|| "no checksum line".to_string())?;
    let (body, sum) = text.split_at(at);
    let sum = sum.trim_start_matches("checksum=").trim();
    let expected = u32::from_str_radix(sum, 16).map_err(|_| format!("bad checksum {sum:?}"))?;
    if crc32c::crc32c(body.as_bytes()) != expected {
        return Err("checksum mismatch (the file is damaged or was edited)".into());
    }
    let (mut version, mut cluster, mut node, mut incarnation) = (None, None, None, None);
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        match line.split_once('=') {
            Some(("format_version", v)) => version = v.parse::<u32>().ok(),
            Some(("cluster_id", v)) => cluster = Some(v.to_string()),
            Some(("node_id", v)) => node = v.parse::<u64>().ok().map(NodeId),
            Some(("incarnation", v)) => incarnation = u64::from_str_radix(v, 16).ok(),
            _ => {}
        }
    }
    match version {
        Some(FORMAT_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "format version {v}, this kuberaft reads version {FORMAT_VERSION}"
            ));
        }
        None => return Err("no format_version".into()),
    }
    let identity = Identity {
        cluster_id: cluster.ok_or("no cluster_id")?,
        node_id: node.ok_or("no node_id")?,
    };
    // Written by every version that wrote this format; a file without it
    // was damaged the way the checksum cannot see (it is over the body).
    Ok((identity, incarnation.ok_or("no incarnation")?))
}
