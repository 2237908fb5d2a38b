//! The write-ahead log of a node: one log for every group, written by one
//! thread with group commit.
//!
//! Callers [`submit`](Wal::submit) writes from any thread (the event loop,
//! usually) and are told when they are durable, through a callback or a
//! [`Ticket`] that can be awaited without blocking a runtime.
//!
//! Submitting encodes: the caller's thread validates its writes and encodes
//! them into the next frame, under a lock shared with the writer thread. The
//! writer takes the frame gathered so far, writes it (one `pwritev`, no copy
//! of the body), calls `fdatasync` once, completes the frame's waiters in
//! submission order, and takes the next frame at once. So everything
//! submitted while an fsync is in flight goes into the next frame (one fsync
//! covers many proposals of many groups), encoding overlaps the fsync, and a
//! busy writer goes from one fsync to the next without waiting to be woken.
//! At most one frame is ever written and not yet synced: a crash can tear
//! only the last frame, which is what recovery relies on.
//!
//! After an I/O error the log is poisoned: it fails every later write
//! instead of retrying an fsync whose failure may have dropped pages.

use super::dir::{self, DirLock, Identity};
use super::error::{Result, StorageError};
use super::recovery::{self, RecoveryReport, Tail};
use super::segment::{self, HEADER_LEN};
use super::snapshot::SnapshotStore;
use super::tracker::{self, Placement, Tracker};
use super::{GroupWrite, LogStore, codec};
use crate::raft::{GroupId, HardState, LogIndex, RecoveredState, SnapshotMeta};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Tuning of the log.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Size of a segment file, preallocated when it is created. A frame
    /// larger than a segment gets a segment of its own.
    pub segment_size: u64,
    /// The writer stops taking more submissions into a frame once it holds
    /// this many bytes, bounding the latency of one fsync.
    pub max_batch_bytes: usize,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: 64 << 20,
            max_batch_bytes: 16 << 20,
        }
    }
}

/// Counters of the log, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Frames written, each followed by one fsync.
    pub fsyncs: u64,
    /// Submissions made durable.
    pub submissions: u64,
    /// Bytes written to segments (frames, padding included).
    pub bytes: u64,
    pub segments_created: u64,
    pub segments_deleted: u64,
    /// The segment being written.
    pub current_segment: u64,
    /// Segments on disk (the one being written included).
    pub live_segments: u64,
    /// A group whose entries keep the oldest segment from being deleted:
    /// its log is not covered by its snapshot there. A group that stops
    /// taking snapshots (an idle group with a short log) holds every newer
    /// segment on disk; taking a snapshot of it releases them.
    pub oldest_segment_pinned_by: Option<GroupId>,
}

#[derive(Default)]
struct Shared {
    fsyncs: AtomicU64,
    submissions: AtomicU64,
    bytes: AtomicU64,
    segments_created: AtomicU64,
    segments_deleted: AtomicU64,
    current_segment: AtomicU64,
    live_segments: AtomicU64,
    /// `u64::MAX` for none.
    pinned_by: AtomicU64,
}

type Completion = Box<dyn FnOnce(Result<()>) + Send>;

/// Encoded operations of one frame, with what they change once durable and
/// who waits for them.
#[derive(Default)]
struct Batch {
    body: Vec<u8>,
    track: Vec<Track>,
    waiters: Vec<Completion>,
}

/// What submitters and the writer share, under one lock.
struct Queue {
    /// (snapshot index, last index) of every group as of everything
    /// accepted so far, durable or not: what new writes are checked against.
    view: HashMap<GroupId, (LogIndex, LogIndex)>,
    /// The frame being gathered.
    open: Batch,
    /// Full frames waiting for the writer, oldest first.
    sealed: VecDeque<Batch>,
    max_batch_bytes: usize,
    poisoned: Option<Arc<StorageError>>,
    shutdown: bool,
}

/// The lock and the writer's wake-up.
struct Gate {
    queue: Mutex<Queue>,
    work: Condvar,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves the queue as consistent as
        // any other point between two submissions.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Completion of a submission: `.wait()` blocks, `.await` does not.
pub struct Ticket(oneshot::Receiver<Result<()>>);

impl Ticket {
    /// Blocks until the submission is durable. Must not be called from
    /// inside an async runtime; `.await` the ticket there.
    pub fn wait(self) -> Result<()> {
        self.0.blocking_recv().unwrap_or(Err(StorageError::Closed))
    }
}

impl Future for Ticket {
    type Output = Result<()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(StorageError::Closed)))
    }
}

