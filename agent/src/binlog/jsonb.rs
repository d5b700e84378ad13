//! MySQL's binary JSON (column type 245) to the text `SELECT` prints.
//!
//! Output follows MySQL's `Json_wrapper::to_string`: `{"k": v, ...}`, `[a, b]`, doubles
//! with a `.0` when integral, temporal and DECIMAL scalars as MySQL prints them, other
//! opaque values as `"base64:typeNN:..."`. Hostile input (bad offsets, cycles, deep
//! nesting) gives an error, never a panic or unbounded recursion.

use super::decimal::decimal_text;
use super::error::DecodeError;
use super::float::push_double;
use super::temporal::{push_json_datetime, push_json_time};
use crate::json::push_json_string;

const MAX_DEPTH: usize = 100;

/// Appends the JSON text of a binary JSON document. `at` is the document's offset in
/// the event, for errors.
pub fn push_json(out: &mut Vec<u8>, doc: &[u8], at: usize) -> Result<(), DecodeError> {
    // An empty value is how MySQL logs a JSON NULL literal in some paths.
    let Some((&t, rest)) = doc.split_first() else {
        out.extend_from_slice(b"null");
        return Ok(());
    };
    let p = Parser { at };
    p.value(out, t, rest, 0)
}

struct Parser {
    at: usize,
}

impl Parser {
    fn err(&self, detail: impl Into<String>) -> DecodeError {
        DecodeError::Malformed {
            what: "JSON value",
            at: self.at,
            detail: detail.into(),
        }
    }

