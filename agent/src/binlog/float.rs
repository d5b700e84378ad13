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

/// Significant digits and decimal exponent (`0.d1d2.. x 10^decpt`) of `|v|`, limited to
/// `max_digits` when given, like dtoa mode 4.
fn digits(v: f64, max_digits: Option<usize>) -> (Vec<u8>, i32) {
    let shortest = format!("{:e}", v.abs());
    let (mut mant, mut exp) = split_sci(&shortest);
    if let Some(n) = max_digits
        && mant.len() > n
    {
        let rounded = format!("{:.*e}", n - 1, v.abs());
        (mant, exp) = split_sci(&rounded);
        while mant.len() > 1 && mant.last() == Some(&b'0') {
            mant.pop();
        }
    }
    (mant, exp + 1)
}

fn split_sci(s: &str) -> (Vec<u8>, i32) {
    let (m, e) = s.split_once('e').unwrap_or((s, "0"));
    let mant: Vec<u8> = m.bytes().filter(u8::is_ascii_digit).collect();
    (mant, e.parse().unwrap_or(0))
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
    let (d, decpt) = digits(v, max_digits);
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
            out.extend_from_slice(&d);
        } else if decpt < len {
            out.extend_from_slice(&d[..decpt as usize]);
            out.push(b'.');
            out.extend_from_slice(&d[decpt as usize..]);
        } else {
            out.extend_from_slice(&d);
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
