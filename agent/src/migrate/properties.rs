//! Java `.properties` files as `java.util.Properties.load` reads them (Canal's
//! configuration format): `key=value`, `key: value` or `key value`; `#` and `!`
//! comments; a line ending in an odd number of backslashes continues on the next; `\t`,
//! `\n`, `\r`, `\f`, `\uXXXX` and `\<any>` escapes. Later keys override earlier ones.
//!
//! Invariant: parsing never fails — a malformed escape is kept as written, as Java
//! would mostly do — so a converter can always say which keys it read.

use std::collections::BTreeMap;

/// Keys and values, in key order.
pub type Properties = BTreeMap<String, String>;

/// Parses `text`.
pub fn parse(text: &str) -> Properties {
    let mut out = Properties::new();
    let mut logical = String::new();
    let mut continuing = false;
    for raw in text.lines() {
        let line = if continuing { raw.trim_start() } else { raw };
        if !continuing {
            let t = line.trim_start();
            if t.is_empty() || t.starts_with('#') || t.starts_with('!') {
                continue;
            }
        }
        let trailing = line.chars().rev().take_while(|&c| c == '\\').count();
        if trailing % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            continuing = true;
            continue;
        }
        logical.push_str(line);
        continuing = false;
        let (k, v) = split(logical.trim_start());
        out.insert(unescape(k), unescape(v).trim_end().to_string());
        logical.clear();
    }
    if !logical.is_empty() {
        let (k, v) = split(logical.trim_start());
        out.insert(unescape(k), unescape(v).trim_end().to_string());
    }
    out
}

/// The key (up to the first unescaped `=`, `:` or whitespace) and the raw value.
fn split(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' | b':' | b' ' | b'\t' | b'\x0c' => break,
            _ => i += 1,
        }
    }
    let i = i.min(line.len());
    let key = &line[..i];
    let rest = line[i..].trim_start_matches([' ', '\t', '\x0c']);
    let rest = rest
        .strip_prefix(['=', ':'])
        .unwrap_or(rest)
        .trim_start_matches([' ', '\t', '\x0c']);
    (key, rest)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.clone().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) if hex.len() == 4 => {
                        out.push(ch);
                        for _ in 0..4 {
                            chars.next();
                        }
                    }
                    _ => out.push_str("\\u"),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_java_reads() {
        let p = parse(
            "# comment\n! also\ncanal.instance.filter.regex=.*\\\\..*\n  spaced.key  =  v  \ncolon: x\nwhite y z\nlong = a,\\\n    b\nunicode=\\u00e9\nempty=\nescaped\\=key=1\n",
        );
        assert_eq!(p["canal.instance.filter.regex"], ".*\\..*");
        assert_eq!(p["spaced.key"], "v");
        assert_eq!(p["colon"], "x");
        assert_eq!(p["white"], "y z");
        assert_eq!(p["long"], "a,b");
        assert_eq!(p["unicode"], "é");
        assert_eq!(p["empty"], "");
        assert_eq!(p["escaped=key"], "1");
        assert_eq!(p.len(), 8);
    }
}
