//! TABLE_MAP events: table identity, column types, type metadata and (MySQL 8 /
//! MariaDB 10.5+ with `binlog_row_metadata=FULL`) optional metadata: names, signedness,
//! character sets, ENUM/SET labels and primary key.
//!
//! The result is a [`TableSchema`]: the only description of a table the row decoder
//! uses. Without names it names columns `@1..@N`; a schema lookup may later refine it.

use std::sync::Arc;

use super::cursor::Cursor;
use super::error::DecodeError;
use super::text::charset_for_collation;
use super::{FormatDescription, HEADER_LEN, event_type};
use crate::event::{Charset, Column, ColumnKind, TableSchema};

/// MySQL column type codes as they appear in TABLE_MAP events.
#[allow(missing_docs)]
pub mod col {
    pub const DECIMAL: u8 = 0;
    pub const TINY: u8 = 1;
    pub const SHORT: u8 = 2;
    pub const LONG: u8 = 3;
    pub const FLOAT: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const NULL: u8 = 6;
    pub const TIMESTAMP: u8 = 7;
    pub const LONGLONG: u8 = 8;
    pub const INT24: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const DATETIME: u8 = 12;
    pub const YEAR: u8 = 13;
    pub const NEWDATE: u8 = 14;
    pub const VARCHAR: u8 = 15;
    pub const BIT: u8 = 16;
    pub const TIMESTAMP2: u8 = 17;
    pub const DATETIME2: u8 = 18;
    pub const TIME2: u8 = 19;
    pub const TYPED_ARRAY: u8 = 20;
    pub const VECTOR: u8 = 242;
    pub const JSON: u8 = 245;
    pub const NEWDECIMAL: u8 = 246;
    pub const ENUM: u8 = 247;
    pub const SET: u8 = 248;
    pub const TINY_BLOB: u8 = 249;
    pub const MEDIUM_BLOB: u8 = 250;
    pub const LONG_BLOB: u8 = 251;
    pub const BLOB: u8 = 252;
    pub const VAR_STRING: u8 = 253;
    pub const STRING: u8 = 254;
    pub const GEOMETRY: u8 = 255;
}

/// A parsed TABLE_MAP event.
#[derive(Debug, Clone)]
pub struct TableMap {
    /// The table, ready for the row decoder.
    pub schema: Arc<TableSchema>,
    /// Whether the event carried column names (FULL metadata).
    pub has_names: bool,
    /// Whether the event carried signedness (any optional metadata).
    pub has_signedness: bool,
}

/// Table id and the rest of a TABLE_MAP body; cheap, for cache lookups.
pub fn table_id(body: &[u8], fde: &FormatDescription) -> Result<u64, DecodeError> {
    let id_len = if fde.post_header_len(event_type::TABLE_MAP) == Some(6) {
        4
    } else {
        6
    };
    Cursor::new(body, HEADER_LEN).uint_n(id_len, "TABLE_MAP table id")
}

/// Parses a TABLE_MAP body.
pub fn parse(body: &[u8], fde: &FormatDescription) -> Result<TableMap, DecodeError> {
    let id_len = if fde.post_header_len(event_type::TABLE_MAP) == Some(6) {
        4
    } else {
        6
    };
    let mut c = Cursor::new(body, HEADER_LEN);
    let table_id = c.uint_n(id_len, "TABLE_MAP table id")?;
    c.skip(2, "TABLE_MAP flags")?;
    let database = c.u8_prefixed("TABLE_MAP database name")?;
    c.skip(1, "TABLE_MAP database terminator")?;
    let table = c.u8_prefixed("TABLE_MAP table name")?;
    c.skip(1, "TABLE_MAP table terminator")?;
    let ncols = c.lenenc_count("TABLE_MAP column count", 4096)?;
    let types = c.take(ncols, "TABLE_MAP column types")?;
    let meta_len = c.lenenc_len("TABLE_MAP metadata length")?;
    let meta_at = c.offset();
    let mut meta = Cursor::new(c.take(meta_len, "TABLE_MAP metadata")?, meta_at);
    let nullable = c.take(ncols.div_ceil(8), "TABLE_MAP null bitmap")?;

    let mut columns = Vec::with_capacity(ncols);
    for (i, &t) in types.iter().enumerate() {
        let (type_code, kind) = column_kind(t, &mut meta)?;
        columns.push(Column {
            name: format!("@{}", i + 1),
            type_code,
            kind,
            unsigned: false,
            charset: Charset::Unknown,
            collation: None,
            labels: None,
            refinement: None,
            sql_type: String::new(),
            nullable: nullable[i / 8] & (1 << (i % 8)) != 0,
        });
    }
    if !meta.is_empty() {
        return Err(DecodeError::Malformed {
            what: "TABLE_MAP metadata",
            at: meta.offset(),
            detail: format!("{} bytes left after the last column", meta.remaining()),
        });
    }

    let mut schema = TableSchema {
        table_id,
        database: String::from_utf8_lossy(database).into_owned(),
        table: String::from_utf8_lossy(table).into_owned(),
        columns,
        primary_key: Vec::new(),
        names_known: false,
    };
    let opt = parse_optional(&mut c, &mut schema)?;
    for column in &mut schema.columns {
        column.sql_type = sql_type_of(column);
    }
    Ok(TableMap {
        schema: Arc::new(schema),
        has_names: opt.names,
        has_signedness: opt.signedness,
    })
}

