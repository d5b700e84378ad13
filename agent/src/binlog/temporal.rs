//! Date and time values in MySQL's text form.
//!
//! Covers the 5.6+ formats (DATETIME2/TIME2/TIMESTAMP2 with 0-6 fractional digits), the
//! pre-5.6 ones, DATE, YEAR and the packed form JSON uses. Invariants: zero dates print
//! as the server prints them (`0000-00-00`), TIME may be negative and exceed 24 hours,
//! and TIMESTAMP (stored as UTC seconds) prints in the configured session offset.

use super::cursor::Cursor;
use super::error::DecodeError;

/// Reads the fractional-second bytes that follow a 5.6+ temporal value, as microseconds.
fn read_frac(c: &mut Cursor<'_>, fsp: u8) -> Result<i64, DecodeError> {
    Ok(match fsp {
        0 => 0,
        1 | 2 => c.be_uint_n(1, "fractional seconds")? as i64 * 10_000,
        3 | 4 => c.be_uint_n(2, "fractional seconds")? as i64 * 100,
        5 | 6 => c.be_uint_n(3, "fractional seconds")? as i64,
        _ => {
            return Err(DecodeError::Malformed {
                what: "fractional second precision",
                at: c.offset(),
                detail: format!("{fsp} is not 0..6"),
            });
        }
    })
}

fn push2(out: &mut Vec<u8>, v: u64) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

fn push4(out: &mut Vec<u8>, v: u64) {
    push2(out, v / 100 % 100);
    push2(out, v % 100);
}

/// Appends `.ffffff` cut to `fsp` digits.
fn push_frac(out: &mut Vec<u8>, micros: u64, fsp: u8) {
    if fsp == 0 {
        return;
    }
    out.push(b'.');
    let mut div = 100_000;
    for _ in 0..fsp {
        out.push(b'0' + ((micros / div) % 10) as u8);
        div /= 10;
    }
}

fn push_date(out: &mut Vec<u8>, y: u64, m: u64, d: u64) {
    push4(out, y);
    out.push(b'-');
    push2(out, m);
    out.push(b'-');
    push2(out, d);
}

fn push_hms(out: &mut Vec<u8>, h: u64, mi: u64, s: u64) {
    if h >= 100 {
        out.extend_from_slice(itoa::Buffer::new().format(h).as_bytes());
    } else {
        push2(out, h);
    }
    out.push(b':');
    push2(out, mi);
    out.push(b':');
    push2(out, s);
}

/// DATE (3 bytes little-endian: day 5 bits, month 4 bits, year 15 bits).
pub fn read_date(c: &mut Cursor<'_>, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let v = c.uint_n(3, "DATE value")?;
    push_date(out, v >> 9, (v >> 5) & 15, v & 31);
    Ok(())
}

/// YEAR (1 byte; 0 is the zero year `0000`).
pub fn read_year(c: &mut Cursor<'_>, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let v = u64::from(c.u8("YEAR value")?);
    push4(out, if v == 0 { 0 } else { 1900 + v });
    Ok(())
}

/// DATETIME2: 5 bytes big-endian (sign bit, year*13+month, day, hour, minute, second).
pub fn read_datetime2(c: &mut Cursor<'_>, fsp: u8, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let int = c.be_uint_n(5, "DATETIME value")? as i64 - 0x80_0000_0000;
    let frac = read_frac(c, fsp)?;
    if int < 0 {
        return Err(DecodeError::Malformed {
            what: "DATETIME value",
            at: c.offset(),
            detail: "negative datetime".into(),
        });
    }
    push_packed_datetime(out, int as u64, frac as u64, fsp);
    Ok(())
}

/// Appends a datetime from its packed integer part (`ymd << 17 | hms`).
fn push_packed_datetime(out: &mut Vec<u8>, int: u64, micros: u64, fsp: u8) {
    let ymd = int >> 17;
    let ym = ymd >> 5;
    let hms = int & 0x1ffff;
    push_date(out, ym / 13, ym % 13, ymd & 31);
    out.push(b' ');
    push_hms(out, hms >> 12, (hms >> 6) & 63, hms & 63);
    push_frac(out, micros, fsp);
}

