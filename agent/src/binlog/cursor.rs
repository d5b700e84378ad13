//! Bounds-checked little-endian reader over one event's bytes.
//!
//! Invariant: no method panics on short or hostile input; every failure is a
//! [`DecodeError`] that names what was being read and the byte offset inside the event.

use super::error::DecodeError;

/// A read position over a borrowed byte slice.
#[derive(Clone, Copy)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` inside the event, so errors point at event bytes.
    base: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor over `buf`, whose first byte sits at `base` inside the event.
    pub fn new(buf: &'a [u8], base: usize) -> Self {
        Self { buf, pos: 0, base }
    }

    /// Offset of the next byte inside the event.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Takes `n` bytes.
    #[inline]
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                what,
                at: self.offset(),
                needed: n,
                available: self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Takes everything left.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        self.take(n, what).map(|_| ())
    }

    #[inline]
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// One byte.
    #[inline]
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// Little-endian u16.
    #[inline]
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// Little-endian u32.
    #[inline]
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// Little-endian u64.
    #[inline]
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Little-endian unsigned integer of `n` (1..=8) bytes.
    #[inline]
    pub fn uint_n(&mut self, n: usize, what: &'static str) -> Result<u64, DecodeError> {
        let s = self.take(n, what)?;
        Ok(le_uint(s))
    }

    /// Big-endian unsigned integer of `n` (1..=8) bytes.
    #[inline]
    pub fn be_uint_n(&mut self, n: usize, what: &'static str) -> Result<u64, DecodeError> {
        let s = self.take(n, what)?;
        Ok(be_uint(s))
    }

    /// MySQL length-encoded integer. `None` is the NULL marker (0xfb).
    pub fn lenenc(&mut self, what: &'static str) -> Result<Option<u64>, DecodeError> {
        let at = self.offset();
        match self.u8(what)? {
            b @ 0..=0xfa => Ok(Some(u64::from(b))),
            0xfb => Ok(None),
            0xfc => self.uint_n(2, what).map(Some),
            0xfd => self.uint_n(3, what).map(Some),
            0xfe => self.u64(what).map(Some),
            0xff => Err(DecodeError::Malformed {
                what,
                at,
                detail: "0xff is not a valid length prefix".into(),
            }),
        }
    }

    /// Length-encoded integer that must be present and fit in `usize`.
    pub fn lenenc_len(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let at = self.offset();
        match self.lenenc(what)? {
            Some(n) if n <= self.remaining() as u64 => Ok(n as usize),
            Some(n) => Err(DecodeError::Truncated {
                what,
                at,
                needed: usize::try_from(n).unwrap_or(usize::MAX),
                available: self.remaining(),
            }),
            None => Err(DecodeError::Malformed {
                what,
                at,
                detail: "unexpected NULL length".into(),
            }),
        }
    }

    /// A length-encoded count (columns, entries) that must be present and at most `max`.
    pub fn lenenc_count(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let at = self.offset();
        match self.lenenc(what)? {
            Some(n) if n <= max as u64 => Ok(n as usize),
            Some(n) => Err(DecodeError::Malformed {
                what,
                at,
                detail: format!("{n} is more than the limit of {max}"),
            }),
            None => Err(DecodeError::Malformed {
                what,
                at,
                detail: "unexpected NULL count".into(),
            }),
        }
    }

    /// A length-encoded byte string.
    pub fn lenenc_bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.lenenc_len(what)?;
        self.take(n, what)
    }

    /// A byte string prefixed by a one-byte length.
    pub fn u8_prefixed(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.u8(what)? as usize;
        self.take(n, what)
    }
}

/// Little-endian unsigned integer from up to 8 bytes.
#[inline]
pub fn le_uint(s: &[u8]) -> u64 {
    let mut v = 0u64;
    for (i, b) in s.iter().take(8).enumerate() {
        v |= u64::from(*b) << (8 * i);
    }
    v
}

/// Big-endian unsigned integer from up to 8 bytes.
#[inline]
pub fn be_uint(s: &[u8]) -> u64 {
    let mut v = 0u64;
    for b in s.iter().take(8) {
        v = (v << 8) | u64::from(*b);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_are_errors_with_offsets() {
        let mut c = Cursor::new(&[1, 2, 3], 19);
        assert_eq!(c.u16("a").ok(), Some(0x0201));
        match c.u32("column value") {
            Err(DecodeError::Truncated {
                what,
                at,
                needed,
                available,
            }) => {
                assert_eq!((what, at, needed, available), ("column value", 21, 4, 1));
            }
            other => panic!("expected truncation, got {other:?}"),
        }
    }

    #[test]
    fn lenenc_forms() {
        let mut c = Cursor::new(&[0xfa, 0xfb, 0xfc, 0x34, 0x12, 0xfd, 1, 2, 3], 0);
        assert_eq!(c.lenenc("x").ok(), Some(Some(0xfa)));
        assert_eq!(c.lenenc("x").ok(), Some(None));
        assert_eq!(c.lenenc("x").ok(), Some(Some(0x1234)));
        assert_eq!(c.lenenc("x").ok(), Some(Some(0x030201)));
        assert!(Cursor::new(&[0xff], 0).lenenc("x").is_err());
        assert!(Cursor::new(&[0xfc, 1], 0).lenenc("x").is_err());
    }

    #[test]
    fn lenenc_len_refuses_lengths_past_the_end() {
        assert!(Cursor::new(&[5, 1, 2], 0).lenenc_bytes("name").is_err());
    }
}
