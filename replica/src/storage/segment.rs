//! Segment files of the write-ahead log and the frames inside them.
//!
//! A segment is a header page followed by frames, then zeros (the segment is
//! preallocated). Each frame is one group-commit batch: everything written
//! between two fsyncs, for any number of groups.
//!
//! ```text
//! header (4096 bytes; the first 52 used):
//!   magic "KRFTWAL\0" | format:u32 | header_len:u32 | seq:u64 | identity digest:u64
//!   | node:u64 | first_batch:u64 | crc32c of the preceding 48 bytes:u32
//! frame (padded with zeros to a multiple of 8 bytes):
//!   crc32c:u32 (of everything after it, padding included) | len:u32 | batch:u64 | body
//! ```
//!
//! Batch numbers grow by one from frame to frame across segments, so a
//! missing or repeated frame is detected, not only a damaged one. The header
//! has its own page so that a torn write of the first frames can never
//! damage it. Every byte from the first frame to the end of the last one is
//! covered by a checksum; after the last frame a segment holds only zeros
//! (preallocated space, or a torn tail zeroed by recovery).

use super::dir::{self, FORMAT_VERSION, Identity};
use super::error::{Result, StorageError};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub(crate) const MAGIC: &[u8; 8] = b"KRFTWAL\0";
pub(crate) const HEADER_LEN: u64 = 4096;
const HEADER_USED: usize = 52;
pub(crate) const FRAME_HEADER: usize = 16;
/// No frame is larger than this; a length field above it is damage.
pub(crate) const MAX_FRAME: usize = 1 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub seq: u64,
    pub digest: u64,
    pub node: u64,
    pub first_batch: u64,
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN as usize);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b.extend_from_slice(&self.seq.to_le_bytes());
        b.extend_from_slice(&self.digest.to_le_bytes());
        b.extend_from_slice(&self.node.to_le_bytes());
        b.extend_from_slice(&self.first_batch.to_le_bytes());
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b.resize(HEADER_LEN as usize, 0);
        b
    }

    /// Parses a header, or says what is wrong with it.
    pub(crate) fn decode(b: &[u8]) -> std::result::Result<SegmentHeader, String> {
        if b.len() < HEADER_USED {
            return Err(format!(
                "file is {} bytes, shorter than a segment header",
                b.len()
            ));
        }
        if &b[..8] != MAGIC {
            return Err("no kuberaft write-ahead log magic".into());
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        if crc32c::crc32c(&b[..48]) != u32_at(48) {
            return Err("segment header checksum mismatch".into());
        }
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(format!(
                "segment format version {version}, this kuberaft reads version {FORMAT_VERSION}"
            ));
        }
        if u32_at(12) as u64 != HEADER_LEN {
            return Err(format!("unexpected header length {}", u32_at(12)));
        }
        Ok(SegmentHeader {
            seq: u64_at(16),
            digest: u64_at(24),
            node: u64_at(32),
            first_batch: u64_at(40),
        })
    }
}

pub(crate) fn segment_name(seq: u64) -> String {
    format!("{seq:016x}.log")
}