/// TIME2: 3 bytes big-endian (sign bit, hours 10 bits, minutes, seconds) + fraction.
pub fn read_time2(c: &mut Cursor<'_>, fsp: u8, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    // Reassemble MySQL's packed form (int part << 24 | fraction), which makes negative
    // values with fractions come out right.
    let packed: i64 = match fsp {
        0..=4 => {
            let mut int = c.be_uint_n(3, "TIME value")? as i64 - 0x80_0000;
            let (mut frac, wrap, scale) = match fsp {
                0 => (0, 0, 0),
                1 | 2 => (c.be_uint_n(1, "fractional seconds")? as i64, 0x100, 10_000),
                _ => (c.be_uint_n(2, "fractional seconds")? as i64, 0x1_0000, 100),
            };
            // Negative values store the fraction counted back from the next second.
            if int < 0 && frac != 0 {
                int += 1;
                frac -= wrap;
            }
            (int << 24) + frac * scale
        }
        5 | 6 => {
            let v = c.be_uint_n(6, "TIME value")? as i64 - 0x8000_0000_0000;
            // Low 24 bits hold microseconds.
            (v >> 24 << 24) + (v & 0xff_ffff)
        }
        _ => {
            return Err(DecodeError::Malformed {
                what: "TIME precision",
                at: c.offset(),
                detail: format!("{fsp} is not 0..6"),
            });
        }
    };
    push_packed_time(out, packed, fsp);
    Ok(())
}

fn push_packed_time(out: &mut Vec<u8>, packed: i64, fsp: u8) {
    let neg = packed < 0;
    let p = packed.unsigned_abs();
    let hms = p >> 24;
    let micros = p & 0xff_ffff;
    if neg {
        out.push(b'-');
    }
    push_hms(out, (hms >> 12) & 0x3ff, (hms >> 6) & 63, hms & 63);
    push_frac(out, micros, fsp);
}

/// TIMESTAMP2: 4 bytes big-endian seconds since the epoch + fraction, printed in the
/// session offset `tz_secs`.
pub fn read_timestamp2(
    c: &mut Cursor<'_>,
    fsp: u8,
    tz_secs: i32,
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    let secs = c.be_uint_n(4, "TIMESTAMP value")?;
    let frac = read_frac(c, fsp)?;
    push_timestamp(out, secs, frac as u64, fsp, tz_secs);
    Ok(())
}

/// Pre-5.6 TIMESTAMP: 4 bytes little-endian seconds.
pub fn read_timestamp_old(
    c: &mut Cursor<'_>,
    tz_secs: i32,
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
    let secs = u64::from(c.u32("TIMESTAMP value")?);
    push_timestamp(out, secs, 0, 0, tz_secs);
    Ok(())
}

fn push_timestamp(out: &mut Vec<u8>, secs: u64, micros: u64, fsp: u8, tz_secs: i32) {
    if secs == 0 && micros == 0 {
        out.extend_from_slice(b"0000-00-00 00:00:00");
        push_frac(out, 0, fsp);
        return;
    }
    let local = secs as i64 + i64::from(tz_secs);
    let days = local.div_euclid(86_400);
    let sod = local.rem_euclid(86_400) as u64;
    let (y, m, d) = civil_from_days(days);
    push_date(out, y as u64, m, d);
    out.push(b' ');
    push_hms(out, sod / 3600, sod / 60 % 60, sod % 60);
    push_frac(out, micros, fsp);
}

/// Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u64, u64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Pre-5.6 TIME: 3 bytes little-endian signed `HHMMSS`.
pub fn read_time_old(c: &mut Cursor<'_>, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let raw = c.uint_n(3, "TIME value")? as i64;
    let v = if raw & 0x80_0000 != 0 {
        raw - 0x100_0000
    } else {
        raw
    };
    if v < 0 {
        out.push(b'-');
    }
    let a = v.unsigned_abs();
    push_hms(out, a / 10_000, a / 100 % 100, a % 100);
    Ok(())
}

/// Pre-5.6 DATETIME: 8 bytes little-endian `YYYYMMDDhhmmss`.
pub fn read_datetime_old(c: &mut Cursor<'_>, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let v = c.u64("DATETIME value")?;
    let date = v / 1_000_000;
    let time = v % 1_000_000;
    push_date(out, date / 10_000, date / 100 % 100, date % 100);
    out.push(b' ');
    push_hms(out, time / 10_000, time / 100 % 100, time % 100);
    Ok(())
}

/// JSON's packed DATETIME/TIMESTAMP/DATE (`packed` as stored, 8 bytes little-endian).
pub fn push_json_datetime(out: &mut Vec<u8>, packed: i64, date_only: bool) {
    let p = packed.unsigned_abs();
    let int = p >> 24;
    let micros = p & 0xff_ffff;
    if date_only {
        let ymd = int >> 17;
        let ym = ymd >> 5;
        push_date(out, ym / 13, ym % 13, ymd & 31);
    } else {
        push_packed_datetime(out, int, micros, 6);
    }
}

/// JSON's packed TIME.
pub fn push_json_time(out: &mut Vec<u8>, packed: i64) {
    push_packed_time(out, packed, 6);
}