/// Resolves the real type and reads the type's metadata bytes.
fn column_kind(t: u8, meta: &mut Cursor<'_>) -> Result<(u8, ColumnKind), DecodeError> {
    use ColumnKind as K;
    let m1 = |meta: &mut Cursor<'_>| meta.u8("column metadata");
    Ok(match t {
        col::TINY => (t, K::Int { bytes: 1 }),
        col::SHORT => (t, K::Int { bytes: 2 }),
        col::INT24 => (t, K::Int { bytes: 3 }),
        col::LONG => (t, K::Int { bytes: 4 }),
        col::LONGLONG => (t, K::Int { bytes: 8 }),
        col::FLOAT => {
            m1(meta)?;
            (t, K::Float)
        }
        col::DOUBLE => {
            m1(meta)?;
            (t, K::Double)
        }
        col::NEWDECIMAL => {
            let precision = meta.u8("DECIMAL precision")?;
            let scale = meta.u8("DECIMAL scale")?;
            (t, K::Decimal { precision, scale })
        }
        col::YEAR => (t, K::Year),
        col::DATE | col::NEWDATE => (t, K::Date),
        col::TIME => (t, K::Time { fsp: 0, old: true }),
        col::DATETIME => (t, K::DateTime { fsp: 0, old: true }),
        col::TIMESTAMP => (t, K::Timestamp { fsp: 0, old: true }),
        col::TIME2 => (
            t,
            K::Time {
                fsp: m1(meta)?,
                old: false,
            },
        ),
        col::DATETIME2 => (
            t,
            K::DateTime {
                fsp: m1(meta)?,
                old: false,
            },
        ),
        col::TIMESTAMP2 => (
            t,
            K::Timestamp {
                fsp: m1(meta)?,
                old: false,
            },
        ),
        col::BIT => {
            let rem = u16::from(meta.u8("BIT metadata")?);
            let bytes = u16::from(meta.u8("BIT metadata")?);
            (
                t,
                K::Bit {
                    bits: bytes * 8 + rem,
                },
            )
        }
        col::VARCHAR | col::VAR_STRING => {
            let max = meta.u16("VARCHAR max length")?;
            (col::VARCHAR, K::VarChar { max_bytes: max })
        }
        col::BLOB | col::TINY_BLOB | col::MEDIUM_BLOB | col::LONG_BLOB => (
            col::BLOB,
            K::Blob {
                len_bytes: m1(meta)?,
            },
        ),
        col::JSON => (
            t,
            K::Json {
                len_bytes: m1(meta)?,
            },
        ),
        col::GEOMETRY => (
            t,
            K::Geometry {
                len_bytes: m1(meta)?,
            },
        ),
        col::VECTOR => (
            t,
            K::Vector {
                len_bytes: m1(meta)?,
            },
        ),
        col::STRING | col::ENUM | col::SET => {
            let b0 = meta.u8("CHAR metadata")?;
            let b1 = meta.u8("CHAR metadata")?;
            // CHAR lengths above 255 borrow two bits of the real-type byte (XORed).
            let (real, len) = if b0 & 0x30 != 0x30 {
                (
                    b0 | 0x30,
                    u16::from(b1) | (u16::from((b0 & 0x30) ^ 0x30) << 4),
                )
            } else {
                (b0, u16::from(b1))
            };
            match real {
                col::ENUM => (real, K::Enum { pack_len: b1 }),
                col::SET => (real, K::Set { pack_len: b1 }),
                _ => (col::STRING, K::Char { max_bytes: len }),
            }
        }
        col::NULL => (t, K::Null),
        other => {
            return Err(DecodeError::Unsupported(format!(
                "column type {other} ({}) in TABLE_MAP",
                match other {
                    col::DECIMAL => "pre-5.0 DECIMAL",
                    col::TYPED_ARRAY => "typed array",
                    _ => "unknown",
                }
            )));
        }
    })
}

struct OptionalFound {
    names: bool,
    signedness: bool,
}