/// The sequence number of a segment file name, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".log")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Creates segment `seq` durably: header written, space preallocated,
/// fsynced under a temporary name, renamed, directory fsynced.
pub(crate) fn create_segment(
    wal_dir: &Path,
    id: &Identity,
    seq: u64,
    first_batch: u64,
    size: u64,
) -> Result<(File, PathBuf)> {
    let path = wal_dir.join(segment_name(seq));
    let tmp = dir::tmp_path(&path);
    let header = SegmentHeader {
        seq,
        digest: id.digest(),
        node: id.node_id.0,
        first_batch,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(StorageError::io(&tmp, "creating segment"))?;
    file.write_all_at(&header.encode(), 0)
        .and_then(|_| dir::preallocate(&file, size.max(HEADER_LEN)))
        .and_then(|_| file.sync_all())
        .map_err(StorageError::io(&tmp, "preparing segment"))?;
    std::fs::rename(&tmp, &path).map_err(StorageError::io(&path, "renaming new segment"))?;
    dir::sync_dir(wal_dir)?;
    Ok((file, path))
}

/// Appends a frame whose body is the concatenation of `parts` to `out`,
/// padded to 8 bytes (the writer writes the same bytes from
/// [`frame_header`] and the parts, without assembling them).
#[cfg(test)]
pub(crate) fn encode_frame(out: &mut Vec<u8>, batch: u64, parts: &[&[u8]]) {
    let start = out.len();
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&batch.to_le_bytes());
    for p in parts {
        out.extend_from_slice(p);
    }
    out.resize(start + frame_len(len), 0);
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The header of a frame whose body is the concatenation of `parts`, and
/// the number of zero bytes of padding that follow the body. The checksum
/// covers the header after it, the body and the padding.
pub(crate) fn frame_header(batch: u64, parts: &[&[u8]]) -> ([u8; FRAME_HEADER], usize) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let pad = frame_len(len) - FRAME_HEADER - len;
    let mut h = [0u8; FRAME_HEADER];
    h[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    h[8..16].copy_from_slice(&batch.to_le_bytes());
    let mut crc = crc32c::crc32c(&h[4..]);
    for p in parts {
        crc = crc32c::crc32c_append(crc, p);
    }
    crc = crc32c::crc32c_append(crc, &[0u8; 8][..pad]);
    h[..4].copy_from_slice(&crc.to_le_bytes());
    (h, pad)
}

/// Writes the concatenation of `parts` at `offset` with as few `pwritev`
/// calls as the kernel allows, copying nothing.
pub(crate) fn write_all_at(file: &File, parts: &[&[u8]], mut offset: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut parts: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    let mut first = 0;
    while first < parts.len() {
        let iov: Vec<std::io::IoSlice<'_>> = parts[first..]
            .iter()
            .take(1024)
            .map(|p| std::io::IoSlice::new(p))
            .collect();
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix; the
        // slices outlive the call; the descriptor is open.
        let n = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                iov.as_ptr().cast::<libc::iovec>(),
                iov.len() as libc::c_int,
                offset as libc::off_t,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut n = n as usize;
        offset += n as u64;
        while n > 0 {
            let p = parts[first];
            if n >= p.len() {
                n -= p.len();
                first += 1;
            } else {
                parts[first] = &p[n..];
                n = 0;
            }
        }
    }
    Ok(())
}

/// Bytes a frame with a body of `len` bytes occupies, padding included.
pub(crate) fn frame_len(len: usize) -> usize {
    (FRAME_HEADER + len).next_multiple_of(8)
}

/// What is found at an offset of a segment.
#[derive(Debug)]
pub(crate) enum Frame<'a> {
    /// A complete frame with a valid checksum; the next one starts at `next`.
    Valid {
        batch: u64,
        body: &'a [u8],
        next: usize,
    },
    /// The end of the written data: the buffer ends, or only zeros follow.
    /// Whether zeros are really the end, not zeroed data, is the caller's
    /// question (see [`find_valid_frame`]).
    End,
    /// Not a valid frame.
    Bad(String),
}

pub(crate) fn read_frame(buf: &[u8], off: usize) -> Frame<'_> {
    if off >= buf.len() {
        return Frame::End;
    }
    let rest = &buf[off..];
    if rest.len() < FRAME_HEADER {
        return if all_zeros(rest) {
            Frame::End
        } else {
            Frame::Bad(format!(
                "{} stray bytes where a frame header should be",
                rest.len()
            ))
        };
    }
    let crc = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
    if crc == 0 && len == 0 && rest[8..FRAME_HEADER].iter().all(|&b| b == 0) {
        return Frame::End;
    }
    if len > MAX_FRAME || frame_len(len) > rest.len() {
        return Frame::Bad(format!(
            "frame length {len} runs past the end of the segment ({} bytes left)",
            rest.len()
        ));
    }
    let padded = frame_len(len);
    if crc32c::crc32c(&rest[4..padded]) != crc {
        return Frame::Bad("frame checksum mismatch".into());
    }
    Frame::Valid {
        batch: batch_at(rest),
        body: &rest[FRAME_HEADER..FRAME_HEADER + len],
        next: off + padded,
    }
}

/// The batch number field of the frame header at the start of `b`.
fn batch_at(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[8..16]);
    u64::from_le_bytes(a)
}

