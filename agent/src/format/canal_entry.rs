//! Canal's protobuf `Entry` (`EntryProtocol.proto`), the unit Canal's TCP protocol
//! carries: one `ROWDATA` entry per rows event and destination, and the
//! `TRANSACTIONBEGIN` / `TRANSACTIONEND` entries around a transaction's rows.
//!
//! The message structs are written by hand (field numbers and types from Canal's
//! proto3 file), so no `protoc` runs at build time. Proto3 `oneof x_present { T x }`
//! fields are `Option<T>` here: the same wire form, with presence. Values are the text
//! the FlatMessage renders (binary as ISO-8859-1 characters), so both forms agree.

use prost::Message;

use crate::event::{self, Cell, ChangeEvent, ChangeKind};

/// `Entry`.
#[derive(Clone, PartialEq, Message)]
pub struct Entry {
    /// Where and what.
    #[prost(message, optional, tag = "1")]
    pub header: Option<Header>,
    /// [`entry_type`] (`oneof entryType_present`).
    #[prost(int32, optional, tag = "2")]
    pub entry_type: Option<i32>,
    /// A serialised [`RowChange`], [`TransactionBegin`] or [`TransactionEnd`].
    #[prost(bytes = "vec", tag = "3")]
    pub store_value: Vec<u8>,
}

/// `Header`.
#[derive(Clone, PartialEq, Message)]
pub struct Header {
    /// Always 1.
    #[prost(int32, optional, tag = "1")]
    pub version: Option<i32>,
    /// Binlog file.
    #[prost(string, tag = "2")]
    pub logfile_name: String,
    /// Binlog offset of the event.
    #[prost(int64, tag = "3")]
    pub logfile_offset: i64,
    /// Server that wrote the event.
    #[prost(int64, tag = "4")]
    pub server_id: i64,
    /// Character set of the values (`UTF-8`).
    #[prost(string, tag = "5")]
    pub serveren_code: String,
    /// Event time, milliseconds since the epoch.
    #[prost(int64, tag = "6")]
    pub execute_time: i64,
    /// 2: MySQL.
    #[prost(int32, optional, tag = "7")]
    pub source_type: Option<i32>,
    /// Database.
    #[prost(string, tag = "8")]
    pub schema_name: String,
    /// Table.
    #[prost(string, tag = "9")]
    pub table_name: String,
    /// Length of the binlog event.
    #[prost(int64, tag = "10")]
    pub event_length: i64,
    /// [`event_type`].
    #[prost(int32, optional, tag = "11")]
    pub event_type: Option<i32>,
    /// Extensions: Sluice puts `sluice.position` here.
    #[prost(message, repeated, tag = "12")]
    pub props: Vec<Pair>,
    /// The transaction's GTID, when the server writes them.
    #[prost(string, tag = "13")]
    pub gtid: String,
}

/// `Column`.
#[derive(Clone, PartialEq, Message)]
pub struct Column {
    /// Index in the table.
    #[prost(int32, tag = "1")]
    pub index: i32,
    /// `java.sql.Types` code.
    #[prost(int32, tag = "2")]
    pub sql_type: i32,
    /// Name.
    #[prost(string, tag = "3")]
    pub name: String,
    /// Part of the primary key.
    #[prost(bool, tag = "4")]
    pub is_key: bool,
    /// An UPDATE changed it (after image).
    #[prost(bool, tag = "5")]
    pub updated: bool,
    /// NULL.
    #[prost(bool, optional, tag = "6")]
    pub is_null: Option<bool>,
    /// Extensions.
    #[prost(message, repeated, tag = "7")]
    pub props: Vec<Pair>,
    /// The value as text.
    #[prost(string, tag = "8")]
    pub value: String,
    /// Original length.
    #[prost(int32, tag = "9")]
    pub length: i32,
    /// MySQL column type (`int(11)`).
    #[prost(string, tag = "10")]
    pub mysql_type: String,
}

/// `RowData`.
#[derive(Clone, PartialEq, Message)]
pub struct RowData {
    /// Before image (UPDATE, DELETE).
    #[prost(message, repeated, tag = "1")]
    pub before_columns: Vec<Column>,
    /// After image (INSERT, UPDATE).
    #[prost(message, repeated, tag = "2")]
    pub after_columns: Vec<Column>,
    /// Extensions.
    #[prost(message, repeated, tag = "3")]
    pub props: Vec<Pair>,
}