fn ticket() -> (Completion, Ticket) {
    let (tx, rx) = oneshot::channel();
    (
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
        Ticket(rx),
    )
}

/// The write-ahead log of a node, with the snapshot store of its groups.
pub struct Wal {
    gate: Arc<Gate>,
    writer: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    snapshots: SnapshotStore,
    wal_dir: PathBuf,
    id: Identity,
    fresh: bool,
    /// See [`Wal::incarnation`].
    incarnation: u64,
    report: RecoveryReport,
    recovered: Option<BTreeMap<GroupId, RecoveredState>>,
    written: AtomicBool,
    /// Writes appended through [`LogStore::append`], not yet submitted.
    pending: Vec<GroupWrite>,
    // Dropped last: the directory stays locked until the writer has stopped.
    _lock: DirLock,
}

impl Wal {
    /// Opens (or creates) the data directory `data_dir` for node `id`,
    /// recovers the log, and starts the writer thread.
    ///
    /// Fails if another process holds the directory, if it belongs to
    /// another cluster or node, or if acknowledged data is damaged. A torn
    /// tail left by a crash is cut off (see [`Wal::recovery_report`]).
    pub fn open(data_dir: &Path, id: Identity, opts: WalOptions) -> Result<Wal> {
        dir::create_dir_durable(data_dir)?;
        let lock = dir::lock(data_dir)?;
        let wal_dir = data_dir.join("wal");
        let has_data = wal_dir.is_dir() && !recovery::list_segments(&wal_dir, false)?.is_empty();
        let incarnation = dir::check_identity(data_dir, &id, has_data)?;
        dir::create_dir_durable(&wal_dir)?;
        let rec = recovery::recover(&wal_dir, &id, true)?;
        // Every durable state change of a group (a vote, an entry, a
        // snapshot) is in the log, and every segment restates every group, so
        // a log without groups means the node never promised anything. An
        // IDENTITY file alone (a crash right after the first start wrote it)
        // does not make a node an existing member.
        let fresh = rec.groups.is_empty();
        let snapshots = SnapshotStore::open(data_dir)?;
        // Snapshot files the log does not refer to: superseded ones, and
        // ones written just before a crash whose marker never became durable.
        for g in snapshots.groups()? {
            let keep = rec
                .groups
                .get(&g)
                .and_then(|s| s.snapshot.as_ref())
                .map_or(LogIndex::ZERO, |s| s.index);
            snapshots.retain_only(g, keep)?;
        }

        let shared = Arc::new(Shared::default());
        let (file, tail) = match rec.tail {
            Some(tail) => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&tail.path)
                    .map_err(StorageError::io(&tail.path, "opening segment"))?;
                (file, tail)
            }
            None => {
                let (file, path) = segment::create_segment(&wal_dir, &id, 1, 1, opts.segment_size)?;
                shared.segments_created.fetch_add(1, Ordering::Relaxed);
                let tail = Tail {
                    seq: 1,
                    path,
                    offset: HEADER_LEN,
                    next_batch: 1,
                    has_frames: false,
                };
                (file, tail)
            }
        };
        let mut tracker = rec.tracker;
        tracker.add_segment(tail.seq);
        shared.current_segment.store(tail.seq, Ordering::Relaxed);
        shared
            .live_segments
            .store(tracker.segments() as u64, Ordering::Relaxed);
        shared.pinned_by.store(
            tracker.oldest_pin(tail.seq).map_or(u64::MAX, |g| g.0),
            Ordering::Relaxed,
        );
        let view = tracker
            .groups
            .iter()
            .map(|(g, m)| (*g, (m.snapshot_index(), m.last)))
            .collect();
        let gate = Arc::new(Gate {
            queue: Mutex::new(Queue {
                view,
                open: Batch::default(),
                sealed: VecDeque::new(),
                max_batch_bytes: opts.max_batch_bytes,
                poisoned: None,
                shutdown: false,
            }),
            work: Condvar::new(),
        });
        let writer = Writer {
            gate: gate.clone(),
            wal_dir: wal_dir.clone(),
            id: id.clone(),
            opts,
            file,
            seq: tail.seq,
            offset: tail.offset,
            next_batch: tail.next_batch,
            has_frames: tail.has_frames,
            tracker,
            snapshots: snapshots.clone(),
            shared: shared.clone(),
            checkpoint: Vec::new(),
            snapshot_changed: Vec::new(),
            rotated: false,
        };
        let handle = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run())
            .map_err(StorageError::io(&wal_dir, "starting the writer thread"))?;
        Ok(Wal {
            gate,
            writer: Some(handle),
            shared,
            snapshots,
            wal_dir,
            id,
            fresh,
            incarnation,
            report: rec.report,
            recovered: Some(rec.groups),
            written: AtomicBool::new(false),
            pending: Vec::new(),
            _lock: lock,
        })
    }

    /// Whether the log held no state of any group when opened (a new or
    /// emptied volume): a node may bootstrap a new cluster only then.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// This data directory's incarnation: a random number (never 0) drawn
    /// when the directory was created. A replica that lost its volume comes
    /// back under the same node id but a new incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The state of every group as recovered at open. Taken once: the core
    /// owns it from then on.
    pub fn take_recovered(&mut self) -> BTreeMap<GroupId, RecoveredState> {
        self.recovered.take().unwrap_or_default()
    }

    pub fn snapshots(&self) -> &SnapshotStore {
        &self.snapshots
    }

    /// Queues `writes`, applied in order; `done` is called once they are
    /// durable (from the writer thread), or failed (from this thread, for
    /// a write that is invalid or refused). Submissions complete in the
    /// order they were made. The writes are validated and encoded here,
    /// on the caller's thread. Keep `done` short: it delays the next fsync.
    pub fn submit(&self, writes: Vec<GroupWrite>, done: impl FnOnce(Result<()>) + Send + 'static) {
        self.written.store(true, Ordering::Relaxed);
        self.enqueue(Box::new(done), |q| q.encode_writes(&writes));
    }

    /// [`submit`](Wal::submit), completed through a [`Ticket`].
    pub fn submit_ticket(&self, writes: Vec<GroupWrite>) -> Ticket {
        let (done, t) = ticket();
        self.written.store(true, Ordering::Relaxed);
        self.enqueue(done, |q| q.encode_writes(&writes));
        t
    }

    /// Records that `group`'s entries up to `meta.index` are covered by a
    /// snapshot the caller took and made durable (normally in
    /// [`snapshots`](Wal::snapshots)). Recovery then returns `meta` as the
    /// group's snapshot; old segments and older snapshot files of the group
    /// are deleted once nothing else needs them (right after this is
    /// acknowledged, before the next submission completes).
    pub fn compact_to(&self, group: GroupId, meta: SnapshotMeta) -> Ticket {
        let (done, t) = ticket();
        self.written.store(true, Ordering::Relaxed);
        self.enqueue(done, |q| q.encode_compact(group, meta.index, Some(meta)));
        t
    }

    /// Encodes a submission into the frame being gathered and wakes the
    /// writer; `done` fails at once if the submission is refused.
    fn enqueue(&self, done: Completion, encode: impl FnOnce(&mut Queue) -> Result<()>) {
        let mut q = self.gate.lock();
        let refused = if let Some(p) = &q.poisoned {
            Some(StorageError::Poisoned(p.clone()))
        } else if q.shutdown {
            Some(StorageError::Closed)
        } else {
            encode(&mut q).err()
        };
        if let Some(e) = refused {
            drop(q);
            done(Err(e));
            return;
        }
        q.open.waiters.push(done);
        if q.open.body.len() >= q.max_batch_bytes {
            let full = std::mem::take(&mut q.open);
            q.sealed.push_back(full);
        }
        drop(q);
        self.gate.work.notify_one();
    }

    pub fn stats(&self) -> WalStats {
        let s = &self.shared;
        WalStats {
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            submissions: s.submissions.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            segments_created: s.segments_created.load(Ordering::Relaxed),
            segments_deleted: s.segments_deleted.load(Ordering::Relaxed),
            current_segment: s.current_segment.load(Ordering::Relaxed),
            live_segments: s.live_segments.load(Ordering::Relaxed),
            oldest_segment_pinned_by: match s.pinned_by.load(Ordering::Relaxed) {
                u64::MAX => None,
                g => Some(GroupId(g)),
            },
        }
    }

    /// The directory holding the segments.
    pub fn wal_dir(&self) -> &Path {
        &self.wal_dir
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        // The writer writes what was submitted, then stops.
        self.gate.lock().shutdown = true;
        self.gate.work.notify_one();
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

impl LogStore for Wal {
    type Error = StorageError;

    fn append(&mut self, writes: &[GroupWrite]) -> Result<()> {
        self.pending.extend_from_slice(writes);
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        let writes = std::mem::take(&mut self.pending);
        self.submit_ticket(writes).wait()
    }

    /// Looks up the snapshot that covers `index` in the snapshot store (or
    /// a snapshot already recorded in the log).
    fn compact(&mut self, group: GroupId, index: LogIndex) -> Result<()> {
        self.sync()?;
        let found = self
            .snapshots
            .list(group)?
            .into_iter()
            .rev()
            .find(|(i, _, _)| *i >= index);
        let meta = match found {
            Some((i, _, _)) => self
                .snapshots
                .open_reader(group, i)?
                .map(|r| r.meta().clone()),
            None => None,
        };
        let (done, t) = ticket();
        self.written.store(true, Ordering::Relaxed);
        self.enqueue(done, |q| q.encode_compact(group, index, meta));
        t.wait()
    }

    fn recover(&mut self) -> Result<BTreeMap<GroupId, RecoveredState>> {
        self.sync()?;
        if !self.written.load(Ordering::Relaxed)
            && let Some(r) = self.recovered.take()
        {
            return Ok(r);
        }
        // Completions come before the writer's housekeeping (which may
        // delete segments): an empty submission completes only once the
        // writer is past it, so the files are still while they are read.
        self.submit_ticket(Vec::new()).wait()?;
        // Everything submitted is durable: read the log back as a restart would.
        Ok(recovery::recover(&self.wal_dir, &self.id, false)?.groups)
    }
}

/// A change to the tracker, applied once the frame that carries it is durable.
enum Track {
    Install(GroupId, SnapshotMeta),
    Entries(GroupId, LogIndex, LogIndex),
    HardState(GroupId, HardState),
    Compacted(GroupId, SnapshotMeta),
}

impl Queue {
    fn view(&self, g: GroupId) -> (LogIndex, LogIndex) {
        self.view
            .get(&g)
            .copied()
            .unwrap_or((LogIndex::ZERO, LogIndex::ZERO))
    }

    /// Validates one submission as a whole, then encodes it into the frame.
    fn encode_writes(&mut self, writes: &[GroupWrite]) -> Result<()> {
        let mut local: HashMap<GroupId, (LogIndex, LogIndex)> = HashMap::new();
        let mut placements = Vec::with_capacity(writes.len());
        for w in writes {
            let g = w.group;
            let view = match local.get(&g) {
                Some(v) => *v,
                None => self.view(g),
            };
            let (mut snap, mut last) = view;
            if let Some(s) = &w.snapshot {
                snap = s.index;
                last = s.index;
            }
            let mut placement = Placement::Covered;
            if let (Some(f), Some(l)) = (w.entries.first(), w.entries.last()) {
                let contiguous = w
                    .entries
                    .iter()
                    .enumerate()
                    .all(|(i, e)| e.index == f.index.plus(i as u64));
                if !contiguous || f.index == LogIndex::ZERO {
                    return Err(StorageError::InvalidWrite {
                        group: g,
                        reason: "entries are not contiguous from an index >= 1".into(),
                    });
                }
                placement = tracker::place(snap, last, f.index, l.index)
                    .map_err(|reason| StorageError::InvalidWrite { group: g, reason })?;
                if placement != Placement::Covered {
                    last = l.index;
                }
            }
            local.insert(g, (snap, last));
            placements.push(placement);
        }
        self.view.extend(local);
        for (w, placement) in writes.iter().zip(placements) {
            let g = w.group;
            if let Some(s) = &w.snapshot {
                codec::encode_install(&mut self.open.body, g, s);
                self.open.track.push(Track::Install(g, s.clone()));
            }
            if let (Placement::Store { skip }, Some(l)) = (placement, w.entries.last()) {
                let entries = &w.entries[skip..];
                codec::encode_entries(&mut self.open.body, g, entries);
                self.open
                    .track
                    .push(Track::Entries(g, entries[0].index, l.index));
            }
            if let Some(hs) = &w.hard_state {
                codec::encode_hard_state(&mut self.open.body, g, hs);
                self.open.track.push(Track::HardState(g, *hs));
            }
        }
        Ok(())
    }

    fn encode_compact(
        &mut self,
        group: GroupId,
        index: LogIndex,
        meta: Option<SnapshotMeta>,
    ) -> Result<()> {
        let (snap, last) = self.view(group);
        let Some(meta) = meta else {
            return if index <= snap {
                Ok(())
            } else {
                Err(StorageError::NoSnapshot { group, index })
            };
        };
        if meta.index <= snap {
            return Ok(());
        }
        if meta.index > last {
            return Err(StorageError::InvalidWrite {
                group,
                reason: format!(
                    "a local snapshot at {} is past the end of the log at {last}",
                    meta.index
                ),
            });
        }
        codec::encode_compacted(&mut self.open.body, group, &meta);
        self.view.insert(group, (meta.index, last));
        self.open.track.push(Track::Compacted(group, meta));
        Ok(())
    }
}

/// The writer thread's state.
struct Writer {
    gate: Arc<Gate>,
    wal_dir: PathBuf,
    id: Identity,
    opts: WalOptions,
    file: File,
    seq: u64,
    offset: u64,
    next_batch: u64,
    has_frames: bool,
    /// What is durable: used for checkpoints and deleting segments.
    tracker: Tracker,
    snapshots: SnapshotStore,
    shared: Arc<Shared>,
    checkpoint: Vec<u8>,
    /// Groups whose snapshot moved forward in the last durable frame.
    snapshot_changed: Vec<GroupId>,
    rotated: bool,
}

impl Writer {
    fn run(mut self) {
        loop {
            let batch = {
                let mut q = self.gate.lock();
                loop {
                    if let Some(b) = q.sealed.pop_front() {
                        break Some(b);
                    }
                    if !q.open.waiters.is_empty() {
                        break Some(std::mem::take(&mut q.open));
                    }
                    if q.shutdown {
                        break None;
                    }
                    q = self.gate.work.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            };
            match batch {
                Some(b) => self.write(b),
                None => return,
            }
        }
    }

    /// Makes one gathered frame durable and completes its waiters; a frame
    /// without operations completes at once (everything before it is
    /// durable). Then forgets what nothing needs any more.
    fn write(&mut self, batch: Batch) {
        let Batch {
            body,
            track,
            waiters,
        } = batch;
        if body.is_empty() {
            self.shared
                .submissions
                .fetch_add(waiters.len() as u64, Ordering::Relaxed);
            for w in waiters {
                w(Ok(()));
            }
            return;
        }
        if let Err(e) = self.write_frame(&body) {
            self.poison(e, waiters);
            return;
        }
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.shared
            .submissions
            .fetch_add(waiters.len() as u64, Ordering::Relaxed);
        for w in waiters {
            w(Ok(()));
        }
        self.apply(track);
        self.housekeeping();
    }

    /// After a failed write or fsync: refuse everything from now on, the
    /// frame's waiters and everything queued included.
    fn poison(&mut self, e: StorageError, mut waiters: Vec<Completion>) {
        tracing::error!(error = %e, "write-ahead log failed; refusing further writes");
        let p = Arc::new(e);
        {
            let mut q = self.gate.lock();
            q.poisoned = Some(p.clone());
            for b in q.sealed.drain(..) {
                waiters.extend(b.waiters);
            }
            let open = std::mem::take(&mut q.open);
            waiters.extend(open.waiters);
        }
        for w in waiters {
            w(Err(StorageError::Poisoned(p.clone())));
        }
    }

    /// The tracker learns what a durable frame changed.
    fn apply(&mut self, track: Vec<Track>) {
        for t in track {
            match t {
                Track::Install(g, m) => {
                    self.tracker.on_install(g, &m);
                    self.snapshot_changed.push(g);
                }
                Track::Entries(g, f, l) => {
                    // Validated against the same state: cannot fail.
                    let _ = self.tracker.on_entries(self.seq, g, f, l);
                }
                Track::HardState(g, hs) => self.tracker.on_hard_state(g, &hs),
                Track::Compacted(g, m) => {
                    if self.tracker.on_compacted(g, &m) {
                        self.snapshot_changed.push(g);
                    }
                }
            }
        }
    }

    /// Writes `body` as one frame and fsyncs it. The tracker holds every
    /// earlier frame, so it is up to date for the checkpoint of a new segment.
    fn write_frame(&mut self, body: &[u8]) -> Result<()> {
        let seg_size = self.opts.segment_size;
        let estimate = segment::frame_len(body.len()) as u64;
        if self.has_frames && self.offset + estimate > seg_size {
            self.rotate()?;
        }
        self.checkpoint.clear();
        if !self.has_frames {
            self.tracker.encode_checkpoint(&mut self.checkpoint);
        }
        let parts = [&self.checkpoint[..], body];
        let (header, pad) = segment::frame_header(self.next_batch, &parts);
        let zeros = [0u8; 8];
        let len = header.len() + self.checkpoint.len() + body.len() + pad;
        let path = self.wal_dir.join(segment::segment_name(self.seq));
        segment::write_all_at(
            &self.file,
            &[&header, parts[0], parts[1], &zeros[..pad]],
            self.offset,
        )
        .map_err(StorageError::io(&path, "appending to the log"))?;
        self.file
            .sync_data()
            .map_err(StorageError::io(&path, "syncing the log"))?;
        self.offset += len as u64;
        self.next_batch += 1;
        self.has_frames = true;
        self.shared.bytes.fetch_add(len as u64, Ordering::Relaxed);
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let seq = self.seq + 1;
        let (file, _) = segment::create_segment(
            &self.wal_dir,
            &self.id,
            seq,
            self.next_batch,
            self.opts.segment_size,
        )?;
        self.file = file;
        self.seq = seq;
        self.offset = HEADER_LEN;
        self.has_frames = false;
        self.rotated = true;
        self.tracker.add_segment(seq);
        self.shared.segments_created.fetch_add(1, Ordering::Relaxed);
        self.shared.current_segment.store(seq, Ordering::Relaxed);
        Ok(())
    }

    /// After a durable frame: delete segments and snapshot files nothing
    /// needs any more. Failures here lose no data; they are logged.
    fn housekeeping(&mut self) {
        // Segments become deletable when a snapshot moves forward (or a
        // rotation seals one); otherwise there is nothing to look at.
        if self.snapshot_changed.is_empty() && !self.rotated {
            return;
        }
        self.rotated = false;
        let snapshot_groups = std::mem::take(&mut self.snapshot_changed);
        let deletable = self.tracker.take_deletable(self.seq);
        let mut deleted = 0;
        for seq in &deletable {
            let path = self.wal_dir.join(segment::segment_name(*seq));
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::error!(path = %path.display(), error = %e, "could not delete an old segment");
                break;
            }
            deleted += 1;
        }
        if deleted > 0 {
            if let Err(e) = dir::sync_dir(&self.wal_dir) {
                tracing::error!(error = %e, "could not sync the log directory after deleting segments");
            }
            self.shared
                .segments_deleted
                .fetch_add(deleted, Ordering::Relaxed);
        }
        self.shared
            .live_segments
            .store(self.tracker.segments() as u64, Ordering::Relaxed);
        self.shared.pinned_by.store(
            self.tracker.oldest_pin(self.seq).map_or(u64::MAX, |g| g.0),
            Ordering::Relaxed,
        );
        for g in snapshot_groups {
            let Some(index) = self.tracker.group(g).map(|m| m.snapshot_index()) else {
                continue;
            };
            if let Err(e) = self.snapshots.remove_older(g, index) {
                tracing::warn!(group = %g, error = %e, "could not remove old snapshots");
            }
        }
    }
}