fn is_numeric(kind: &ColumnKind) -> bool {
    matches!(
        kind,
        ColumnKind::Int { .. }
            | ColumnKind::Float
            | ColumnKind::Double
            | ColumnKind::Decimal { .. }
    )
}

fn is_character(kind: &ColumnKind) -> bool {
    matches!(
        kind,
        ColumnKind::Char { .. } | ColumnKind::VarChar { .. } | ColumnKind::Blob { .. }
    )
}

fn is_enum_or_set(kind: &ColumnKind) -> bool {
    matches!(kind, ColumnKind::Enum { .. } | ColumnKind::Set { .. })
}

/// Parses the optional-metadata TLVs that follow the null bitmap.
fn parse_optional(
    c: &mut Cursor<'_>,
    schema: &mut TableSchema,
) -> Result<OptionalFound, DecodeError> {
    let mut found = OptionalFound {
        names: false,
        signedness: false,
    };
    let cols = &mut schema.columns;
    while !c.is_empty() {
        let kind = c.u8("optional metadata type")?;
        let len = c.lenenc_len("optional metadata length")?;
        let at = c.offset();
        let mut v = Cursor::new(c.take(len, "optional metadata value")?, at);
        match kind {
            // SIGNEDNESS: one bit per numeric column, most significant bit first.
            1 => {
                found.signedness = true;
                let bits = v.take_rest();
                for (n, column) in cols.iter_mut().filter(|c| is_numeric(&c.kind)).enumerate() {
                    let byte = bits.get(n / 8).copied().unwrap_or(0);
                    column.unsigned = byte & (0x80 >> (n % 8)) != 0;
                }
            }
            // DEFAULT_CHARSET / ENUM_AND_SET_DEFAULT_CHARSET: a default collation, then
            // (column index among such columns, collation) exceptions.
            2 | 10 => {
                let default = lenenc_u16(&mut v, "default collation")?;
                let mut per: Vec<u16> = Vec::new();
                let pick: fn(&ColumnKind) -> bool = if kind == 2 {
                    is_character
                } else {
                    is_enum_or_set
                };
                let n = cols.iter().filter(|c| pick(&c.kind)).count();
                per.resize(n, default);
                while !v.is_empty() {
                    let idx = v.lenenc_len_any("charset column index")?;
                    let coll = lenenc_u16(&mut v, "column collation")?;
                    if let Some(slot) = per.get_mut(idx) {
                        *slot = coll;
                    }
                }
                apply_collations(cols, pick, &per);
            }
            // COLUMN_CHARSET / ENUM_AND_SET_COLUMN_CHARSET: one collation per such column.
            3 | 11 => {
                let mut per = Vec::new();
                while !v.is_empty() {
                    per.push(lenenc_u16(&mut v, "column collation")?);
                }
                let pick: fn(&ColumnKind) -> bool = if kind == 3 {
                    is_character
                } else {
                    is_enum_or_set
                };
                apply_collations(cols, pick, &per);
            }
            // COLUMN_NAME.
            4 => {
                found.names = true;
                for column in cols.iter_mut() {
                    let name = v.lenenc_bytes("column name")?;
                    column.name = String::from_utf8_lossy(name).into_owned();
                }
            }
            // SET_STR_VALUE / ENUM_STR_VALUE: labels of each SET / ENUM column.
            5 | 6 => {
                let want = if kind == 5 {
                    |k: &ColumnKind| matches!(k, ColumnKind::Set { .. })
                } else {
                    |k: &ColumnKind| matches!(k, ColumnKind::Enum { .. })
                };
                for column in cols.iter_mut().filter(|c| want(&c.kind)) {
                    let n = v.lenenc_len_any("label count")?;
                    let mut labels = Vec::with_capacity(n.min(65536));
                    for _ in 0..n {
                        let l = v.lenenc_bytes("label")?;
                        labels.push(String::from_utf8_lossy(l).into_owned());
                    }
                    column.labels = Some(labels.into());
                }
            }
            // SIMPLE_PRIMARY_KEY.
            8 => {
                while !v.is_empty() {
                    let idx = v.lenenc_len_any("primary key column")?;
                    check_col(idx, cols.len(), at)?;
                    schema.primary_key.push(idx);
                }
            }
            // PRIMARY_KEY_WITH_PREFIX: (column, prefix length) pairs.
            9 => {
                while !v.is_empty() {
                    let idx = v.lenenc_len_any("primary key column")?;
                    check_col(idx, cols.len(), at)?;
                    v.lenenc("primary key prefix")?;
                    schema.primary_key.push(idx);
                }
            }
            // GEOMETRY_TYPE, COLUMN_VISIBILITY, VECTOR dimensions and future kinds: not
            // needed to render values.
            _ => {}
        }
    }
    schema.names_known = found.names;
    Ok(found)
}

