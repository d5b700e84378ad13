//! MySQL text form of string-like values: character-set transcoding, ENUM/SET labels,
//! BIT, UUID and INET6.
//!
//! Text columns come out as UTF-8 (transcoded from latin1, gbk, ... by collation);
//! binary columns keep their bytes. Collations are the server's numeric ids.

use std::fmt::Write as _;

use crate::event::{Charset, WideCharset};

/// Character set of a collation id (MySQL and MariaDB numbering).
pub fn charset_for_collation(id: u16) -> Charset {
    use encoding_rs as e;
    let enc: &'static e::Encoding = match id {
        63 => return Charset::Binary,
        // utf8mb3, utf8mb4 (incl. MySQL 8 0900 and MariaDB uca1400 ids), ascii
        33
        | 83
        | 192..=215
        | 223
        | 45
        | 46
        | 224..=247
        | 255..=323
        | 576..=578
        | 608..=610
        | 1024..=2047
        | 2048..=4095
        | 11
        | 65 => return Charset::Utf8,
        // MySQL's latin1 is cp1252.
        5 | 8 | 15 | 31 | 47 | 48 | 49 | 94 => e::WINDOWS_1252,
        28 | 87 => e::GBK,
        24 | 86 => e::GBK,
        248..=250 => e::GB18030,
        1 | 84 => e::BIG5,
        13 | 88 | 95 | 96 => e::SHIFT_JIS,
        12 | 91 | 97 | 98 => e::EUC_JP,
        19 | 85 => e::EUC_KR,
        26 | 34 | 44 | 66 | 99 => e::WINDOWS_1250,
        14 | 23 | 50 | 51 | 52 => e::WINDOWS_1251,
        57 | 67 => e::WINDOWS_1256,
        29 | 58 | 59 => e::WINDOWS_1257,
        7 | 74 => e::KOI8_R,
        22 | 75 => e::KOI8_U,
        9 | 21 | 27 | 77 => e::ISO_8859_2,
        25 | 70 => e::ISO_8859_7,
        16 | 71 => e::ISO_8859_8,
        18 | 89 => e::WINDOWS_874,
        30 | 78 => e::WINDOWS_1254,
        20 | 41 | 42 | 79 => e::ISO_8859_13,
        36 | 68 => e::IBM866,
        39 | 53 => e::MACINTOSH,
        35 | 90 | 128..=151 | 159 | 54 | 55 | 101..=124 => {
            return Charset::Wide(WideCharset::Utf16Be);
        }
        56 | 62 => return Charset::Wide(WideCharset::Utf16Le),
        60 | 61 | 160..=183 => return Charset::Wide(WideCharset::Utf32Be),
        _ => return Charset::Unknown,
    };
    Charset::Other(enc)
}

