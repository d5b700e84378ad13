//! Hand-built change events for router tests.

use std::sync::Arc;

use sluice::event::{
    ChangeEvent, ChangeKind, Charset, Column, ColumnKind, Position, Rows, TableSchema, TxnContext,
};

/// A table with INT/VARCHAR columns; `pk` names key columns.
pub fn table(db: &str, name: &str, cols: &[&str], pk: &[&str]) -> Arc<TableSchema> {
    Arc::new(TableSchema {
        table_id: 1,
        database: db.into(),
        table: name.into(),
        columns: cols
            .iter()
            .enumerate()
            .map(|(i, c)| Column {
                name: c.to_string(),
                type_code: if i == 0 { 3 } else { 15 },
                kind: if i == 0 {
                    ColumnKind::Int { bytes: 4 }
                } else {
                    ColumnKind::VarChar { max_bytes: 255 }
                },
                unsigned: false,
                charset: Charset::Utf8,
                collation: Some(45),
                labels: None,
                refinement: None,
                sql_type: if i == 0 {
                    "int(11)".into()
                } else {
                    "varchar(64)".into()
                },
                nullable: true,
            })
            .collect(),
        primary_key: pk
            .iter()
            .filter_map(|p| cols.iter().position(|c| c == p))
            .collect(),
        names_known: true,
    })
}

fn txn() -> Arc<TxnContext> {
    Arc::new(TxnContext {
        gtid: None,
        commit_ms: 1_700_000_000_000,
    })
}

fn pos(offset: u64) -> Position {
    Position {
        file: Arc::from("binlog.000001"),
        offset,
        next: offset + 100,
        sub: 0,
    }
}

/// A rows event of `kind` with `rows` (for updates: before, after pairs).
pub fn rows(
    t: &Arc<TableSchema>,
    kind: ChangeKind,
    rows: &[&[&[Option<&str>]]],
    offset: u64,
) -> ChangeEvent {
    let images = if kind == ChangeKind::Update { 2 } else { 1 };
    let mut r = Rows::new(t.columns.len(), images);
    for row in rows {
        for image in row.iter() {
            let cells: Vec<Option<&[u8]>> = image.iter().map(|c| c.map(str::as_bytes)).collect();
            r.push_image(&cells);
        }
    }
    ChangeEvent {
        position: pos(offset),
        server_id: 1,
        event_ms: 1_700_000_000_000,
        txn: txn(),
        kind,
        table: t.clone(),
        rows: r,
        sql: None,
    }
}

/// An insert of single-image rows.
pub fn insert(t: &Arc<TableSchema>, values: &[&[Option<&str>]], offset: u64) -> ChangeEvent {
    let rs: Vec<[&[Option<&str>]; 1]> = values.iter().map(|v| [*v]).collect();
    let refs: Vec<&[&[Option<&str>]]> = rs.iter().map(|r| &r[..]).collect();
    rows(t, ChangeKind::Insert, &refs, offset)
}

/// A DDL event.
pub fn ddl(db: &str, table: &str, sql: &str, offset: u64) -> ChangeEvent {
    ChangeEvent {
        position: pos(offset),
        server_id: 1,
        event_ms: 1_700_000_000_000,
        txn: txn(),
        kind: ChangeKind::Ddl,
        table: Arc::new(TableSchema {
            table_id: 0,
            database: db.into(),
            table: table.into(),
            columns: Vec::new(),
            primary_key: Vec::new(),
            names_known: true,
        }),
        rows: Rows::default(),
        sql: Some(Arc::from(sql)),
    }
}

/// The same component with a custom section appended: identical behaviour, new version
/// (a different SHA-256), for hot-swap tests.
pub fn new_version(bytes: &[u8], tag: &str) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let name = b"sluice-test-version";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    out.push(0);
    out.push(payload.len() as u8);
    out.extend_from_slice(&payload);
    out
}