fn check_col(idx: usize, n: usize, at: usize) -> Result<(), DecodeError> {
    if idx >= n {
        return Err(DecodeError::Malformed {
            what: "primary key metadata",
            at,
            detail: format!("column index {idx} but the table has {n} columns"),
        });
    }
    Ok(())
}

fn lenenc_u16(v: &mut Cursor<'_>, what: &'static str) -> Result<u16, DecodeError> {
    let at = v.offset();
    let n = v.lenenc(what)?.unwrap_or(0);
    u16::try_from(n).map_err(|_| DecodeError::Malformed {
        what,
        at,
        detail: format!("collation id {n} is out of range"),
    })
}

fn apply_collations(cols: &mut [Column], pick: fn(&ColumnKind) -> bool, per: &[u16]) {
    for (column, &coll) in cols.iter_mut().filter(|c| pick(&c.kind)).zip(per) {
        column.collation = Some(coll);
        column.charset = charset_for_collation(coll);
    }
}

impl Cursor<'_> {
    /// A present length-encoded integer, as usize (no bound against the remaining bytes).
    fn lenenc_len_any(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let at = self.offset();
        match self.lenenc(what)? {
            Some(n) => usize::try_from(n).map_err(|_| DecodeError::Malformed {
                what,
                at,
                detail: format!("{n} is too large"),
            }),
            None => Err(DecodeError::Malformed {
                what,
                at,
                detail: "unexpected NULL".into(),
            }),
        }
    }
}

/// Sluice's reconstruction of a column's SQL type from binlog metadata, in
/// `information_schema.COLUMNS.COLUMN_TYPE` style. Replaced by the real one when a schema
/// lookup is available.
pub fn sql_type_of(c: &Column) -> String {
    let uns = if c.unsigned { " unsigned" } else { "" };
    let binary = matches!(c.charset, Charset::Binary);
    let mbmax = match c.charset {
        Charset::Utf8 => match c.collation {
            Some(33 | 83 | 192..=215 | 223) => 3,
            Some(11 | 65) => 1,
            _ => 4,
        },
        Charset::Other(enc) if enc == encoding_rs::WINDOWS_1252 => 1,
        Charset::Other(_) => 2,
        Charset::Wide(_) => 4,
        _ => 1,
    };
    match &c.kind {
        ColumnKind::Int { bytes } => {
            let n = match bytes {
                1 => "tinyint",
                2 => "smallint",
                3 => "mediumint",
                4 => "int",
                _ => "bigint",
            };
            format!("{n}{uns}")
        }
        ColumnKind::Float => format!("float{uns}"),
        ColumnKind::Double => format!("double{uns}"),
        ColumnKind::Decimal { precision, scale } => format!("decimal({precision},{scale}){uns}"),
        ColumnKind::Year => "year".into(),
        ColumnKind::Date => "date".into(),
        ColumnKind::Time { fsp, .. } => with_fsp("time", *fsp),
        ColumnKind::DateTime { fsp, .. } => with_fsp("datetime", *fsp),
        ColumnKind::Timestamp { fsp, .. } => with_fsp("timestamp", *fsp),
        ColumnKind::Bit { bits } => format!("bit({bits})"),
        ColumnKind::Char { max_bytes } if binary => format!("binary({max_bytes})"),
        ColumnKind::Char { max_bytes } => format!("char({})", max_bytes / mbmax),
        ColumnKind::VarChar { max_bytes } if binary => format!("varbinary({max_bytes})"),
        ColumnKind::VarChar { max_bytes } => format!("varchar({})", max_bytes / mbmax),
        ColumnKind::Blob { len_bytes } => {
            let size = match len_bytes {
                1 => "tiny",
                2 => "",
                3 => "medium",
                _ => "long",
            };
            format!("{size}{}", if binary { "blob" } else { "text" })
        }
        ColumnKind::Enum { .. } | ColumnKind::Set { .. } => {
            let word = if matches!(c.kind, ColumnKind::Enum { .. }) {
                "enum"
            } else {
                "set"
            };
            match &c.labels {
                Some(labels) => {
                    let quoted: Vec<String> = labels
                        .iter()
                        .map(|l| format!("'{}'", l.replace('\'', "''")))
                        .collect();
                    format!("{word}({})", quoted.join(","))
                }
                None => word.into(),
            }
        }
        ColumnKind::Json { .. } => "json".into(),
        ColumnKind::Geometry { .. } => "geometry".into(),
        ColumnKind::Vector { len_bytes: _ } => "vector".into(),
        ColumnKind::Null => "null".into(),
    }
}

fn with_fsp(name: &str, fsp: u8) -> String {
    if fsp == 0 {
        name.into()
    } else {
        format!("{name}({fsp})")
    }
}