/// Parses a UTC offset such as `+08:00`, `-05:30`, `Z` or `UTC` into seconds.
pub fn parse_utc_offset(s: &str) -> Result<i32, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("z") || t.eq_ignore_ascii_case("utc") || t == "SYSTEM" {
        return Ok(0);
    }
    let bad = || format!("`{s}` is not a UTC offset like +08:00");
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let h: i32 = h.parse().map_err(|_| bad())?;
    let m: i32 = m.parse().map_err(|_| bad())?;
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return Err(bad());
    }
    Ok(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        f: impl FnOnce(&mut Cursor<'_>, &mut Vec<u8>) -> Result<(), DecodeError>,
        raw: &[u8],
    ) -> String {
        let mut out = Vec::new();
        f(&mut Cursor::new(raw, 0), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn datetime2_with_micros() {
        // 2012-03-18 11:30:45.123456
        let ymd: u64 = ((2012 * 13 + 3) << 5) | 18;
        let int = (ymd << 17) | (11 << 12) | (30 << 6) | 45;
        let v = int + 0x80_0000_0000;
        let mut raw = v.to_be_bytes()[3..].to_vec();
        raw.extend_from_slice(&123_456u32.to_be_bytes()[1..]);
        assert_eq!(
            run(|c, o| read_datetime2(c, 6, o), &raw),
            "2012-03-18 11:30:45.123456"
        );
        assert_eq!(
            run(|c, o| read_datetime2(c, 0, o), &raw[..5]),
            "2012-03-18 11:30:45"
        );
    }

    #[test]
    fn negative_time2() {
        // -838:59:59 and -00:00:01.5 as the server packs them.
        let enc = |neg: bool, h: i64, m: i64, s: i64, micros: i64, fsp: u8| -> Vec<u8> {
            let hms = (h << 12) | (m << 6) | s;
            let mut packed = (hms << 24) + micros;
            if neg {
                packed = -packed;
            }
            match fsp {
                0 => ((packed >> 24) + 0x80_0000).to_be_bytes()[5..].to_vec(),
                3 => {
                    let mut v = ((packed >> 24) + 0x80_0000).to_be_bytes()[5..].to_vec();
                    v.extend_from_slice(&(((packed % (1 << 24)) / 100) as i16).to_be_bytes());
                    v
                }
                _ => (packed + 0x8000_0000_0000).to_be_bytes()[2..].to_vec(),
            }
        };
        assert_eq!(
            run(|c, o| read_time2(c, 0, o), &enc(true, 838, 59, 59, 0, 0)),
            "-838:59:59"
        );
        assert_eq!(
            run(|c, o| read_time2(c, 6, o), &enc(true, 0, 0, 1, 500_000, 6)),
            "-00:00:01.500000"
        );
        assert_eq!(
            run(|c, o| read_time2(c, 3, o), &enc(true, 0, 0, 1, 500_000, 3)),
            "-00:00:01.500"
        );
        assert_eq!(
            run(
                |c, o| read_time2(c, 6, o),
                &enc(false, 12, 34, 56, 789_012, 6)
            ),
            "12:34:56.789012"
        );
    }

    #[test]
    fn zero_and_real_timestamps() {
        assert_eq!(
            run(|c, o| read_timestamp2(c, 0, 0, o), &[0, 0, 0, 0]),
            "0000-00-00 00:00:00"
        );
        assert_eq!(
            run(
                |c, o| read_timestamp2(c, 2, 0, o),
                &[0x5e, 0x0b, 0xe1, 0x00, 50]
            ),
            "2020-01-01 00:00:00.50"
        );
        assert_eq!(
            run(
                |c, o| read_timestamp2(c, 0, 8 * 3600, o),
                &[0x5e, 0x0b, 0xe1, 0x00]
            ),
            "2020-01-01 08:00:00"
        );
    }

    #[test]
    fn year_and_date() {
        assert_eq!(run(read_year, &[0]), "0000");
        assert_eq!(run(read_year, &[255]), "2155");
        assert_eq!(run(read_date, &[0, 0, 0]), "0000-00-00");
        let v: u32 = (2024 << 9) | (2 << 5) | 29;
        assert_eq!(run(read_date, &v.to_le_bytes()[..3]), "2024-02-29");
    }

    #[test]
    fn truncated_values_are_errors() {
        assert!(read_datetime2(&mut Cursor::new(&[0x80, 0, 0], 0), 0, &mut Vec::new()).is_err());
        assert!(read_time2(&mut Cursor::new(&[0x80, 0, 0], 0), 6, &mut Vec::new()).is_err());
    }
}
