//! FLOAT and DOUBLE in the server's text form.
//!
//! The server prints floating-point columns with `my_gcvt`: the shortest digits that
//! round-trip (FLOAT: at most 6 significant digits, computed on the value widened to
//! double), in fixed notation when the decimal exponent is within [-14, 15] or the digits
//! reach the point, else in `1.5e20` / `1e-16` notation. This reproduces that choice for
//! the unbounded field width `SELECT` uses.

const DBL_DIG: i32 = 15;
const FLT_DIG: usize = 6;

/// Appends a FLOAT column value.
pub fn push_float(out: &mut Vec<u8>, v: f32) {
    push_gcvt(out, f64::from(v), Some(FLT_DIG));
}

/// Appends a DOUBLE column value.
pub fn push_double(out: &mut Vec<u8>, v: f64) {
    push_gcvt(out, v, None);
}

/// Scientific text of one value, on the stack: formatting a column value must not
/// allocate (a DOUBLE column is formatted once per row).
struct SciText {
    buf: [u8; 40],
    len: usize,
}

impl SciText {
    fn of(v: f64, precision: Option<usize>) -> SciText {
        use std::fmt::Write;
        let mut t = SciText {
            buf: [0; 40],
            len: 0,
        };
        // At most 17 significant digits, a point and `e-324`: always fits.
        let _ = match precision {
            None => write!(t, "{v:e}"),
            Some(p) => write!(t, "{v:.p$e}"),
        };
        t
    }

    /// The significant digits (into `out`) and the exponent of `d.ddde±x`.
    fn split(&self, out: &mut Digits) -> i32 {
        let s = &self.buf[..self.len];
        let e_at = s.iter().position(|&c| c == b'e').unwrap_or(s.len());
        out.len = 0;
        for &c in &s[..e_at] {
            if c.is_ascii_digit() {
                out.buf[out.len] = c;
                out.len += 1;
            }
        }
        std::str::from_utf8(s.get(e_at + 1..).unwrap_or_default())
            .ok()
            .and_then(|e| e.parse().ok())
            .unwrap_or(0)
    }
}

impl std::fmt::Write for SciText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Significant digits of a value (no more than its scientific text has bytes).
struct Digits {
    buf: [u8; 40],
    len: usize,
}

/// Significant digits and decimal exponent (`0.d1d2.. x 10^decpt`) of `|v|`, limited to
/// `max_digits` when given, like dtoa mode 4.
fn digits(v: f64, max_digits: Option<usize>) -> (Digits, i32) {
    let mut mant = Digits {
        buf: [0; 40],
        len: 0,
    };
    let mut exp = SciText::of(v.abs(), None).split(&mut mant);
    if let Some(n) = max_digits
        && mant.len > n
    {
        exp = SciText::of(v.abs(), Some(n - 1)).split(&mut mant);
        while mant.len > 1 && mant.buf[mant.len - 1] == b'0' {
            mant.len -= 1;
        }
    }
    (mant, exp + 1)
}

fn push_gcvt(out: &mut Vec<u8>, v: f64, max_digits: Option<usize>) {
    if !v.is_finite() {
        // Columns cannot hold these; print what MySQL prints for overflow.
        out.push(b'0');
        return;
    }
    if v == 0.0 {
        if v.is_sign_negative() {
            out.push(b'-');
        }
        out.push(b'0');
        return;
    }
    let (digits, decpt) = digits(v, max_digits);
    let d = &digits.buf[..digits.len];
    let len = d.len() as i32;
    if v < 0.0 {
        out.push(b'-');
    }
    let fixed = decpt > -DBL_DIG && (decpt <= DBL_DIG || len > decpt);
    if fixed {
        if decpt <= 0 {
            out.extend_from_slice(b"0.");
            for _ in decpt..0 {
                out.push(b'0');
            }
            out.extend_from_slice(d);
        } else if decpt < len {
            out.extend_from_slice(&d[..decpt as usize]);
            out.push(b'.');
            out.extend_from_slice(&d[decpt as usize..]);
        } else {
            out.extend_from_slice(d);
            for _ in len..decpt {
                out.push(b'0');
            }
        }
    } else {
        out.push(d[0]);
        if d.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&d[1..]);
        }
        out.push(b'e');
        let e = decpt - 1;
        if e < 0 {
            out.push(b'-');
        }
        out.extend_from_slice(itoa::Buffer::new().format(e.unsigned_abs()).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f32) -> String {
        let mut o = Vec::new();
        push_float(&mut o, v);
        String::from_utf8(o).unwrap()
    }

    fn d(v: f64) -> String {
        let mut o = Vec::new();
        push_double(&mut o, v);
        String::from_utf8(o).unwrap()
    }

    #[test]
    fn matches_server_output() {
        // Values and expected text from `SELECT` on MariaDB 10.11.
        assert_eq!(f(std::f32::consts::PI), "3.14159");
        assert_eq!(f(1e-7), "0.0000001");
        assert_eq!(f(1.1), "1.1");
        assert_eq!(f(-3.4028235e38), "-3.40282e38");
        assert_eq!(d(1e20), "1e20");
        assert_eq!(d(123_456_789_012_345_678.0), "1.2345678901234568e17");
        assert_eq!(d(0.1), "0.1");
        assert_eq!(d(-2.5), "-2.5");
        assert_eq!(d(1e15), "1e15");
        assert_eq!(d(1e14), "100000000000000");
        assert_eq!(d(123_456_789_012_345.0), "123456789012345");
        assert_eq!(f(-192_325_830_000.0), "-192326000000");
        assert_eq!(f(1e-5), "0.00001");
        assert_eq!(f(1_234_567.0), "1234570");
        assert_eq!(f(1e15), "1e15");
        assert_eq!(f(0.000_012_34), "0.00001234");
        assert_eq!(d(1e16), "1e16");
        assert_eq!(d(1e-15), "0.000000000000001");
        assert_eq!(d(1e-16), "1e-16");
        assert_eq!(d(1.7976931348623157e308), "1.7976931348623157e308");
    }

    proptest::proptest! {
        #[test]
        fn double_text_round_trips(v: f64) {
            proptest::prop_assume!(v.is_finite());
            let s = d(v);
            proptest::prop_assert_eq!(s.parse::<f64>().unwrap(), v);
        }

        #[test]
        fn float_text_has_at_most_six_digits(v: f32) {
            proptest::prop_assume!(v.is_finite() && v != 0.0);
            let s = f(v);
            let mant = s.split('e').next().unwrap();
            let all: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
            let digits = String::from_utf8(all).unwrap();
            let digits = digits.trim_start_matches('0').trim_end_matches('0').len();
            proptest::prop_assert!(digits <= 6, "{} -> {}", v, s);
            let back: f64 = s.parse().unwrap();
            let rel = ((back - f64::from(v)) / f64::from(v)).abs();
            proptest::prop_assert!(rel < 1e-5, "{} -> {}", v, s);
        }
    }
}