/// Appends `raw` as UTF-8 text per `charset`. Invalid sequences become U+FFFD, as the
/// server's own conversion does with `?`; binary and unknown charsets keep the bytes.
pub fn push_text(out: &mut Vec<u8>, raw: &[u8], charset: Charset) {
    match charset {
        Charset::Binary | Charset::Unknown => out.extend_from_slice(raw),
        Charset::Utf8 => match std::str::from_utf8(raw) {
            Ok(_) => out.extend_from_slice(raw),
            Err(_) => out.extend_from_slice(String::from_utf8_lossy(raw).as_bytes()),
        },
        Charset::Other(enc) => {
            if raw.is_ascii() {
                out.extend_from_slice(raw);
            } else {
                let (text, _) = enc.decode_without_bom_handling(raw);
                out.extend_from_slice(text.as_bytes());
            }
        }
        Charset::Wide(w) => {
            let mut s = String::new();
            match w {
                WideCharset::Utf16Be | WideCharset::Utf16Le => {
                    let units = raw.chunks_exact(2).map(|p| match w {
                        WideCharset::Utf16Be => u16::from_be_bytes([p[0], p[1]]),
                        _ => u16::from_le_bytes([p[0], p[1]]),
                    });
                    for ch in char::decode_utf16(units) {
                        s.push(ch.unwrap_or(char::REPLACEMENT_CHARACTER));
                    }
                }
                WideCharset::Utf32Be => {
                    for p in raw.chunks_exact(4) {
                        let v = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                        s.push(char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER));
                    }
                }
            }
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// Appends the label of ENUM index `idx` (1-based; 0 is the empty error value).
pub fn push_enum(out: &mut Vec<u8>, idx: u64, labels: Option<&[String]>) {
    match (idx, labels) {
        (0, _) => {}
        (i, Some(l)) if (i as usize) <= l.len() => {
            out.extend_from_slice(l[i as usize - 1].as_bytes());
        }
        // Without labels the index is the most faithful text there is.
        (i, _) => push_u64(out, i),
    }
}

/// Appends the labels of SET bitmap `bits`, comma-separated, in definition order.
pub fn push_set(out: &mut Vec<u8>, bits: u64, labels: Option<&[String]>) {
    match labels {
        Some(l) => {
            let mut first = true;
            for (i, label) in l.iter().enumerate().take(64) {
                if bits & (1 << i) != 0 {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    out.extend_from_slice(label.as_bytes());
                }
            }
        }
        None => push_u64(out, bits),
    }
}

/// Appends an unsigned integer in decimal.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends a signed integer in decimal.
#[inline]
pub fn push_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends a MariaDB UUID from its 16 stored bytes.
///
/// MariaDB stores RFC 4122 UUIDs (variant bits `10`, version 1-5) with the five groups in
/// reverse order so time-based ids sort by time; other values are stored as written.
pub fn push_uuid(out: &mut Vec<u8>, b: &[u8]) {
    let mut v = [0u8; 16];
    let n = b.len().min(16);
    v[..n].copy_from_slice(&b[..n]);
    // Stored order: group5(6) group4(2) group3(2) group2(2) group1(4). The variant lives
    // in the first byte of group4 (stored byte 6), the version in group3 (stored byte 8).
    let swapped = (v[6] & 0xc0) == 0x80 && (1..=5).contains(&(v[8] >> 4));
    let text = if swapped {
        let g1 = &v[12..16];
        let g2 = &v[10..12];
        let g3 = &v[8..10];
        let g4 = &v[6..8];
        let g5 = &v[0..6];
        [g1, g2, g3, g4, g5]
    } else {
        [&v[0..4], &v[4..6], &v[6..8], &v[8..10], &v[10..16]]
    };
    let mut s = String::with_capacity(36);
    for (i, g) in text.iter().enumerate() {
        if i > 0 {
            s.push('-');
        }
        for byte in g.iter() {
            let _ = write!(s, "{byte:02x}");
        }
    }
    out.extend_from_slice(s.as_bytes());
}

/// Appends an INET6 value as the server prints it.
pub fn push_inet6(out: &mut Vec<u8>, b: &[u8]) {
    let mut v = [0u8; 16];
    let n = b.len().min(16);
    v[..n].copy_from_slice(&b[..n]);
    let addr = std::net::Ipv6Addr::from(v);
    let s = match addr.to_ipv4_mapped() {
        // MariaDB prints IPv4-mapped and IPv4-compatible addresses with a dotted tail.
        Some(v4) => format!("::ffff:{v4}"),
        None if v[..12].iter().all(|&x| x == 0) && v[12..14] != [0, 0] => {
            format!("::{}", std::net::Ipv4Addr::new(v[12], v[13], v[14], v[15]))
        }
        None => addr.to_string(),
    };
    out.extend_from_slice(s.as_bytes());
}

/// Appends an INET4 value.
pub fn push_inet4(out: &mut Vec<u8>, b: &[u8]) {
    let mut v = [0u8; 4];
    let n = b.len().min(4);
    v[..n].copy_from_slice(&b[..n]);
    out.extend_from_slice(std::net::Ipv4Addr::from(v).to_string().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_is_cp1252() {
        let mut out = Vec::new();
        push_text(
            &mut out,
            &[0x63, 0x61, 0x66, 0xe9, 0x80],
            charset_for_collation(8),
        );
        assert_eq!(String::from_utf8(out).unwrap(), "café€");
    }

    #[test]
    fn gbk_transcodes() {
        let mut out = Vec::new();
        push_text(
            &mut out,
            &[0xc4, 0xe3, 0xba, 0xc3],
            charset_for_collation(28),
        );
        assert_eq!(String::from_utf8(out).unwrap(), "你好");
    }

    #[test]
    fn enum_and_set_labels() {
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        push_set(&mut out, 0b101, Some(&labels));
        assert_eq!(out, b"a,c");
        out.clear();
        push_enum(&mut out, 2, Some(&labels));
        assert_eq!(out, b"b");
        out.clear();
        push_enum(&mut out, 0, Some(&labels));
        assert_eq!(out, b"");
    }

    #[test]
    fn inet6_forms() {
        let mut out = Vec::new();
        let mut b = [0u8; 16];
        b[10] = 0xff;
        b[11] = 0xff;
        b[12..].copy_from_slice(&[1, 2, 3, 4]);
        push_inet6(&mut out, &b);
        assert_eq!(out, b"::ffff:1.2.3.4");
    }
}
