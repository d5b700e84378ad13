//! The change event: what capture produces, what modules route and what sinks publish.
//!
//! This is the one definition of a change in Sluice. Invariants:
//! - every value is in MySQL's text form (what `SELECT` prints; see `binlog::text`), so
//!   Canal-compatible hashing of the text gives Canal's partitions;
//! - a [`Position`] identifies an event uniquely (binlog file, event offset, row index), so
//!   consumers can drop redelivered duplicates by position;
//! - the rows of one rows event share one packed buffer ([`Rows`]): one allocation per
//!   event, not per value, which is also the layout handed to routing modules.

use std::fmt;
use std::sync::Arc;

use crate::gtid::{Gtid, GtidState};

/// Server family that wrote the binlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Oracle MySQL or Percona Server.
    Mysql,
    /// MariaDB.
    Mariadb,
}

/// Character set of a text column, by what the decoder must do with its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// Bytes are binary data (collation 63): kept as they are.
    Binary,
    /// UTF-8 (`utf8mb3`, `utf8mb4`, `ascii`): checked and kept.
    Utf8,
    /// Another character set, transcoded to UTF-8.
    Other(&'static encoding_rs::Encoding),
    /// UTF-16/32 and UCS-2 (wide character sets).
    Wide(WideCharset),
    /// Collation not known (no FULL metadata, no schema): bytes kept, shown lossily.
    Unknown,
}

/// Wide character sets `encoding_rs` does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WideCharset {
    /// UCS-2 / UTF-16 big-endian.
    Utf16Be,
    /// UTF-16 little-endian.
    Utf16Le,
    /// UTF-32 big-endian.
    Utf32Be,
}

/// Logical type of a column: how its binlog bytes become text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnKind {
    /// Integer of 1, 2, 3, 4 or 8 bytes.
    Int {
        /// Storage size in bytes.
        bytes: u8,
    },
    /// FLOAT (4 bytes).
    Float,
    /// DOUBLE (8 bytes).
    Double,
    /// DECIMAL(precision, scale), exact.
    Decimal {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: u8,
    },
    /// YEAR.
    Year,
    /// DATE.
    Date,
    /// TIME with `fsp` fractional digits (`old` = pre-5.6 3-byte format).
    Time {
        /// Fractional second digits.
        fsp: u8,
        /// Pre-5.6 storage format.
        old: bool,
    },
    /// DATETIME.
    DateTime {
        /// Fractional second digits.
        fsp: u8,
        /// Pre-5.6 storage format.
        old: bool,
    },
    /// TIMESTAMP.
    Timestamp {
        /// Fractional second digits.
        fsp: u8,
        /// Pre-5.6 storage format.
        old: bool,
    },
    /// BIT(bits).
    Bit {
        /// Width in bits.
        bits: u16,
    },
    /// CHAR/BINARY(N): `max_bytes` is N times the character set's maximum width.
    Char {
        /// Maximum stored length in bytes.
        max_bytes: u16,
    },
    /// VARCHAR/VARBINARY.
    VarChar {
        /// Maximum length in bytes.
        max_bytes: u16,
    },
    /// TEXT/BLOB with a `len_bytes`-byte length prefix.
    Blob {
        /// Size of the length prefix (1..4).
        len_bytes: u8,
    },
    /// ENUM stored in `pack_len` bytes.
    Enum {
        /// Storage size (1 or 2).
        pack_len: u8,
    },
    /// SET stored in `pack_len` bytes.
    Set {
        /// Storage size (1..8).
        pack_len: u8,
    },
    /// MySQL binary JSON.
    Json {
        /// Size of the length prefix.
        len_bytes: u8,
    },
    /// GEOMETRY: 4-byte SRID then WKB.
    Geometry {
        /// Size of the length prefix.
        len_bytes: u8,
    },
    /// MySQL 9 VECTOR of float32.
    Vector {
        /// Size of the length prefix.
        len_bytes: u8,
    },
    /// The NULL type (always NULL).
    Null,
}

/// A type a column has in the server's data dictionary beyond what the binlog shows
/// (MariaDB's UUID and INET6 are binary strings in the binlog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refinement {
    /// MariaDB UUID (16 bytes, rendered `8-4-4-4-12`).
    Uuid,
    /// MariaDB INET6 (16 bytes, rendered as an IPv6 address).
    Inet6,
    /// MariaDB INET4 (4 bytes, dotted quad).
    Inet4,
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Name, or `@N` (1-based) when neither metadata nor schema gave it.
    pub name: String,
    /// Binlog type code (after resolving CHAR/ENUM/SET real types).
    pub type_code: u8,
    /// How values are decoded.
    pub kind: ColumnKind,
    /// Integer/decimal columns: UNSIGNED.
    pub unsigned: bool,
    /// Text columns: character set.
    pub charset: Charset,
    /// Collation id, when known.
    pub collation: Option<u16>,
    /// ENUM/SET labels, in definition order.
    pub labels: Option<Arc<[String]>>,
    /// Server-side type the binlog does not show.
    pub refinement: Option<Refinement>,
    /// SQL type as `information_schema.COLUMNS.COLUMN_TYPE` writes it (`int(11) unsigned`),
    /// or Sluice's reconstruction from binlog metadata.
    pub sql_type: String,
    /// Whether the column may be NULL.
    pub nullable: bool,
}

