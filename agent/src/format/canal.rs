//! Canal FlatMessage JSON, as Canal emits it with `canal.mq.flatMessage=true`.
//!
//! Field names, nulls and value forms follow Canal 1.1.x so existing consumers keep
//! working: every value is a string in MySQL text form, binary values are ISO-8859-1
//! strings, `old` holds only the changed columns of each updated row, DDL messages have
//! `isDdl: true`, `data: null` and Canal's DDL type (`CREATE`, `ALTER`, `ERASE`, ...).

use super::{BinaryAs, push_cell, push_num, push_str};
use crate::event::{Cell, ChangeEvent, ChangeKind, Column, ColumnKind, TableSchema};

/// Appends one FlatMessage for all rows of `ev`.
pub fn flat_message(out: &mut Vec<u8>, ev: &ChangeEvent, id: u64, ts_ms: u64) {
    let all: Vec<usize> = (0..ev.rows.len()).collect();
    flat_message_rows(out, ev, &all, id, ts_ms);
}

/// Appends one FlatMessage for rows `rows` of `ev` (the rows of a rows event that share
/// a destination, as Canal splits by partition, or a single row).
pub fn flat_message_rows(out: &mut Vec<u8>, ev: &ChangeEvent, rows: &[usize], id: u64, ts_ms: u64) {
    let t = &*ev.table;
    let is_ddl = ev.kind == ChangeKind::Ddl;
    // Keys in the order fastjson writes them (alphabetical).
    out.extend_from_slice(b"{\"data\":");
    if is_ddl {
        out.extend_from_slice(b"null");
    } else {
        let image = if ev.kind == ChangeKind::Update { 1 } else { 0 };
        out.push(b'[');
        for (i, &r) in rows.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_row(out, t, ev, r, image, None);
        }
        out.push(b']');
    }
    out.extend_from_slice(b",\"database\":");
    push_str(out, &t.database);
    out.extend_from_slice(b",\"es\":");
    push_num(out, ev.event_ms);
    out.extend_from_slice(b",\"gtid\":");
    match &ev.txn.gtid {
        Some(g) => push_str(out, &g.to_string()),
        None => push_str(out, ""),
    }
    out.extend_from_slice(b",\"id\":");
    push_num(out, id);
    // Statement-format DML arrives as a QUERY event; Canal does not mark it as DDL.
    let ddl_flag = is_ddl && !crate::ddl::is_dml(ev.sql.as_deref().unwrap_or(""));
    out.extend_from_slice(if ddl_flag {
        b",\"isDdl\":true" as &[u8]
    } else {
        b",\"isDdl\":false"
    });
    out.extend_from_slice(b",\"mysqlType\":");
    if is_ddl {
        out.extend_from_slice(b"null");
    } else {
        out.push(b'{');
        for (i, c) in t.columns.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_str(out, &c.name);
            out.push(b':');
            push_str(out, &c.sql_type);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b",\"old\":");
    if ev.kind == ChangeKind::Update {
        out.push(b'[');
        for (i, &r) in rows.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_row(out, t, ev, r, 0, Some(1));
        }
        out.push(b']');
    } else {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b",\"pkNames\":");
    if is_ddl || t.primary_key.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        out.push(b'[');
        for (i, &k) in t.primary_key.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_str(out, t.columns.get(k).map_or("", |c| c.name.as_str()));
        }
        out.push(b']');
    }
    out.extend_from_slice(b",\"sql\":");
    match (&ev.sql, is_ddl) {
        (Some(s), true) => push_str(out, s),
        _ => push_str(out, ""),
    }
    out.extend_from_slice(b",\"sqlType\":");
    if is_ddl {
        out.extend_from_slice(b"null");
    } else {
        out.push(b'{');
        for (i, c) in t.columns.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_str(out, &c.name);
            out.push(b':');
            let code = jdbc_type(c);
            if code < 0 {
                out.push(b'-');
            }
            push_num(out, u64::from(code.unsigned_abs()));
        }
        out.push(b'}');
    }
    out.extend_from_slice(b",\"table\":");
    push_str(out, &t.table);
    out.extend_from_slice(b",\"ts\":");
    push_num(out, ts_ms);
    out.extend_from_slice(b",\"type\":");
    if is_ddl {
        push_str(out, crate::ddl::canal_type(ev.sql.as_deref().unwrap_or("")));
    } else {
        push_str(out, ev.kind.canal_name());
    }
    out.push(b'}');
}