/// `RowChange`. Two serialised `RowChange`s of one event, concatenated, parse as one
/// with both's rows (protobuf appends repeated fields): how a destination's parts of
/// one event become one entry.
#[derive(Clone, PartialEq, Message)]
pub struct RowChange {
    /// Binlog table id.
    #[prost(int64, tag = "1")]
    pub table_id: i64,
    /// [`event_type`].
    #[prost(int32, optional, tag = "2")]
    pub event_type: Option<i32>,
    /// A DDL statement.
    #[prost(bool, optional, tag = "10")]
    pub is_ddl: Option<bool>,
    /// DDL text.
    #[prost(string, tag = "11")]
    pub sql: String,
    /// The rows.
    #[prost(message, repeated, tag = "12")]
    pub row_datas: Vec<RowData>,
    /// Extensions.
    #[prost(message, repeated, tag = "13")]
    pub props: Vec<Pair>,
    /// The schema a DDL ran in.
    #[prost(string, tag = "14")]
    pub ddl_schema_name: String,
}

/// `TransactionBegin`.
#[derive(Clone, PartialEq, Message)]
pub struct TransactionBegin {
    /// Deprecated in Canal (the header has it); set anyway.
    #[prost(int64, tag = "1")]
    pub execute_time: i64,
    /// Deprecated in Canal.
    #[prost(string, tag = "2")]
    pub transaction_id: String,
    /// Extensions.
    #[prost(message, repeated, tag = "3")]
    pub props: Vec<Pair>,
    /// Thread id (unknown here: 0).
    #[prost(int64, tag = "4")]
    pub thread_id: i64,
}

/// `TransactionEnd`.
#[derive(Clone, PartialEq, Message)]
pub struct TransactionEnd {
    /// Deprecated in Canal (the header has it); set anyway.
    #[prost(int64, tag = "1")]
    pub execute_time: i64,
    /// The transaction (its GTID, else its commit position).
    #[prost(string, tag = "2")]
    pub transaction_id: String,
    /// Extensions.
    #[prost(message, repeated, tag = "3")]
    pub props: Vec<Pair>,
}

/// `Pair`.
#[derive(Clone, PartialEq, Message)]
pub struct Pair {
    /// Key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `EntryType` values.
pub mod entry_type {
    /// `TRANSACTIONBEGIN`.
    pub const TRANSACTION_BEGIN: i32 = 1;
    /// `ROWDATA`.
    pub const ROW_DATA: i32 = 2;
    /// `TRANSACTIONEND`.
    pub const TRANSACTION_END: i32 = 3;
}

/// `EventType` values.
pub mod event_type {
    /// `INSERT`.
    pub const INSERT: i32 = 1;
    /// `UPDATE`.
    pub const UPDATE: i32 = 2;
    /// `DELETE`.
    pub const DELETE: i32 = 3;
    /// `QUERY` (other statements).
    pub const QUERY: i32 = 7;