    fn slice<'a>(&self, b: &'a [u8], start: usize, len: usize) -> Result<&'a [u8], DecodeError> {
        b.get(
            start
                ..start
                    .checked_add(len)
                    .ok_or_else(|| self.err("offset overflow"))?,
        )
        .ok_or_else(|| self.err(format!("offset {start}+{len} past the end ({})", b.len())))
    }

    fn uint(&self, b: &[u8], off: usize, large: bool) -> Result<usize, DecodeError> {
        let n = if large { 4 } else { 2 };
        let s = self.slice(b, off, n)?;
        Ok(s.iter()
            .rev()
            .fold(0usize, |a, &x| (a << 8) | usize::from(x)))
    }

    fn varlen(&self, b: &[u8]) -> Result<(usize, usize), DecodeError> {
        let mut v = 0usize;
        for i in 0..5 {
            let byte = *b.get(i).ok_or_else(|| self.err("truncated length"))?;
            v |= usize::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok((v, i + 1));
            }
        }
        Err(self.err("length longer than 5 bytes"))
    }

    fn value(&self, out: &mut Vec<u8>, t: u8, b: &[u8], depth: usize) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested deeper than 100 levels"));
        }
        match t {
            0x00 => self.container(out, b, false, true, depth),
            0x01 => self.container(out, b, true, true, depth),
            0x02 => self.container(out, b, false, false, depth),
            0x03 => self.container(out, b, true, false, depth),
            0x04 => {
                let lit = *b.first().ok_or_else(|| self.err("truncated literal"))?;
                out.extend_from_slice(match lit {
                    0 => b"null" as &[u8],
                    1 => b"true",
                    2 => b"false",
                    _ => return Err(self.err(format!("literal {lit}"))),
                });
                Ok(())
            }
            0x05 => self.int(out, b, 2, true),
            0x06 => self.int(out, b, 2, false),
            0x07 => self.int(out, b, 4, true),
            0x08 => self.int(out, b, 4, false),
            0x09 => self.int(out, b, 8, true),
            0x0a => self.int(out, b, 8, false),
            0x0b => {
                let s = self.slice(b, 0, 8)?;
                let v = f64::from_le_bytes(s.try_into().map_err(|_| self.err("double"))?);
                let start = out.len();
                push_double(out, v);
                if !out[start..].iter().any(|c| matches!(c, b'.' | b'e')) {
                    out.extend_from_slice(b".0");
                }
                Ok(())
            }
            0x0c => {
                let (len, n) = self.varlen(b)?;
                let s = self.slice(b, n, len)?;
                push_json_string(out, &String::from_utf8_lossy(s));
                Ok(())
            }
            0x0f => self.opaque(out, b),
            other => Err(self.err(format!("unknown value type {other:#04x}"))),
        }
    }

    fn int(&self, out: &mut Vec<u8>, b: &[u8], n: usize, signed: bool) -> Result<(), DecodeError> {
        let s = self.slice(b, 0, n)?;
        let raw = s.iter().rev().fold(0u64, |a, &x| (a << 8) | u64::from(x));
        let mut buf = itoa::Buffer::new();
        let text = if signed {
            let shift = 64 - 8 * n as u32;
            buf.format(((raw << shift) as i64) >> shift)
        } else {
            buf.format(raw)
        };
        out.extend_from_slice(text.as_bytes());
        Ok(())
    }

    fn container(
        &self,
        out: &mut Vec<u8>,
        b: &[u8],
        large: bool,
        object: bool,
        depth: usize,
    ) -> Result<(), DecodeError> {
        let w = if large { 4 } else { 2 };
        let count = self.uint(b, 0, large)?;
        let size = self.uint(b, w, large)?;
        if size > b.len() {
            return Err(self.err(format!("container size {size} past the end ({})", b.len())));
        }
        let b = &b[..size];
        let key_entry = w + 2;
        let value_entry = 1 + w;
        let header = 2 * w;
        let keys_len = if object { count * key_entry } else { 0 };
        if header + keys_len + count * value_entry > size {
            return Err(self.err(format!("{count} entries do not fit in {size} bytes")));
        }
        out.push(if object { b'{' } else { b'[' });
        for i in 0..count {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            if object {
                let e = header + i * key_entry;
                let koff = self.uint(b, e, large)?;
                let klen = self.uint(b, e + w, false)?;
                let key = self.slice(b, koff, klen)?;
                push_json_string(out, &String::from_utf8_lossy(key));
                out.extend_from_slice(b": ");
            }
            let e = header + keys_len + i * value_entry;
            let t = b[e];
            let inline = match t {
                0x04..=0x06 => true,
                0x07 | 0x08 => large,
                _ => false,
            };
            if inline {
                self.value(out, t, &b[e + 1..e + 1 + w], depth + 1)?;
            } else {
                let off = self.uint(b, e + 1, large)?;
                if off >= size {
                    return Err(self.err(format!("value offset {off} past the end ({size})")));
                }
                self.value(out, t, &b[off..], depth + 1)?;
            }
        }
        out.push(if object { b'}' } else { b']' });
        Ok(())
    }

    fn opaque(&self, out: &mut Vec<u8>, b: &[u8]) -> Result<(), DecodeError> {
        let ft = *b
            .first()
            .ok_or_else(|| self.err("truncated opaque value"))?;
        let (len, n) = self.varlen(&b[1..])?;
        let data = self.slice(b, 1 + n, len)?;
        let packed = || -> Result<i64, DecodeError> {
            let s = self.slice(data, 0, 8)?;
            Ok(i64::from_le_bytes(
                s.try_into().map_err(|_| self.err("packed time"))?,
            ))
        };
        match ft {
            // DATE, DATETIME/TIMESTAMP, TIME: quoted, as MySQL prints them.
            10 | 14 => {
                out.push(b'"');
                push_json_datetime(out, packed()?, true);
                out.push(b'"');
            }
            7 | 12 | 17 | 18 => {
                out.push(b'"');
                push_json_datetime(out, packed()?, false);
                out.push(b'"');
            }
            11 | 19 => {
                out.push(b'"');
                push_json_time(out, packed()?);
                out.push(b'"');
            }
            // DECIMAL: precision, scale, binary decimal; printed as a bare number.
            246 => {
                let p = *data.first().ok_or_else(|| self.err("decimal precision"))?;
                let s = *data.get(1).ok_or_else(|| self.err("decimal scale"))?;
                let raw = data.get(2..).unwrap_or(&[]);
                let need = super::decimal::binary_size(p, s);
                if raw.len() < need || p == 0 || s > p {
                    return Err(self.err("opaque DECIMAL is malformed"));
                }
                decimal_text(&raw[..need], p, s, self.at, out)?;
            }
            _ => {
                out.extend_from_slice(format!("\"base64:type{ft}:").as_bytes());
                crate::json::push_base64(out, data);
                out.push(b'"');
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(doc: &[u8]) -> Result<String, DecodeError> {
        let mut out = Vec::new();
        push_json(&mut out, doc, 0)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn small_object_with_inline_and_offset_values() {
        // {"a": 1, "b": "xy"}
        let mut d = vec![0x00];
        let body: Vec<u8> = {
            let mut b = Vec::new();
            b.extend_from_slice(&2u16.to_le_bytes()); // count
            b.extend_from_slice(&0u16.to_le_bytes()); // size, patched below
            // key entries: header 4 + 2 keys*4 = 12, values 2*3 = 6 -> keys start at 18
            b.extend_from_slice(&18u16.to_le_bytes());
            b.extend_from_slice(&1u16.to_le_bytes());
            b.extend_from_slice(&19u16.to_le_bytes());
            b.extend_from_slice(&1u16.to_le_bytes());
            b.push(0x05);
            b.extend_from_slice(&1u16.to_le_bytes());
            b.push(0x0c);
            b.extend_from_slice(&20u16.to_le_bytes());
            b.extend_from_slice(b"ab");
            b.push(2);
            b.extend_from_slice(b"xy");
            let n = b.len() as u16;
            b[2..4].copy_from_slice(&n.to_le_bytes());
            b
        };
        d.extend_from_slice(&body);
        assert_eq!(render(&d).unwrap(), r#"{"a": 1, "b": "xy"}"#);
        // Truncating anywhere gives an error, never a panic.
        for cut in 1..d.len() {
            let _ = render(&d[..cut]);
        }
    }

    #[test]
    fn scalars() {
        assert_eq!(render(&[0x04, 2]).unwrap(), "false");
        assert_eq!(render(&[0x05, 0xff, 0xff]).unwrap(), "-1");
        let mut d = vec![0x0b];
        d.extend_from_slice(&2.0f64.to_le_bytes());
        assert_eq!(render(&d).unwrap(), "2.0");
        assert_eq!(render(&[]).unwrap(), "null");
        assert_eq!(render(&[0x0c, 3, b'a', b'"', b'\n']).unwrap(), r#""a\"\n""#);
        assert!(render(&[0x0c, 9, b'a']).is_err());
        assert!(render(&[0x0f, 15, 1, 0x55]).unwrap() == r#""base64:type15:VQ==""#);
    }
}