impl Column {
    /// Whether every value's text is ASCII that JSON never escapes (numbers, dates).
    pub fn is_plain_ascii(&self) -> bool {
        // Numbers and dates print as digits, signs, `.`, `:`, `-`, `e` and spaces only:
        // nothing JSON would escape, so the text can be copied without a scan.
        matches!(
            self.kind,
            ColumnKind::Int { .. }
                | ColumnKind::Float
                | ColumnKind::Double
                | ColumnKind::Decimal { .. }
                | ColumnKind::Year
                | ColumnKind::Date
                | ColumnKind::Time { .. }
                | ColumnKind::DateTime { .. }
                | ColumnKind::Timestamp { .. }
                | ColumnKind::Bit { .. }
        ) && self.labels.is_none()
            && self.refinement.is_none()
    }

    /// Whether values are bytes rather than text (binary strings, geometry).
    pub fn is_binary(&self) -> bool {
        match self.kind {
            ColumnKind::Char { .. } | ColumnKind::VarChar { .. } | ColumnKind::Blob { .. } => {
                self.refinement.is_none() && matches!(self.charset, Charset::Binary)
            }
            ColumnKind::Geometry { .. } => true,
            _ => false,
        }
    }
}

/// A table as the decoder knows it for one TABLE_MAP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// Binlog table id (valid for this binlog file only).
    pub table_id: u64,
    /// Database (schema) name.
    pub database: String,
    /// Table name.
    pub table: String,
    /// Columns in table order.
    pub columns: Vec<Column>,
    /// Indexes of the primary-key columns, in key order.
    pub primary_key: Vec<usize>,
    /// Whether column names are real (FULL metadata or a schema lookup), not `@N`.
    pub names_known: bool,
}

impl TableSchema {
    /// `db.table`.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.database, self.table)
    }
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// Rows inserted (after images only).
    Insert,
    /// Rows updated (before and after images).
    Update,
    /// Rows deleted (before images only).
    Delete,
    /// A schema change or other statement event (SQL only, no rows).
    Ddl,
}

impl ChangeKind {
    /// Canal's `type` field.
    pub fn canal_name(self) -> &'static str {
        match self {
            ChangeKind::Insert => "INSERT",
            ChangeKind::Update => "UPDATE",
            ChangeKind::Delete => "DELETE",
            ChangeKind::Ddl => "QUERY",
        }
    }
}

/// Where an event sits in the binlog. `(file, offset, row)` is unique per row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// Binlog file name.
    pub file: Arc<str>,
    /// Offset of the event's first byte (`# at N` in mysqlbinlog).
    pub offset: u64,
    /// Offset just past the event (`end_log_pos`).
    pub next: u64,
    /// Index of the event inside a MySQL TRANSACTION_PAYLOAD event (0 otherwise), so
    /// events that share the payload's offset stay distinct.
    pub sub: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.offset)?;
        if self.sub > 0 {
            write!(f, "/{}", self.sub)?;
        }
        Ok(())
    }
}

/// A cell of a row image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    /// SQL NULL.
    Null,
    /// Not in this image (MINIMAL/NOBLOB row images leave columns out).
    Absent,
    /// The value in MySQL text form (UTF-8 text, or raw bytes for binary columns).
    Value(&'a [u8]),
}

impl<'a> Cell<'a> {
    /// The value bytes, if there is a value.
    pub fn bytes(self) -> Option<&'a [u8]> {
        match self {
            Cell::Value(b) => Some(b),
            _ => None,
        }
    }
}

/// Span of one cell in [`Rows::data`]. `len` is [`Span::NULL`] or [`Span::ABSENT`] for
/// cells without a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Start in `data`.
    pub start: u32,
    /// Length, or a marker.
    pub len: u32,
}

impl Span {
    /// Marker length of a NULL cell.
    pub const NULL: u32 = u32::MAX;
    /// Marker length of a cell left out of the image.
    pub const ABSENT: u32 = u32::MAX - 1;
}

/// The row images of one rows event, packed: all cell text back to back in `data`, one
/// [`Span`] per cell. Row `r`, image `i` (0 = before, 1 = after for updates), column `c`
/// is span `(r * images + i) * columns + c`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    /// Cell bytes.
    pub data: Vec<u8>,
    /// Cell spans.
    pub spans: Vec<Span>,
    /// Columns per image.
    pub columns: usize,
    /// Images per row: 1 (insert, delete) or 2 (update).
    pub images: usize,
}

