//! DECIMAL(p, s) from MySQL's binary format to exact text, any precision up to 65.
//!
//! The format stores the integer and fraction parts in groups of nine decimal digits
//! (4 bytes each) plus a shorter leading/trailing group, big-endian, with the sign bit of
//! the first byte flipped and negative numbers stored bitwise inverted.

use super::cursor::Cursor;
use super::error::DecodeError;

const DIG_PER_DEC: usize = 9;
const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/// Storage size of DECIMAL(precision, scale).
pub fn binary_size(precision: u8, scale: u8) -> usize {
    let intg = usize::from(precision.saturating_sub(scale));
    let frac = usize::from(scale);
    (intg / DIG_PER_DEC) * 4
        + DIG2BYTES[intg % DIG_PER_DEC]
        + (frac / DIG_PER_DEC) * 4
        + DIG2BYTES[frac % DIG_PER_DEC]
}

/// Reads DECIMAL(precision, scale) and appends its text (`-12.340`).
pub fn read_decimal(
    c: &mut Cursor<'_>,
    precision: u8,
    scale: u8,
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    if precision == 0 || precision > 65 || scale > 30 || scale > precision {
        return Err(DecodeError::Malformed {
            what: "DECIMAL metadata",
            at: c.offset(),
            detail: format!("DECIMAL({precision},{scale}) is not a valid type"),
        });
    }
    let at = c.offset();
    let raw = c.take(binary_size(precision, scale), "DECIMAL value")?;
    decimal_text(raw, precision, scale, at, out)
}

/// Appends the text of a binary DECIMAL held in `raw` (exactly its storage size).
pub fn decimal_text(
    raw: &[u8],
    precision: u8,
    scale: u8,
    at: usize,
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    let intg = usize::from(precision - scale);
    let frac = usize::from(scale);
    let negative = raw.first().is_some_and(|b| b & 0x80 == 0);
    let mask: u8 = if negative { 0xff } else { 0 };
    let mut pos = 0usize;
    let mut group = |n: usize, digits: usize| -> Result<u32, DecodeError> {
        let mut v: u32 = 0;
        for i in 0..n {
            let mut b = raw.get(pos + i).copied().unwrap_or(0) ^ mask;
            if pos + i == 0 {
                b ^= 0x80;
            }
            v = (v << 8) | u32::from(b);
        }
        pos += n;
        if digits > 0 && u64::from(v) >= 10u64.pow(digits as u32) {
            return Err(DecodeError::Malformed {
                what: "DECIMAL value",
                at,
                detail: format!("group value {v} has more than {digits} digits"),
            });
        }
        Ok(v)
    };

    let start = out.len();
    if negative {
        out.push(b'-');
    }
    let digits_start = out.len();
    let mut int_digits: Vec<u8> = Vec::with_capacity(intg + 1);
    let lead = intg % DIG_PER_DEC;
    if lead > 0 {
        let v = group(DIG2BYTES[lead], lead)?;
        push_padded(&mut int_digits, v, lead);
    }
    for _ in 0..intg / DIG_PER_DEC {
        let v = group(4, DIG_PER_DEC)?;
        push_padded(&mut int_digits, v, DIG_PER_DEC);
    }
    let first_nonzero = int_digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(int_digits.len());
    if first_nonzero == int_digits.len() {
        out.push(b'0');
    } else {
        out.extend_from_slice(&int_digits[first_nonzero..]);
    }
    if frac > 0 {
        out.push(b'.');
        for _ in 0..frac / DIG_PER_DEC {
            let v = group(4, DIG_PER_DEC)?;
            push_padded(out, v, DIG_PER_DEC);
        }
        let trail = frac % DIG_PER_DEC;
        if trail > 0 {
            let v = group(DIG2BYTES[trail], trail)?;
            push_padded(out, v, trail);
        }
    }
    // "-0.00" is not a value MySQL prints.
    if negative && out[digits_start..].iter().all(|&b| b == b'0' || b == b'.') {
        out.remove(start);
    }
    Ok(())
}

