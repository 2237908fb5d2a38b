//! The byte-level primitives shared by the command encoding and the snapshot
//! format: LEB128 varints and length-prefixed byte strings.
//!
//! The decoder reads from untrusted bytes. It never panics and never
//! allocates on the strength of a length it has read: a length is checked
//! against the bytes actually remaining before anything is sliced, and slices
//! of a [`Bytes`] share its buffer instead of copying.

use bytes::{BufMut, Bytes};
use thiserror::Error;

/// Why bytes could not be decoded. Deterministic: the same bytes always give
/// the same error, on every replica.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("truncated: needed {needed} more byte(s) for {what} at offset {offset}")]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: usize,
    },
    #[error("varint for {what} at offset {offset} is longer than 10 bytes or overflows 64 bits")]
    VarintOverflow { what: &'static str, offset: usize },
    #[error("unsupported encoding version {found} (this replica reads version {supported})")]
    UnsupportedVersion { found: u8, supported: u8 },
    #[error("unknown {what} tag {tag} at offset {offset}")]
    UnknownTag {
        what: &'static str,
        tag: u8,
        offset: usize,
    },
    #[error("{len} trailing byte(s) after the end at offset {offset}")]
    TrailingBytes { offset: usize, len: usize },
    #[error("{what} at offset {offset} is invalid: {problem}")]
    Invalid {
        what: &'static str,
        offset: usize,
        problem: &'static str,
    },
}

/// Appends `v` as an unsigned LEB128 varint (1 to 10 bytes).
pub fn put_varint(buf: &mut impl BufMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// The number of bytes [`put_varint`] writes for `v`.
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends a varint length followed by the bytes.
pub fn put_bytes(buf: &mut impl BufMut, b: &[u8]) {
    put_varint(buf, b.len() as u64);
    buf.put_slice(b);
}

/// A cursor over untrusted bytes.
pub struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a Bytes) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn offset(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(DecodeError::Truncated {
                what,
                offset: self.pos,
                needed: 1,
            }),
        }
    }

    pub fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8(what).map_err(|_| DecodeError::Truncated {
                what,
                offset: start,
                needed: 1,
            })?;
            let low = u64::from(b & 0x7f);
            // The 10th byte may only carry the single top bit of a u64.
            if i == 9 && b > 1 {
                return Err(DecodeError::VarintOverflow {
                    what,
                    offset: start,
                });
            }
            v |= low << (7 * i);
            if b & 0x80 == 0 {
                // One value, one encoding: a trailing zero byte would make
                // two byte strings decode to the same command.
                if i > 0 && b == 0 {
                    return Err(DecodeError::Invalid {
                        what,
                        offset: start,
                        problem: "a varint must use the fewest bytes",
                    });
                }
                return Ok(v);
            }
        }
        Err(DecodeError::VarintOverflow {
            what,
            offset: start,
        })
    }

    /// A varint length followed by that many bytes, as a slice sharing the
    /// underlying buffer (no copy, no allocation).
    pub fn bytes(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.varint(what)?;
        let offset = self.pos;
        let remaining = self.remaining();
        if len > remaining as u64 {
            return Err(DecodeError::Truncated {
                what,
                offset,
                needed: usize::try_from(len).unwrap_or(usize::MAX) - remaining,
            });
        }
        let len = len as usize;
        let out = self.buf.slice(offset..offset + len);
        self.pos += len;
        Ok(out)
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        let offset = self.pos;
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid {
                what,
                offset,
                problem: "a boolean must be 0 or 1",
            }),
        }
    }

    /// An optional byte string: a presence byte (0 or 1), then the bytes.
    pub fn opt_bytes(&mut self, what: &'static str) -> Result<Option<Bytes>, DecodeError> {
        if self.bool(what)? {
            Ok(Some(self.bytes(what)?))
        } else {
            Ok(None)
        }
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            len => Err(DecodeError::TrailingBytes {
                offset: self.pos,
                len,
            }),
        }
    }
}

/// Appends an optional byte string as read by [`Reader::opt_bytes`].
pub fn put_opt_bytes(buf: &mut impl BufMut, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            buf.put_u8(1);
            put_bytes(buf, b);
        }
        None => buf.put_u8(0),
    }
}

/// The encoded size of an optional byte string.
pub fn opt_bytes_len(b: Option<&[u8]>) -> usize {
    1 + b.map_or(0, |b| varint_len(b.len() as u64) + b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_width() {
        for v in [
            0u64,
            1,
            127,
            128,
            16383,
            16384,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), varint_len(v), "length of {v}");
            let bytes = Bytes::from(buf);
            let mut r = Reader::new(&bytes);
            assert_eq!(r.varint("v"), Ok(v));
            assert!(r.finish().is_ok());
        }
    }

    #[test]
    fn overlong_and_overflowing_varints_are_rejected() {
        let eleven = Bytes::from(vec![0x80u8; 11]);
        assert!(matches!(
            Reader::new(&eleven).varint("v"),
            Err(DecodeError::VarintOverflow { .. })
        ));
        let mut top = vec![0xffu8; 9];
        top.push(0x02);
        let top = Bytes::from(top);
        assert!(matches!(
            Reader::new(&top).varint("v"),
            Err(DecodeError::VarintOverflow { .. })
        ));
    }

    #[test]
    fn non_minimal_varints_are_rejected() {
        let padded = Bytes::from_static(&[0x81, 0x00]);
        assert!(matches!(
            Reader::new(&padded).varint("v"),
            Err(DecodeError::Invalid { .. })
        ));
    }

    #[test]
    fn a_huge_declared_length_is_an_error_not_an_allocation() {
        let mut buf = Vec::new();
        put_varint(&mut buf, u64::MAX);
        buf.extend_from_slice(b"abc");
        let bytes = Bytes::from(buf);
        let err = Reader::new(&bytes).bytes("key").unwrap_err();
        assert!(
            matches!(err, DecodeError::Truncated { what: "key", .. }),
            "{err}"
        );
    }
}