impl Rows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        if self.columns == 0 || self.images == 0 {
            0
        } else {
            self.spans.len() / (self.columns * self.images)
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empty rows of `columns` columns and `images` images per row.
    pub fn new(columns: usize, images: usize) -> Self {
        Rows {
            data: Vec::new(),
            spans: Vec::new(),
            columns,
            images,
        }
    }

    /// Appends one image of a row (call `images` times per row, before-image first).
    /// Cells beyond `columns` are ignored; missing ones are absent.
    pub fn push_image(&mut self, cells: &[Option<&[u8]>]) {
        for i in 0..self.columns {
            match cells.get(i) {
                Some(Some(v)) => {
                    let start = self.data.len() as u32;
                    self.data.extend_from_slice(v);
                    self.spans.push(Span {
                        start,
                        len: v.len() as u32,
                    });
                }
                Some(None) => self.spans.push(Span {
                    start: 0,
                    len: Span::NULL,
                }),
                None => self.spans.push(Span {
                    start: 0,
                    len: Span::ABSENT,
                }),
            }
        }
    }

    /// Image `image` of row `row` (see the type docs for the numbering).
    pub fn image(&self, row: usize, image: usize) -> Image<'_> {
        let start = (row * self.images + image) * self.columns;
        Image {
            data: &self.data,
            spans: self.spans.get(start..start + self.columns).unwrap_or(&[]),
        }
    }
}

/// One row image: a view into [`Rows`].
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    data: &'a [u8],
    spans: &'a [Span],
}

impl<'a> Image<'a> {
    /// Cell of column `col`.
    pub fn cell(&self, col: usize) -> Cell<'a> {
        match self.spans.get(col) {
            None => Cell::Absent,
            Some(s) if s.len == Span::NULL => Cell::Null,
            Some(s) if s.len == Span::ABSENT => Cell::Absent,
            Some(s) => {
                let start = s.start as usize;
                Cell::Value(self.data.get(start..start + s.len as usize).unwrap_or(&[]))
            }
        }
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the image has no columns.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// Context shared by all events of one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnContext {
    /// The transaction's GTID, when the server writes them.
    pub gtid: Option<Gtid>,
    /// Commit time in milliseconds since the epoch: MySQL 8's immediate commit timestamp
    /// when present, else the GTID/BEGIN event's timestamp (written at commit).
    pub commit_ms: u64,
}

/// One change: the rows of one rows event, or one DDL statement.
#[derive(Debug, Clone)]
pub struct ChangeEvent {
    /// Where the event is.
    pub position: Position,
    /// Server that wrote it.
    pub server_id: u32,
    /// Event timestamp (statement start), milliseconds since the epoch.
    pub event_ms: u64,
    /// Transaction context.
    pub txn: Arc<TxnContext>,
    /// What happened.
    pub kind: ChangeKind,
    /// The table (for DDL: a schema-less stand-in naming database and table).
    pub table: Arc<TableSchema>,
    /// Row images (empty for DDL).
    pub rows: Rows,
    /// DDL text, or the statement that produced the rows when the binlog has it
    /// (ANNOTATE_ROWS / ROWS_QUERY).
    pub sql: Option<Arc<str>>,
}

/// Where replication can resume: a transaction boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Binlog file.
    pub file: Arc<str>,
    /// Offset of the first event after the transaction.
    pub position: u64,
    /// GTID state including this transaction, when known.
    pub gtid: Option<GtidState>,
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.position)?;
        if let Some(g) = &self.gtid {
            write!(f, " gtid {g}")?;
        }
        Ok(())
    }
}

/// What the decoder emits, in binlog order.
#[derive(Debug, Clone)]
pub enum SourceItem {
    /// A transaction started.
    Begin(Arc<TxnContext>),
    /// A change inside the current transaction (or a standalone DDL).
    Change(ChangeEvent),
    /// The current transaction committed; `checkpoint` is where to resume after it.
    Commit {
        /// XID, for transactional engines.
        xid: Option<u64>,
        /// Resume point after this transaction.
        checkpoint: Checkpoint,
    },
}

impl SourceItem {
    /// Heap bytes it holds (row cells, their spans, a statement's text): what reading
    /// it ahead costs in memory.
    pub fn heap_bytes(&self) -> usize {
        match self {
            SourceItem::Change(ev) => {
                ev.rows.data.len()
                    + ev.rows.spans.len() * std::mem::size_of::<Span>()
                    + ev.sql.as_ref().map_or(0, |s| s.len())
            }
            SourceItem::Begin(_) | SourceItem::Commit { .. } => 0,
        }
    }
}