/// A row image as a JSON object in column order. With `changed_against`, only columns
/// whose value differs from that image are written (Canal's `old`).
fn push_row(
    out: &mut Vec<u8>,
    t: &TableSchema,
    ev: &ChangeEvent,
    row: usize,
    image: usize,
    changed_against: Option<usize>,
) {
    let img = ev.rows.image(row, image);
    let other = changed_against.map(|i| ev.rows.image(row, i));
    out.push(b'{');
    let mut first = true;
    for (c, col) in t.columns.iter().enumerate() {
        let cell = img.cell(c);
        if cell == Cell::Absent {
            continue;
        }
        if let Some(o) = &other
            && o.cell(c) == cell
        {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        push_str(out, &col.name);
        out.push(b':');
        push_cell(out, cell, col, BinaryAs::Latin1);
    }
    out.push(b'}');
}

/// The `java.sql.Types` code Canal reports for a column.
pub fn jdbc_type(c: &Column) -> i32 {
    const BIT: i32 = -7;
    const TINYINT: i32 = -6;
    const SMALLINT: i32 = 5;
    const INTEGER: i32 = 4;
    const BIGINT: i32 = -5;
    const REAL: i32 = 7;
    const DOUBLE: i32 = 8;
    const DECIMAL: i32 = 3;
    const CHAR: i32 = 1;
    const VARCHAR: i32 = 12;
    const DATE: i32 = 91;
    const TIME: i32 = 92;
    const TIMESTAMP: i32 = 93;
    const BINARY: i32 = -2;
    const VARBINARY: i32 = -3;
    const BLOB: i32 = 2004;
    const CLOB: i32 = 2005;
    let binary = c.is_binary();
    match c.kind {
        // Canal widens unsigned types to the next signed one.
        ColumnKind::Int { bytes: 1 } => {
            if c.unsigned {
                SMALLINT
            } else {
                TINYINT
            }
        }
        ColumnKind::Int { bytes: 2 } => {
            if c.unsigned {
                INTEGER
            } else {
                SMALLINT
            }
        }
        ColumnKind::Int { bytes: 3 } => INTEGER,
        ColumnKind::Int { bytes: 4 } => {
            if c.unsigned {
                BIGINT
            } else {
                INTEGER
            }
        }
        ColumnKind::Int { .. } => {
            if c.unsigned {
                DECIMAL
            } else {
                BIGINT
            }
        }
        ColumnKind::Float => REAL,
        ColumnKind::Double => DOUBLE,
        ColumnKind::Decimal { .. } => DECIMAL,
        ColumnKind::Year => VARCHAR,
        ColumnKind::Date => DATE,
        ColumnKind::Time { .. } => TIME,
        ColumnKind::DateTime { .. } | ColumnKind::Timestamp { .. } => TIMESTAMP,
        ColumnKind::Bit { .. } => BIT,
        ColumnKind::Char { .. } => {
            if binary {
                BINARY
            } else {
                CHAR
            }
        }
        ColumnKind::VarChar { .. } => {
            if binary {
                VARBINARY
            } else {
                VARCHAR
            }
        }
        ColumnKind::Blob { .. } => {
            if binary {
                BLOB
            } else {
                CLOB
            }
        }
        ColumnKind::Enum { .. } | ColumnKind::Set { .. } => CHAR,
        ColumnKind::Json { .. } => VARCHAR,
        ColumnKind::Geometry { .. } | ColumnKind::Vector { .. } => BINARY,
        ColumnKind::Null => 0,
    }
}
