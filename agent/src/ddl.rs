//! What a statement event touches: its target table and Canal's DDL type, from the SQL
//! text.
//!
//! A light scanner, not a parser: it reads the leading keywords and the first
//! (optionally qualified, optionally back-quoted) identifier after them. That is all
//! Canal's FlatMessage `table` and `type` fields need, and statements it does not
//! recognise are reported with no table (type `QUERY`), never guessed.

/// Canal's type name for a statement (`CREATE`, `ALTER`, `ERASE`, `TRUNCATE`, `RENAME`,
/// `CINDEX`, `DINDEX`, or `QUERY`).
pub fn canal_type(sql: &str) -> &'static str {
    let w = words(sql, 3);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["CREATE", "TABLE", ..] | ["CREATE", "TEMPORARY", "TABLE"] => "CREATE",
        ["ALTER", "TABLE", ..] | ["ALTER", "IGNORE", "TABLE"] | ["ALTER", "ONLINE", "TABLE"] => {
            "ALTER"
        }
        ["DROP", "TABLE", ..] | ["DROP", "TEMPORARY", "TABLE"] => "ERASE",
        ["TRUNCATE", ..] => "TRUNCATE",
        ["RENAME", "TABLE", ..] => "RENAME",
        ["CREATE", "INDEX", ..]
        | ["CREATE", "UNIQUE", "INDEX"]
        | ["CREATE", "FULLTEXT", "INDEX"] => "CINDEX",
        ["DROP", "INDEX", ..] => "DINDEX",
        _ => "QUERY",
    }
}

/// Whether the statement is data manipulation (statement-format DML).
pub fn is_dml(sql: &str) -> bool {
    matches!(
        words(sql, 1).first().map(String::as_str),
        Some("INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "LOAD")
    )
}

/// Whether the statement can change a table's columns (so cached definitions go stale).
pub fn is_schema_change(sql: &str) -> bool {
    matches!(
        canal_type(sql),
        "CREATE" | "ALTER" | "ERASE" | "TRUNCATE" | "RENAME" | "CINDEX" | "DINDEX"
    )
}

/// (database, table) the statement targets; `default_db` when it names none.
pub fn target(default_db: &str, sql: &str) -> (String, Option<String>) {
    let s = strip_comments(sql);
    let upper = s.to_ascii_uppercase();
    let skip_words: &[&str] = &[
        "CREATE",
        "ALTER",
        "DROP",
        "TRUNCATE",
        "RENAME",
        "TABLE",
        "TEMPORARY",
        "IF",
        "NOT",
        "EXISTS",
        "IGNORE",
        "ONLINE",
        "OR",
        "REPLACE",
    ];
    let mut rest = s.as_str();
    let mut rest_upper = upper.as_str();
    // Index statements: the table follows ON.
    if matches!(canal_type(sql), "CINDEX" | "DINDEX") {
        if let Some(i) = find_word(rest_upper, "ON") {
            rest = &rest[i + 2..];
        } else {
            return (default_db.to_string(), None);
        }
    } else {
        let mut seen_keyword = false;
        loop {
            let trimmed = rest.trim_start();
            let off = rest.len() - trimmed.len();
            rest = trimmed;
            rest_upper = &rest_upper[off..];
            let word_len = rest_upper
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest_upper.len());
            let word = &rest_upper[..word_len];
            if word_len > 0 && skip_words.contains(&word) {
                seen_keyword = true;
                rest = &rest[word_len..];
                rest_upper = &rest_upper[word_len..];
            } else {
                break;
            }
        }
        if !seen_keyword || canal_type(sql) == "QUERY" {
            return (default_db.to_string(), None);
        }
    }
    match identifier(rest.trim_start()) {
        Some((first, after)) => {
            if let Some(after_dot) = after.strip_prefix('.')
                && let Some((second, _)) = identifier(after_dot)
            {
                return (first, Some(second));
            }
            (default_db.to_string(), Some(first))
        }
        None => (default_db.to_string(), None),
    }
}

fn identifier(s: &str) -> Option<(String, &str)> {
    if let Some(rest) = s.strip_prefix('`') {
        let mut out = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '`' {
                if rest[i + 1..].starts_with('`') {
                    out.push('`');
                    chars.next();
                    continue;
                }
                return Some((out, &rest[i + 1..]));
            }
            out.push(c);
        }
        None
    } else {
        let end = s
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .unwrap_or(s.len());
        (end > 0).then(|| (s[..end].to_string(), &s[end..]))
    }
}

fn find_word(upper: &str, word: &str) -> Option<usize> {
    let bytes = upper.as_bytes();
    let mut from = 0;
    while let Some(i) = upper[from..].find(word) {
        let at = from + i;
        let before = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
        let after = bytes
            .get(at + word.len())
            .is_none_or(|b| !b.is_ascii_alphanumeric());
        if before && after {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

fn strip_comments(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        match rest[i..].find("*/") {
            Some(j) => rest = &rest[i + j + 2..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

fn words(sql: &str, n: usize) -> Vec<String> {
    strip_comments(sql)
        .split_whitespace()
        .take(n)
        .map(|w| {
            w.trim_matches(|c: char| !c.is_ascii_alphabetic())
                .to_ascii_uppercase()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            target("d", "CREATE TABLE IF NOT EXISTS `s`.`t1` (a int)"),
            ("s".into(), Some("t1".into()))
        );
        assert_eq!(
            target("d", "alter table t2 add c int"),
            ("d".into(), Some("t2".into()))
        );
        assert_eq!(
            target("d", "DROP TABLE `a``b` /* generated by server */"),
            ("d".into(), Some("a`b".into()))
        );
        assert_eq!(
            target("d", "create index i on x.y (a)"),
            ("x".into(), Some("y".into()))
        );
        assert_eq!(target("d", "INSERT INTO t VALUES (1)"), ("d".into(), None));
        assert_eq!(canal_type("drop table t"), "ERASE");
        assert_eq!(canal_type("CREATE DATABASE x"), "QUERY");
    }
}
