//! Canal FlatMessage JSON, as Canal emits it with `canal.mq.flatMessage=true`.
//!
//! Field names, nulls and value forms follow Canal 1.1.x so existing consumers keep
//! working: every value is a string in MySQL text form, binary values are ISO-8859-1
//! strings, `old` holds only the changed columns of each updated row, DDL messages have
//! `isDdl: true`, `data: null` and Canal's DDL type (`CREATE`, `ALTER`, `ERASE`, ...).

use super::{BinaryAs, push_cell, push_num, push_str};
use std::sync::Arc;

use crate::event::{Cell, ChangeEvent, ChangeKind, Column, ColumnKind, TableSchema};

/// The parts of a FlatMessage that depend only on the table (`"name":` keys, database,
/// table, `mysqlType`, `sqlType`, `pkNames`), rendered once per table version instead of
/// once per message: a 10-column table otherwise escapes 30 names per message.
#[derive(Debug)]
pub struct TableJson {
    /// The table these parts were rendered from; a message for any other schema
    /// renders its own, so stale parts can never be used.
    schema: Arc<TableSchema>,
    /// `"name":` of every column, back to back; `key_ends[c]` ends column `c`'s.
    keys: Vec<u8>,
    key_ends: Vec<usize>,
    database: Vec<u8>,
    table: Vec<u8>,
    mysql_type: Vec<u8>,
    sql_type: Vec<u8>,
    pk_names: Vec<u8>,
}

impl TableJson {
    /// Renders the parts of `schema`.
    pub fn new(schema: &Arc<TableSchema>) -> Self {
        let t = &**schema;
        let mut keys = Vec::new();
        let mut key_ends = Vec::with_capacity(t.columns.len());
        for c in &t.columns {
            push_str(&mut keys, &c.name);
            keys.push(b':');
            key_ends.push(keys.len());
        }
        let object = |value: &dyn Fn(&mut Vec<u8>, &Column)| {
            let mut o = vec![b'{'];
            for (i, c) in t.columns.iter().enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                push_str(&mut o, &c.name);
                o.push(b':');
                value(&mut o, c);
            }
            o.push(b'}');
            o
        };
        let mysql_type = object(&|o, c| push_str(o, &c.sql_type));
        let sql_type = object(&|o, c| {
            let code = jdbc_type(c);
            if code < 0 {
                o.push(b'-');
            }
            push_num(o, u64::from(code.unsigned_abs()));
        });
        let pk_names = if t.primary_key.is_empty() {
            b"null".to_vec()
        } else {
            let mut o = vec![b'['];
            for (i, &k) in t.primary_key.iter().enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                push_str(&mut o, t.columns.get(k).map_or("", |c| c.name.as_str()));
            }
            o.push(b']');
            o
        };
        let quoted = |s: &str| {
            let mut o = Vec::new();
            push_str(&mut o, s);
            o
        };
        TableJson {
            schema: schema.clone(),
            keys,
            key_ends,
            database: quoted(&t.database),
            table: quoted(&t.table),
            mysql_type,
            sql_type,
            pk_names,
        }
    }

    /// Whether these are the parts of `schema` (the same table version).
    pub fn renders(&self, schema: &Arc<TableSchema>) -> bool {
        Arc::ptr_eq(&self.schema, schema)
    }

    fn key(&self, c: usize) -> &[u8] {
        let start = if c == 0 { 0 } else { self.key_ends[c - 1] };
        &self.keys[start..self.key_ends[c]]
    }
}

/// Appends one FlatMessage for all rows of `ev`.
pub fn flat_message(out: &mut Vec<u8>, ev: &ChangeEvent, id: u64, ts_ms: u64) {
    let all: Vec<usize> = (0..ev.rows.len()).collect();
    flat_message_rows(out, ev, &TableJson::new(&ev.table), &all, id, ts_ms);
}

/// Appends one FlatMessage for rows `rows` of `ev` (the rows of a rows event that share
/// a destination, as Canal splits by partition, or a single row), with `parts` rendered
/// from `ev`'s table (else they are rendered here).
pub fn flat_message_rows(
    out: &mut Vec<u8>,
    ev: &ChangeEvent,
    parts: &TableJson,
    rows: &[usize],
    id: u64,
    ts_ms: u64,
) {
    if !parts.renders(&ev.table) {
        return flat_message_rows(out, ev, &TableJson::new(&ev.table), rows, id, ts_ms);
    }
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
            push_row(out, parts, ev, r, image, None);
        }
        out.push(b']');
    }
    out.extend_from_slice(b",\"database\":");
    out.extend_from_slice(&parts.database);
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
        out.extend_from_slice(&parts.mysql_type);
    }
    out.extend_from_slice(b",\"old\":");
    if ev.kind == ChangeKind::Update {
        out.push(b'[');
        for (i, &r) in rows.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_row(out, parts, ev, r, 0, Some(1));
        }
        out.push(b']');
    } else {
        out.extend_from_slice(b"null");
    }
    out.extend_from_slice(b",\"pkNames\":");
    if is_ddl {
        out.extend_from_slice(b"null");
    } else {
        out.extend_from_slice(&parts.pk_names);
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
        out.extend_from_slice(&parts.sql_type);
    }
    out.extend_from_slice(b",\"table\":");
    out.extend_from_slice(&parts.table);
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
    parts: &TableJson,
    ev: &ChangeEvent,
    row: usize,
    image: usize,
    changed_against: Option<usize>,
) {
    let img = ev.rows.image(row, image);
    let other = changed_against.map(|i| ev.rows.image(row, i));
    out.push(b'{');
    let mut first = true;
    for (c, col) in parts.schema.columns.iter().enumerate() {
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
        out.extend_from_slice(parts.key(c));
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