    /// The value of Canal's DDL type name ([`crate::ddl::canal_type`]).
    pub fn of_ddl(name: &str) -> i32 {
        match name {
            "CREATE" => 4,
            "ALTER" => 5,
            "ERASE" => 6,
            "TRUNCATE" => 8,
            "RENAME" => 9,
            "CINDEX" => 10,
            "DINDEX" => 11,
            _ => QUERY,
        }
    }
}

/// The header property holding Sluice's position of the entry.
pub const POSITION_PROP: &str = "sluice.position";

/// The event type of a change event.
pub fn event_type_of(ev: &ChangeEvent) -> i32 {
    match ev.kind {
        ChangeKind::Insert => event_type::INSERT,
        ChangeKind::Update => event_type::UPDATE,
        ChangeKind::Delete => event_type::DELETE,
        ChangeKind::Ddl => {
            event_type::of_ddl(crate::ddl::canal_type(ev.sql.as_deref().unwrap_or("")))
        }
    }
}

fn header(ev: &ChangeEvent, position: &str) -> Header {
    let p = &ev.position;
    Header {
        version: Some(1),
        logfile_name: p.file.to_string(),
        logfile_offset: p.offset as i64,
        server_id: i64::from(ev.server_id),
        serveren_code: "UTF-8".into(),
        execute_time: ev.event_ms as i64,
        source_type: Some(2),
        schema_name: ev.table.database.clone(),
        table_name: ev.table.table.clone(),
        event_length: p.next.saturating_sub(p.offset) as i64,
        event_type: Some(event_type_of(ev)),
        props: vec![Pair {
            key: POSITION_PROP.into(),
            value: position.into(),
        }],
        gtid: ev
            .txn
            .gtid
            .as_ref()
            .map(|g| g.to_string())
            .unwrap_or_default(),
    }
}

/// A cell as Canal's text: binary bytes as ISO-8859-1 characters, text as UTF-8 (an
/// invalid sequence replaced, as the JSON form does).
fn text(cell: Cell<'_>, col: &event::Column) -> (Option<String>, bool) {
    match cell {
        Cell::Null | Cell::Absent => (None, true),
        Cell::Value(b) if col.is_binary() => {
            (Some(b.iter().map(|&x| char::from(x)).collect()), false)
        }
        Cell::Value(b) => (Some(String::from_utf8_lossy(b).into_owned()), false),
    }
}

/// The columns of image `image` of row `row`; with `against`, `updated` marks the
/// columns whose value differs from that image (an UPDATE's after image).
fn columns(ev: &ChangeEvent, row: usize, image: usize, against: Option<usize>) -> Vec<Column> {
    let t = &ev.table;
    let img = ev.rows.image(row, image);
    let other = against.map(|i| ev.rows.image(row, i));
    let mut out = Vec::with_capacity(t.columns.len());
    for (c, col) in t.columns.iter().enumerate() {
        let cell = img.cell(c);
        if cell == Cell::Absent {
            // Not in the binlog's image (minimal row images): Canal omits it too.
            continue;
        }
        let (value, null) = text(cell, col);
        out.push(Column {
            index: c as i32,
            sql_type: super::canal::jdbc_type(col),
            name: col.name.clone(),
            is_key: t.primary_key.contains(&c),
            updated: other.as_ref().is_some_and(|o| o.cell(c) != cell),
            is_null: Some(null),
            props: Vec::new(),
            value: value.unwrap_or_default(),
            length: 0,
            mysql_type: col.sql_type.clone(),
        });
    }
    out
}

/// Appends the serialised `ROWDATA` entry of rows `rows` of `ev` (all of a DDL's
/// nothing), with `position` (`sluice.position`) in its header's props.
pub fn row_entry(out: &mut Vec<u8>, ev: &ChangeEvent, rows: &[usize], position: &str) {
    let mut change = RowChange {
        table_id: ev.table.table_id as i64,
        event_type: Some(event_type_of(ev)),
        ..RowChange::default()
    };
    if ev.kind == ChangeKind::Ddl {
        let sql = ev.sql.as_deref().unwrap_or("");
        // Statement-format DML is a QUERY, not DDL, as in the FlatMessage.
        change.is_ddl = Some(!crate::ddl::is_dml(sql));
        change.sql = sql.to_string();
        change.ddl_schema_name = ev.table.database.clone();
    } else {
        change.is_ddl = Some(false);
        for &r in rows {
            let mut data = RowData::default();
            match ev.kind {
                ChangeKind::Insert => data.after_columns = columns(ev, r, 0, None),
                ChangeKind::Delete => data.before_columns = columns(ev, r, 0, None),
                _ => {
                    data.before_columns = columns(ev, r, 0, None);
                    data.after_columns = columns(ev, r, 1, Some(0));
                }
            }
            change.row_datas.push(data);
        }
    }
    let entry = Entry {
        header: Some(header(ev, position)),
        entry_type: Some(entry_type::ROW_DATA),
        store_value: change.encode_to_vec(),
    };
    // Encoding into a Vec cannot run out of room.
    let _ = entry.encode(out);
}

/// A `TRANSACTIONBEGIN` or `TRANSACTIONEND` entry at `file`:`offset`.
pub fn transaction_entry(
    begin: bool,
    file: &str,
    offset: u64,
    server_id: u32,
    execute_ms: u64,
    transaction_id: &str,
    gtid: &str,
) -> Vec<u8> {
    let store_value = if begin {
        TransactionBegin {
            execute_time: execute_ms as i64,
            ..TransactionBegin::default()
        }
        .encode_to_vec()
    } else {
        TransactionEnd {
            execute_time: execute_ms as i64,
            transaction_id: transaction_id.into(),
            props: Vec::new(),
        }
        .encode_to_vec()
    };
    Entry {
        header: Some(Header {
            version: Some(1),
            logfile_name: file.into(),
            logfile_offset: offset as i64,
            server_id: i64::from(server_id),
            serveren_code: "UTF-8".into(),
            execute_time: execute_ms as i64,
            source_type: Some(2),
            event_type: Some(event_type::QUERY),
            gtid: gtid.into(),
            ..Header::default()
        }),
        entry_type: Some(if begin {
            entry_type::TRANSACTION_BEGIN
        } else {
            entry_type::TRANSACTION_END
        }),
        store_value,
    }
    .encode_to_vec()
}
