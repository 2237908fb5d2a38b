//! Snapshots of each group on the data directory, written and read as
//! streams: a snapshot can be larger than what memory may hold twice.
//!
//! ```text
//! <data_dir>/snapshots/<group:016x>/<index:020>-<term:020>.snap
//! file := "KRFTSNAP" | format:u32 | meta_len:u32 | group:u64 | meta | crc32c(all before):u32
//!         | data ... | data_len:u64 | crc32c(data):u32 | "KSNE"
//! ```
//!
//! A snapshot becomes visible only complete and durable: it is written to a
//! temporary file, fsynced, renamed, and the directory fsynced. Its checksum
//! is verified while it is read; a reader reports damage as an error at the
//! end of the data instead of handing out wrong bytes silently.

use super::codec::{self, Reader};
use super::dir::{self, FORMAT_VERSION};
use super::error::{Result, StorageError};
use crate::raft::{GroupId, LogIndex, SnapshotMeta, Term};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"KRFTSNAP";
const END_MAGIC: &[u8; 4] = b"KSNE";
const TRAILER: u64 = 16;

/// The snapshots of every group of a node.
#[derive(Clone, Debug)]
pub struct SnapshotStore {
    root: PathBuf,
}

impl SnapshotStore {
    /// The store under `<data_dir>/snapshots`, created durably if needed.
    pub fn open(data_dir: &Path) -> Result<SnapshotStore> {
        let root = data_dir.join("snapshots");
        dir::create_dir_durable(&root)?;
        Ok(SnapshotStore { root })
    }