fn push_padded(out: &mut Vec<u8>, v: u32, width: usize) {
    let mut buf = itoa::Buffer::new();
    let s = buf.format(v);
    for _ in s.len()..width {
        out.push(b'0');
    }
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Encodes decimal text into MySQL's binary format (test helper and proptest oracle).
    pub fn encode(text: &str, precision: u8, scale: u8) -> Vec<u8> {
        let negative = text.starts_with('-');
        let t = text.trim_start_matches('-');
        let (ip, fp) = t.split_once('.').unwrap_or((t, ""));
        let intg = usize::from(precision - scale);
        let frac = usize::from(scale);
        let ip = format!("{:0>width$}", ip, width = intg);
        let fp = format!("{:0<width$}", fp, width = frac);
        let mut out = Vec::new();
        let lead = intg % 9;
        let mut push = |digits: &str, n: usize| {
            let v: u32 = if digits.is_empty() {
                0
            } else {
                digits.parse().unwrap()
            };
            let bytes = v.to_be_bytes();
            out.extend_from_slice(&bytes[4 - n..]);
        };
        push(&ip[..lead], DIG2BYTES[lead]);
        for i in 0..intg / 9 {
            push(&ip[lead + i * 9..lead + i * 9 + 9], 4);
        }
        for i in 0..frac / 9 {
            push(&fp[i * 9..i * 9 + 9], 4);
        }
        let trail = frac % 9;
        push(&fp[frac - trail..], DIG2BYTES[trail]);
        out[0] ^= 0x80;
        if negative {
            for b in &mut out {
                *b ^= 0xff;
            }
        }
        out
    }

    fn render(raw: &[u8], p: u8, s: u8) -> String {
        let mut out = Vec::new();
        read_decimal(&mut Cursor::new(raw, 0), p, s, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn known_values() {
        // From MySQL's documentation of the format: 1234567890.1234 as DECIMAL(14,4).
        let raw = [0x81, 0x0d, 0xfb, 0x38, 0xd2, 0x04, 0xd2];
        assert_eq!(render(&raw, 14, 4), "1234567890.1234");
        let neg: Vec<u8> = raw.iter().map(|b| b ^ 0xff).collect();
        assert_eq!(render(&neg, 14, 4), "-1234567890.1234");
    }

    #[test]
    fn widest_decimal() {
        let v = "-12345678901234567890123456789012345.123456789012345678901234567890";
        assert_eq!(render(&encode(v, 65, 30), 65, 30), v);
        assert_eq!(render(&encode("0.5", 4, 2), 4, 2), "0.50");
        assert_eq!(render(&encode("0", 10, 0), 10, 0), "0");
    }

    #[test]
    fn corrupt_group_is_an_error() {
        let mut raw = encode("1.5", 10, 2);
        raw[1] = 0xff;
        raw[2] = 0xff;
        raw[3] = 0xff;
        raw[4] = 0xff;
        assert!(read_decimal(&mut Cursor::new(&raw, 0), 10, 2, &mut Vec::new()).is_err());
        assert!(read_decimal(&mut Cursor::new(&raw[..2], 0), 10, 2, &mut Vec::new()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn round_trips(int in 0u128..10u128.pow(35), frac in 0u128..10u128.pow(30), neg: bool,
                       p in 1u8..=65, s in 0u8..=30) {
            proptest::prop_assume!(s <= p);
            let intg = usize::from(p - s);
            let int = if intg == 0 { 0 } else { int % 10u128.pow(intg.min(35) as u32) };
            let frac = if s == 0 { 0 } else { frac % 10u128.pow(u32::from(s)) };
            let mut text = int.to_string();
            if s > 0 {
                text.push('.');
                text.push_str(&format!("{:0>w$}", frac, w = usize::from(s)));
            }
            let zero = int == 0 && frac == 0;
            if neg && !zero {
                text.insert(0, '-');
            }
            proptest::prop_assert_eq!(render(&encode(&text, p, s), p, s), text);
        }
    }
}