/// The first valid frame at an 8-byte aligned offset at or after `from`
/// whose batch number is later than `after`: evidence that what lies
/// before it is damage in the middle of the log, not a torn tail.
///
/// Only frames written after the damaged position can carry such a batch
/// number, and one is checked only if its batch number could fit in the
/// bytes that remain, so garbage (random bytes in a torn tail) costs a few
/// comparisons per offset, not a checksum over the rest of the segment.
pub(crate) fn find_valid_frame(buf: &[u8], from: usize, after: u64) -> Option<(usize, u64)> {
    let mut off = from.next_multiple_of(8);
    let max_frames = (buf.len() / 8) as u64;
    while off + FRAME_HEADER <= buf.len() {
        let batch = batch_at(&buf[off..]);
        if batch > after
            && batch - after <= max_frames
            && let Frame::Valid { batch, .. } = read_frame(buf, off)
        {
            return Some((off, batch));
        }
        off += 8;
    }
    None
}

/// Whether `buf` holds only zeros from `from` on.
pub(crate) fn zeros_from(buf: &[u8], from: usize) -> bool {
    buf.get(from..).is_none_or(all_zeros)
}

/// Whether `b` is all zeros. The preallocated rest of the last segment is
/// most of a segment: it is checked a page at a time with an OR over the
/// page (which the compiler vectorizes), not byte by byte with an early exit.
fn all_zeros(b: &[u8]) -> bool {
    b.chunks(4096)
        .all(|page| page.iter().fold(0u8, |acc, &x| acc | x) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = SegmentHeader {
            seq: 3,
            digest: 0xdead_beef_0123_4567,
            node: 2,
            first_batch: 77,
        };
        let mut b = h.encode();
        assert_eq!(b.len() as u64, HEADER_LEN);
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        b[20] ^= 1;
        assert!(SegmentHeader::decode(&b).is_err());
    }

    #[test]
    fn frames_read_back_and_zeros_end_the_log() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, 5, &[b"a", b"bc"]);
        encode_frame(&mut buf, 6, &[]);
        buf.resize(buf.len() + 64, 0);
        let Frame::Valid {
            batch: 5,
            body: b"abc",
            next,
        } = read_frame(&buf, 0)
        else {
            panic!("first frame")
        };
        let Frame::Valid { batch: 6, next, .. } = read_frame(&buf, next) else {
            panic!("second frame")
        };
        assert!(matches!(read_frame(&buf, next), Frame::End));
        assert_eq!(find_valid_frame(&buf, next, 6), None);
        assert_eq!(find_valid_frame(&buf, 1, 5), Some((24, 6)));
        assert_eq!(
            find_valid_frame(&buf, 1, 6),
            None,
            "only later batches count as evidence"
        );
        assert!(zeros_from(&buf, next));
    }

    #[test]
    fn a_vectored_frame_is_the_encoded_frame() {
        let mut encoded = Vec::new();
        encode_frame(&mut encoded, 9, &[b"check", b"point body"]);
        let (h, pad) = frame_header(9, &[b"check", b"point body"]);
        let mut parts = h.to_vec();
        parts.extend_from_slice(b"checkpoint body");
        parts.resize(parts.len() + pad, 0);
        assert_eq!(parts, encoded);

        let dir = tempfile::tempdir().unwrap();
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        let big = vec![7u8; 3 << 20];
        write_all_at(&f, &[&h, b"check", &[], &big, &[0; 3]], 100).unwrap();
        let mut back = vec![0u8; 16 + 5 + big.len() + 3];
        f.read_exact_at(&mut back, 100).unwrap();
        assert_eq!(&back[..16], &h);
        assert_eq!(&back[16..21], b"check");
        assert!(back[21..21 + big.len()].iter().all(|&b| b == 7));
    }

    #[test]
    fn the_checksum_covers_the_padding() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, 1, &[b"abc"]);
        assert_eq!(buf.len(), 24);
        buf[FRAME_HEADER + 4] = 1;
        assert!(matches!(read_frame(&buf, 0), Frame::Bad(_)));
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_segment_name(&segment_name(0x1f)), Some(0x1f));
        assert_eq!(parse_segment_name("000000000000001f.log.tmp"), None);
        assert_eq!(parse_segment_name("1f.log"), None);
    }
}
