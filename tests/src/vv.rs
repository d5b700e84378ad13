//! Parser for `mysqlbinlog -vv` / `mariadb-binlog -vv` row output (`### INSERT ...`,
//! `###   @N=value /* TYPE meta=.. */`), and a comparison of those values with Sluice's
//! decoded rows that tolerates the tools' display quirks (DATE as `YYYY:MM:DD`,
//! TIMESTAMP as epoch seconds, ENUM as index, SET and BIT as bit strings, integers shown
//! signed and unsigned).

use sluice::event::{Cell, ChangeEvent, ChangeKind, Column, ColumnKind};

/// One printed value: (1-based column, value text, type comment).
pub type VvValue = (usize, String, String);

/// One row change printed by the tool.
#[derive(Debug, Clone)]
pub struct VvRow {
    /// `INSERT`, `UPDATE` or `DELETE`.
    pub kind: String,
    /// `db`.`table`.
    pub table: String,
    /// Before image (WHERE) values by column, 1-based index.
    pub before: Vec<VvValue>,
    /// After image (SET) values.
    pub after: Vec<VvValue>,
}

/// Parses all `###` row blocks of a -vv dump. The dump is raw bytes (values are printed
/// as stored), so it is read as ISO-8859-1 and [`unquote`] maps characters back to bytes.
pub fn parse(dump: &[u8]) -> Vec<VvRow> {
    let text: String = dump.iter().map(|&b| char::from(b)).collect();
    let mut rows = Vec::new();
    let mut cur: Option<VvRow> = None;
    let mut in_set = false;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("### ") else {
            continue;
        };
        for kind in ["INSERT INTO ", "UPDATE ", "DELETE FROM "] {
            if let Some(t) = rest.strip_prefix(kind) {
                if let Some(r) = cur.take() {
                    rows.push(r);
                }
                cur = Some(VvRow {
                    kind: kind.split_whitespace().next().unwrap_or("").to_string(),
                    table: t.trim().to_string(),
                    before: Vec::new(),
                    after: Vec::new(),
                });
                in_set = false;
            }
        }
        match rest.trim() {
            "SET" => in_set = true,
            "WHERE" => in_set = false,
            _ => {}
        }
        if let Some(v) = rest.trim_start().strip_prefix('@') {
            let Some(r) = cur.as_mut() else { continue };
            let (idx, after_eq) = match v.split_once('=') {
                Some(x) => x,
                None => continue,
            };
            let (value, comment) = match after_eq.rfind(" /* ") {
                Some(i) => (
                    after_eq[..i].trim_end(),
                    after_eq[i + 4..].trim_end_matches(" */"),
                ),
                None => (after_eq.trim_end(), ""),
            };
            let Ok(idx) = idx.parse::<usize>() else {
                continue;
            };
            let entry = (idx, value.to_string(), comment.to_string());
            if in_set || r.kind == "INSERT" {
                r.after.push(entry);
            } else {
                r.before.push(entry);
            }
        }
    }
    if let Some(r) = cur.take() {
        rows.push(r);
    }
    rows
}

