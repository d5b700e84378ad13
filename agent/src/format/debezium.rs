//! A Debezium-style envelope: `{"before", "after", "source", "op", "ts_ms"}`, one message
//! per row, values in MySQL text form (binary as base64), DDL as a schema-change record
//! (`{"source", "databaseName", "ddl"}`).

use super::{BinaryAs, push_cell, push_num, push_str};
use crate::event::{Cell, ChangeEvent, ChangeKind};

/// Appends the envelope of row `row` of `ev` (ignored for DDL).
pub fn envelope(out: &mut Vec<u8>, ev: &ChangeEvent, row: usize, ts_ms: u64) {
    let t = &*ev.table;
    let image = |out: &mut Vec<u8>, i: usize| {
        let img = ev.rows.image(row, i);
        out.push(b'{');
        let mut first = true;
        for (c, col) in t.columns.iter().enumerate() {
            let cell = img.cell(c);
            if cell == Cell::Absent {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            push_str(out, &col.name);
            out.push(b':');
            push_cell(out, cell, col, BinaryAs::Base64);
        }
        out.push(b'}');
    };
    out.push(b'{');
    if ev.kind == ChangeKind::Ddl {
        push_source(out, ev, 0);
        out.extend_from_slice(b",\"databaseName\":");
        push_str(out, &t.database);
        out.extend_from_slice(b",\"ddl\":");
        push_str(out, ev.sql.as_deref().unwrap_or(""));
        out.extend_from_slice(b",\"ts_ms\":");
        push_num(out, ts_ms);
        out.push(b'}');
        return;
    }
    out.extend_from_slice(b"\"before\":");
    match ev.kind {
        ChangeKind::Update | ChangeKind::Delete => image(out, 0),
        _ => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"after\":");
    match ev.kind {
        ChangeKind::Insert => image(out, 0),
        ChangeKind::Update => image(out, 1),
        _ => out.extend_from_slice(b"null"),
    }
    out.push(b',');
    push_source(out, ev, row);
    out.extend_from_slice(b",\"op\":");
    push_str(
        out,
        match ev.kind {
            ChangeKind::Insert => "c",
            ChangeKind::Update => "u",
            _ => "d",
        },
    );
    out.extend_from_slice(b",\"ts_ms\":");
    push_num(out, ts_ms);
    out.push(b'}');
}

fn push_source(out: &mut Vec<u8>, ev: &ChangeEvent, row: usize) {
    let t = &*ev.table;
    out.extend_from_slice(b"\"source\":{\"connector\":\"sluice\",\"file\":");
    push_str(out, &ev.position.file);
    out.extend_from_slice(b",\"pos\":");
    push_num(out, ev.position.offset);
    out.extend_from_slice(b",\"row\":");
    push_num(out, row as u64);
    out.extend_from_slice(b",\"gtid\":");
    match &ev.txn.gtid {
        Some(g) => push_str(out, &g.to_string()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"server_id\":");
    push_num(out, u64::from(ev.server_id));
    out.extend_from_slice(b",\"db\":");
    push_str(out, &t.database);
    out.extend_from_slice(b",\"table\":");
    push_str(out, &t.table);
    out.extend_from_slice(b",\"ts_ms\":");
    push_num(out, ev.txn.commit_ms);
    out.push(b'}');
}