    /// The directory holding every group's snapshots.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    fn group_dir(&self, group: GroupId) -> PathBuf {
        self.root.join(format!("{:016x}", group.0))
    }

    fn path(&self, group: GroupId, index: LogIndex, term: Term) -> PathBuf {
        self.group_dir(group)
            .join(format!("{:020}-{:020}.snap", index.0, term.0))
    }

    /// Starts writing a snapshot of `group` at `meta`. Nothing is visible
    /// until [`SnapshotWriter::finish`] returns.
    pub fn create(&self, group: GroupId, meta: &SnapshotMeta) -> Result<SnapshotWriter> {
        let gdir = self.group_dir(group);
        dir::create_dir_durable(&gdir)?;
        let path = self.path(group, meta.index, meta.term);
        let tmp = dir::tmp_path(&path);
        let file = File::create(&tmp).map_err(StorageError::io(&tmp, "creating snapshot"))?;
        let mut header = Vec::new();
        let mut m = Vec::new();
        codec::encode_snapshot_meta(&mut m, meta);
        header.extend_from_slice(MAGIC);
        codec::put_u32(&mut header, FORMAT_VERSION);
        codec::put_u32(&mut header, m.len() as u32);
        codec::put_u64(&mut header, group.0);
        header.extend_from_slice(&m);
        let crc = crc32c::crc32c(&header);
        codec::put_u32(&mut header, crc);
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&header)
            .map_err(StorageError::io(&tmp, "writing snapshot"))?;
        Ok(SnapshotWriter {
            out: Some(out),
            tmp,
            path,
            meta: meta.clone(),
            crc: 0,
            len: 0,
        })
    }

    /// Snapshots of `group` on disk, oldest first: (index, term, path).
    pub fn list(&self, group: GroupId) -> Result<Vec<(LogIndex, Term, PathBuf)>> {
        let gdir = self.group_dir(group);
        let mut out = Vec::new();
        let rd = match fs::read_dir(&gdir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(StorageError::io(&gdir, "listing snapshots")(e)),
        };
        for entry in rd {
            let entry = entry.map_err(StorageError::io(&gdir, "listing snapshots"))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.strip_suffix(".snap") else {
                continue;
            };
            let Some((i, t)) = stem.split_once('-') else {
                continue;
            };
            if let (Ok(i), Ok(t)) = (i.parse(), t.parse()) {
                out.push((LogIndex(i), Term(t), entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Opens the snapshot of `group` at `index` for reading.
    pub fn open_reader(&self, group: GroupId, index: LogIndex) -> Result<Option<SnapshotReader>> {
        for (i, _, path) in self.list(group)? {
            if i == index {
                return SnapshotReader::open(&path, group).map(Some);
            }
        }
        Ok(None)
    }

    /// The metadata of the newest snapshot of `group`, read from its header.
    pub fn latest(&self, group: GroupId) -> Result<Option<SnapshotMeta>> {
        match self.list(group)?.pop() {
            None => Ok(None),
            Some((_, _, path)) => Ok(Some(SnapshotReader::open(&path, group)?.meta)),
        }
    }

    /// Removes the snapshots of `group` other than the one at `keep`
    /// (older ones are superseded; newer ones were never recorded in the
    /// log), and leftover temporary files.
    pub fn retain_only(&self, group: GroupId, keep: LogIndex) -> Result<()> {
        let gdir = self.group_dir(group);
        let mut removed = false;
        for (i, _, path) in self.list(group)? {
            if i != keep {
                fs::remove_file(&path).map_err(StorageError::io(&path, "removing old snapshot"))?;
                removed = true;
            }
        }
        if let Ok(rd) = fs::read_dir(&gdir) {
            for entry in rd.flatten() {
                if entry.file_name().to_string_lossy().ends_with(".snap.tmp") {
                    let _ = fs::remove_file(entry.path());
                    removed = true;
                }
            }
        }
        if removed {
            dir::sync_dir(&gdir)?;
        }
        Ok(())
    }

    /// Removes snapshots of `group` older than `index`.
    pub fn remove_older(&self, group: GroupId, index: LogIndex) -> Result<()> {
        let mut removed = false;
        for (i, _, path) in self.list(group)? {
            if i < index {
                fs::remove_file(&path).map_err(StorageError::io(&path, "removing old snapshot"))?;
                removed = true;
            }
        }
        if removed {
            dir::sync_dir(&self.group_dir(group))?;
        }
        Ok(())
    }

    /// Every group that has a snapshot directory.
    pub fn groups(&self) -> Result<Vec<GroupId>> {
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.root).map_err(StorageError::io(&self.root, "listing"))?;
        for entry in rd.flatten() {
            if let Some(g) = entry
                .file_name()
                .to_str()
                .and_then(|n| u64::from_str_radix(n, 16).ok())
            {
                out.push(GroupId(g));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// A snapshot being written; `impl Write`.
pub struct SnapshotWriter {
    out: Option<BufWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
    meta: SnapshotMeta,
    crc: u32,
    len: u64,
}

impl Write for SnapshotWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::other("snapshot already finished"))?;
        let n = out.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.as_mut().map_or(Ok(()), |o| o.flush())
    }
}

impl SnapshotWriter {
    /// Seals the snapshot and makes it durable and visible.
    pub fn finish(mut self) -> Result<SnapshotMeta> {
        let Some(mut out) = self.out.take() else {
            return Err(StorageError::Closed);
        };
        let mut trailer = Vec::with_capacity(TRAILER as usize);
        codec::put_u64(&mut trailer, self.len);
        codec::put_u32(&mut trailer, self.crc);
        trailer.extend_from_slice(END_MAGIC);
        out.write_all(&trailer)
            .and_then(|_| out.flush())
            .map_err(StorageError::io(&self.tmp, "writing snapshot"))?;
        let file = out
            .into_inner()
            .map_err(|e| StorageError::io(&self.tmp, "writing snapshot")(e.into_error()))?;
        file.sync_all()
            .map_err(StorageError::io(&self.tmp, "syncing snapshot"))?;
        fs::rename(&self.tmp, &self.path)
            .map_err(StorageError::io(&self.path, "renaming snapshot into place"))?;
        dir::sync_dir(dir::parent(&self.path))?;
        Ok(self.meta.clone())
    }

    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            // Abandoned before finish: never visible, remove the remains.
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// A snapshot being read; `impl Read` over its data. The checksum is
/// verified as the data streams by: reading past the end of damaged data
/// returns an `InvalidData` error instead of end-of-file.
pub struct SnapshotReader {
    input: BufReader<File>,
    path: PathBuf,
    meta: SnapshotMeta,
    remaining: u64,
    len: u64,
    crc: u32,
    expected_crc: u32,
}

impl SnapshotReader {
    fn open(path: &Path, group: GroupId) -> Result<SnapshotReader> {
        let bad = |reason: String| StorageError::CorruptSnapshot {
            path: path.to_owned(),
            reason,
        };
        let mut file = File::open(path).map_err(StorageError::io(path, "opening snapshot"))?;
        let file_len = file
            .metadata()
            .map_err(StorageError::io(path, "opening snapshot"))?
            .len();
        let mut fixed = [0u8; 24];
        file.read_exact(&mut fixed)
            .map_err(|_| bad("shorter than a snapshot header".into()))?;
        if &fixed[..8] != MAGIC {
            return Err(bad("not a kuberaft snapshot (no magic)".into()));
        }
        let mut r = Reader::new(&fixed[8..]);
        let version = r.u32("format").map_err(|e| bad(e.0))?;
        let meta_len = r.u32("meta length").map_err(|e| bad(e.0))? as u64;
        let file_group = r.u64("group").map_err(|e| bad(e.0))?;
        if version != FORMAT_VERSION {
            return Err(bad(format!("format version {version}")));
        }
        if file_group != group.0 {
            return Err(bad(format!(
                "belongs to group {file_group}, found under group {group}"
            )));
        }
        let header_len = 24 + meta_len + 4;
        if header_len + TRAILER > file_len {
            return Err(bad(format!(
                "header of {header_len} bytes does not fit in {file_len}"
            )));
        }
        let mut rest = vec![0u8; meta_len as usize + 4];
        file.read_exact(&mut rest)
            .map_err(StorageError::io(path, "reading snapshot header"))?;
        let (m, crc) = rest.split_at(meta_len as usize);
        let mut whole = fixed.to_vec();
        whole.extend_from_slice(m);
        if crc32c::crc32c(&whole).to_le_bytes() != crc {
            return Err(bad("header checksum mismatch".into()));
        }
        let meta = codec::decode_snapshot_meta(&mut Reader::new(m)).map_err(|e| bad(e.0))?;
        let mut trailer = [0u8; TRAILER as usize];
        file.seek(SeekFrom::Start(file_len - TRAILER))
            .and_then(|_| file.read_exact(&mut trailer))
            .map_err(StorageError::io(path, "reading snapshot trailer"))?;
        let mut t = Reader::new(&trailer);
        let len = t.u64("data length").map_err(|e| bad(e.0))?;
        let expected_crc = t.u32("data checksum").map_err(|e| bad(e.0))?;
        if &trailer[12..] != END_MAGIC || len != file_len - header_len - TRAILER {
            return Err(bad("trailer damaged or file truncated".into()));
        }
        file.seek(SeekFrom::Start(header_len))
            .map_err(StorageError::io(path, "reading snapshot"))?;
        Ok(SnapshotReader {
            input: BufReader::with_capacity(1 << 20, file),
            path: path.to_owned(),
            meta,
            remaining: len,
            len,
            crc: 0,
            expected_crc,
        })
    }

    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Size of the snapshot's data in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Read for SnapshotReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            if self.crc != self.expected_crc {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "snapshot {} is damaged: checksum mismatch",
                        self.path.display()
                    ),
                ));
            }
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.input.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("snapshot {} ends early", self.path.display()),
            ));
        }
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}