/// Undoes mysqlbinlog's string quoting. The tool writes every byte above 0x1f as it is
/// (quotes and backslashes included) and only bytes up to 0x1f as `\xNN`, so only such
/// escapes are undone.
pub fn unquote(v: &str) -> Option<Vec<u8>> {
    let inner = v.strip_prefix('\'')?.strip_suffix('\'')?;
    // One char per original byte (see `parse`).
    let b: Vec<u8> = inner.chars().map(|c| c as u32 as u8).collect();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && b.get(i + 1) == Some(&b'x')
            && let Some(x) = b
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            && x <= 0x1f
        {
            out.push(x);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Whether Sluice's `cell` for `col` shows the same value as the tool's `value`
/// (`comment` is the tool's type annotation). `Err` explains a mismatch.
pub fn same(col: &Column, cell: Cell<'_>, value: &str, comment: &str) -> Result<(), String> {
    let ours = match cell {
        Cell::Null => {
            return if value == "NULL" {
                Ok(())
            } else {
                Err(format!("Sluice has NULL, tool has {value}"))
            };
        }
        Cell::Absent => return Err(format!("Sluice has no value, tool has {value}")),
        Cell::Value(b) => b,
    };
    if value == "NULL" {
        return Err(format!(
            "tool has NULL, Sluice has {:?}",
            String::from_utf8_lossy(ours)
        ));
    }
    let ours_s = String::from_utf8_lossy(ours).to_string();
    let short = |s: &str| s.chars().take(120).collect::<String>();
    let mismatch = || {
        Err(format!(
            "tool {} ({comment}) vs Sluice {:?}",
            short(value),
            short(&ours_s)
        ))
    };
    match &col.kind {
        ColumnKind::Int { .. } | ColumnKind::Year => {
            // "-1 (4294967295)": either form.
            let mut forms = value.split(" (").map(|s| s.trim_end_matches(')').trim());
            if forms.any(|f| f == ours_s) {
                Ok(())
            } else {
                mismatch()
            }
        }
        ColumnKind::Float | ColumnKind::Double => {
            let a: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("bad float {value}"))?;
            let b: f64 = ours_s.parse().map_err(|_| format!("bad float {ours_s}"))?;
            let tol = if matches!(col.kind, ColumnKind::Float) {
                1e-5
            } else {
                1e-12
            };
            if a == b || ((a - b) / a.abs().max(1e-300)).abs() < tol {
                Ok(())
            } else {
                mismatch()
            }
        }
        ColumnKind::Date => {
            let v = unquote(value).map(|b| String::from_utf8_lossy(&b).replace(':', "-"));
            if v.as_deref() == Some(ours_s.as_str()) {
                Ok(())
            } else {
                mismatch()
            }
        }
        ColumnKind::Timestamp { .. } => {
            // Epoch seconds (with optional fraction) vs our UTC text.
            let secs: f64 = value.parse().map_err(|_| format!("bad epoch {value}"))?;
            let whole = secs.trunc() as i64;
            let (y, m, d) = sluice::binlog::temporal::civil_from_days(whole.div_euclid(86400));
            let sod = whole.rem_euclid(86400);
            let text = if whole == 0 {
                "0000-00-00 00:00:00".to_string()
            } else {
                format!(
                    "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
                    sod / 3600,
                    sod / 60 % 60,
                    sod % 60
                )
            };
            if ours_s.starts_with(&text) {
                Ok(())
            } else {
                mismatch()
            }
        }
        ColumnKind::Enum { .. } => {
            let idx: usize = value.parse().map_err(|_| format!("bad enum {value}"))?;
            let ours_idx = match &col.labels {
                Some(l) => l.iter().position(|x| *x == ours_s).map_or(0, |p| p + 1),
                None => ours_s.parse().unwrap_or(usize::MAX),
            };
            if idx == ours_idx { Ok(()) } else { mismatch() }
        }
        ColumnKind::Set { .. } | ColumnKind::Bit { .. } => {
            let bits = value
                .strip_prefix("b'")
                .and_then(|s| s.strip_suffix('\''))
                .and_then(|s| u64::from_str_radix(s, 2).ok())
                .ok_or_else(|| format!("bad bit string {value}"))?;
            let ours_bits = match (&col.kind, &col.labels) {
                (ColumnKind::Set { .. }, Some(l)) if !ours_s.is_empty() => ours_s
                    .split(',')
                    .map(|x| l.iter().position(|y| y == x).map_or(0, |p| 1u64 << p))
                    .sum(),
                (ColumnKind::Set { .. }, Some(_)) => 0,
                _ => ours_s.parse().unwrap_or(u64::MAX),
            };
            if bits == ours_bits {
                Ok(())
            } else {
                mismatch()
            }
        }
        ColumnKind::Char { .. } | ColumnKind::VarChar { .. } | ColumnKind::Blob { .. } => {
            let raw = unquote(value).ok_or_else(|| format!("bad string {value}"))?;
            let mut transcoded = Vec::new();
            sluice::binlog::text::push_text(&mut transcoded, &raw, col.charset);
            let trimmed = {
                let mut o = ours;
                while let [rest @ .., 0] = o {
                    o = rest;
                }
                o
            };
            if ours == raw.as_slice() || ours == transcoded.as_slice() || trimmed == raw.as_slice()
            {
                Ok(())
            } else {
                let at = ours.iter().zip(&raw).position(|(a, b)| a != b);
                Err(format!(
                    "bytes differ at {at:?} (Sluice {} bytes, tool {} bytes): tool {} vs Sluice {:?}",
                    ours.len(),
                    raw.len(),
                    short(value),
                    short(&ours_s)
                ))
            }
        }
        // DATETIME, TIME, DECIMAL: the same text, quoted or not.
        _ => {
            let v = unquote(value)
                .map(|b| String::from_utf8_lossy(&b).to_string())
                .unwrap_or_else(|| value.to_string());
            if v == ours_s { Ok(()) } else { mismatch() }
        }
    }
}

/// Compares every row of `events` with `rows` in order. Returns how many values matched.
pub fn compare(events: &[ChangeEvent], rows: &[VvRow]) -> Result<usize, String> {
    let mut flat = Vec::new();
    for ev in events.iter().filter(|e| e.kind != ChangeKind::Ddl) {
        for r in 0..ev.rows.len() {
            flat.push((ev, r));
        }
    }
    if flat.len() != rows.len() {
        return Err(format!(
            "Sluice decoded {} rows, the tool printed {}",
            flat.len(),
            rows.len()
        ));
    }
    let mut checked = 0;
    for (n, ((ev, r), vv)) in flat.iter().zip(rows).enumerate() {
        let want_kind = match ev.kind {
            ChangeKind::Insert => "INSERT",
            ChangeKind::Update => "UPDATE",
            _ => "DELETE",
        };
        if vv.kind != want_kind {
            return Err(format!("row {n}: tool {} vs Sluice {want_kind}", vv.kind));
        }
        let images: Vec<(usize, &Vec<VvValue>)> = match ev.kind {
            ChangeKind::Insert => vec![(0, &vv.after)],
            ChangeKind::Delete => vec![(0, &vv.before)],
            _ => vec![(0, &vv.before), (1, &vv.after)],
        };
        for (img, vals) in images {
            let image = ev.rows.image(*r, img);
            for (idx, value, comment) in vals {
                let col = ev
                    .table
                    .columns
                    .get(idx - 1)
                    .ok_or_else(|| format!("row {n}: no column @{idx}"))?;
                same(col, image.cell(idx - 1), value, comment).map_err(|e| {
                    format!(
                        "row {n} ({} {} at {}), column @{idx} `{}`: {e}",
                        vv.kind, vv.table, ev.position, col.name
                    )
                })?;
                checked += 1;
            }
        }
    }
    Ok(checked)
}
