//! JSON text building blocks shared by every layer that writes JSON by hand (the
//! binlog's JSON columns, the message formats, the local sink): string escaping as
//! MySQL escapes it, and base64. Ground floor: depends on nothing in the crate.
//!
//! Invariant: the output is always valid JSON text for any input bytes the caller
//! promises are UTF-8 (escaping never splits a multi-byte character).

/// Appends `s` as a JSON string literal, escaped as MySQL escapes it.
pub fn push_json_string(out: &mut Vec<u8>, s: &str) {
    push_escaped(out, s.as_bytes());
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether any of the eight bytes of `w` is a control byte, `"` or `\`. Exact as a
/// whole (a borrow can only flag a byte above one that really matches), which is all
/// the caller needs: it then looks at the eight bytes one by one.
#[inline]
fn word_needs_escape(w: u64) -> bool {
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    let quote = w ^ (ONES * u64::from(b'"'));
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = w ^ (ONES * u64::from(b'\\'));
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    (control | quote | backslash) & HIGHS != 0
}

/// [`push_json_string`] on bytes the caller knows are UTF-8.
///
/// Byte-wise is enough: every byte of a multi-byte character is >= 0x80 and copied as
/// is; only quote, backslash and control bytes need escapes. Eight bytes are tested at a
/// time and runs between escapes are copied in one go: most values have none.
pub fn push_escaped(out: &mut Vec<u8>, b: &[u8]) {
    out.reserve(b.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        if let Some(chunk) = b.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            if !word_needs_escape(u64::from_le_bytes(word)) {
                i += 8;
                continue;
            }
        }
        let end = (i + 8).min(b.len());
        for (j, &c) in b.iter().enumerate().take(end).skip(i) {
            if c >= 0x20 && c != b'"' && c != b'\\' {
                continue;
            }
            out.extend_from_slice(&b[start..j]);
            match c {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                c => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(c >> 4)]);
                    out.push(HEX[usize::from(c & 15)]);
                }
            }
            start = j + 1;
        }
        i = end;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

/// Appends standard base64 (with padding) of `data`.
pub fn push_base64(out: &mut Vec<u8>, data: &[u8]) {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63]);
        out.push(T[(n >> 12) as usize & 63]);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63]
        } else {
            b'='
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn json_strings_round_trip(s in "\\PC*|[\\x00-\\x7f]*") {
            let mut out = Vec::new();
            push_json_string(&mut out, &s);
            let back: String = serde_json::from_slice(&out).expect("valid JSON");
            proptest::prop_assert_eq!(back, s);
        }

        /// The eight-bytes-at-a-time scan escapes exactly what a byte-by-byte one does,
        /// wherever the special bytes fall relative to the eight-byte steps.
        #[test]
        fn word_scan_escapes_like_a_byte_scan(s in "[a-z0-9\"\\\\\x00-\x1f\x7f é€😀]{0,40}") {
            let mut out = Vec::new();
            push_json_string(&mut out, &s);
            let mut want = vec![b'"'];
            for c in s.bytes() {
                match c {
                    b'"' => want.extend_from_slice(b"\\\""),
                    b'\\' => want.extend_from_slice(b"\\\\"),
                    b'\n' => want.extend_from_slice(b"\\n"),
                    b'\r' => want.extend_from_slice(b"\\r"),
                    b'\t' => want.extend_from_slice(b"\\t"),
                    0x08 => want.extend_from_slice(b"\\b"),
                    0x0c => want.extend_from_slice(b"\\f"),
                    c if c < 0x20 => want.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
                    c => want.push(c),
                }
            }
            want.push(b'"');
            proptest::prop_assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&want));
        }
    }

    #[test]
    fn base64_pads_like_the_standard_alphabet() {
        for (data, want) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"\xff\xfe\xfd\x00", "//79AA=="),
        ] {
            let mut out = Vec::new();
            push_base64(&mut out, data);
            assert_eq!(String::from_utf8_lossy(&out), want);
        }
    }
}
