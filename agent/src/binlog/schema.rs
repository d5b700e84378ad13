//! Table definitions from the server's data dictionary (`information_schema`), used to
//! refine what TABLE_MAP events say.
//!
//! With `binlog_row_metadata=FULL` the binlog names columns itself; the dictionary then
//! adds only what the binlog cannot show (exact `COLUMN_TYPE`, MariaDB's UUID/INET6).
//! Without FULL metadata it supplies names, signedness, character sets, labels and the
//! primary key. Invariant: a dictionary that does not match the row (column count or
//! type family) is a [`DecodeError::SchemaMismatch`]: decoding halts instead of
//! attaching values to the wrong names.

use std::sync::Arc;

use super::DecodeError;
use super::text::charset_for_collation;
use crate::event::{ColumnKind, Refinement, TableSchema};

/// One column as `information_schema.COLUMNS` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DictColumn {
    /// Column name.
    pub name: String,
    /// `DATA_TYPE` (`int`, `varchar`, `uuid`, ...).
    pub data_type: String,
    /// `COLUMN_TYPE` (`int(10) unsigned`, `enum('a','b')`, ...).
    pub column_type: String,
    /// Collation id, for character columns.
    pub collation_id: Option<u16>,
    /// Position in the primary key (1-based), if part of it.
    pub pk_ordinal: Option<u32>,
    /// `IS_NULLABLE`.
    pub nullable: bool,
}

/// A table's columns in ordinal order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DictTable {
    /// Columns, by `ORDINAL_POSITION`.
    pub columns: Vec<DictColumn>,
}

/// Whether a dictionary type can be stored as the binlog column kind.
fn compatible(kind: &ColumnKind, data_type: &str) -> bool {
    use ColumnKind as K;
    let t = data_type;
    match kind {
        K::Int { bytes } => matches!(
            (bytes, t),
            (1, "tinyint" | "bool" | "boolean")
                | (2, "smallint")
                | (3, "mediumint")
                | (4, "int" | "integer")
                | (8, "bigint")
        ),
        K::Float => t == "float",
        K::Double => matches!(t, "double" | "real" | "double precision"),
        K::Decimal { .. } => matches!(t, "decimal" | "numeric"),
        K::Year => t == "year",
        K::Date => t == "date",
        K::Time { .. } => t == "time",
        K::DateTime { .. } => t == "datetime",
        K::Timestamp { .. } => t == "timestamp",
        K::Bit { .. } => t == "bit",
        K::Char { .. } => matches!(t, "char" | "binary" | "uuid" | "inet6" | "inet4"),
        K::VarChar { .. } => matches!(t, "varchar" | "varbinary"),
        K::Blob { .. } => {
            t.ends_with("text") || t.ends_with("blob") || t == "json" || t == "longtext"
        }
        K::Enum { .. } => t == "enum",
        K::Set { .. } => t == "set",
        K::Json { .. } => t == "json",
        K::Geometry { .. } => matches!(
            t,
            "geometry"
                | "point"
                | "linestring"
                | "polygon"
                | "multipoint"
                | "multilinestring"
                | "multipolygon"
                | "geometrycollection"
                | "geomcollection"
        ),
        K::Vector { .. } => t == "vector",
        K::Null => true,
    }
}

/// Parses ENUM/SET labels out of a `COLUMN_TYPE` like `enum('a','it''s')`.
fn labels_of(column_type: &str) -> Option<Arc<[String]>> {
    let inner = column_type.split_once('(')?.1.strip_suffix(')')?;
    let mut labels = Vec::new();
    let mut cur = String::new();
    let mut chars = inner.chars().peekable();
    let mut in_quote = false;
    while let Some(ch) = chars.next() {
        match (in_quote, ch) {
            (false, '\'') => in_quote = true,
            (true, '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
                cur.push('\'');
            }
            (true, '\'') => {
                in_quote = false;
                labels.push(std::mem::take(&mut cur));
            }
            (true, c) => cur.push(c),
            (false, _) => {}
        }
    }
    Some(labels.into())
}

/// Refines `schema` with `dict`. Fails when they cannot describe the same row.
pub fn refine(schema: &mut TableSchema, dict: &DictTable) -> Result<(), DecodeError> {
    let table = schema.qualified_name();
    if dict.columns.len() != schema.columns.len() {
        return Err(DecodeError::SchemaMismatch {
            table,
            detail: format!(
                "the binlog row has {} columns, information_schema lists {}: the table \
                 changed after this event was written (only binlog_row_metadata=FULL lets \
                 such events be decoded without the current definition)",
                schema.columns.len(),
                dict.columns.len()
            ),
        });
    }
    for (i, (col, d)) in schema.columns.iter_mut().zip(&dict.columns).enumerate() {
        if schema.names_known && col.name != d.name {
            return Err(DecodeError::SchemaMismatch {
                table,
                detail: format!(
                    "column {} is `{}` in the binlog but `{}` in information_schema",
                    i + 1,
                    col.name,
                    d.name
                ),
            });
        }
        let data_type = d.data_type.to_ascii_lowercase();
        if !compatible(&col.kind, &data_type) {
            return Err(DecodeError::SchemaMismatch {
                table,
                detail: format!(
                    "column {} (`{}`) is {:?} in the binlog but `{}` in information_schema",
                    i + 1,
                    d.name,
                    col.kind,
                    d.column_type
                ),
            });
        }
        col.name.clone_from(&d.name);
        col.sql_type.clone_from(&d.column_type);
        col.refinement = match data_type.as_str() {
            "uuid" => Some(Refinement::Uuid),
            "inet6" => Some(Refinement::Inet6),
            "inet4" => Some(Refinement::Inet4),
            _ => None,
        };
        col.unsigned = d.column_type.to_ascii_lowercase().contains("unsigned");
        col.nullable = d.nullable;
        if col.collation.is_none() {
            if let Some(id) = d.collation_id {
                col.collation = Some(id);
                col.charset = charset_for_collation(id);
            } else if matches!(data_type.as_str(), "binary" | "varbinary")
                || data_type.ends_with("blob")
            {
                col.charset = crate::event::Charset::Binary;
            }
        }
        if col.labels.is_none()
            && matches!(col.kind, ColumnKind::Enum { .. } | ColumnKind::Set { .. })
        {
            col.labels = labels_of(&d.column_type);
        }
    }
    if schema.primary_key.is_empty() {
        let mut pk: Vec<(u32, usize)> = dict
            .columns
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.pk_ordinal.map(|o| (o, i)))
            .collect();
        pk.sort_unstable();
        schema.primary_key = pk.into_iter().map(|(_, i)| i).collect();
    }
    schema.names_known = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_with_quotes() {
        let l = labels_of("enum('a','it''s','x,y')").unwrap();
        assert_eq!(&*l, &["a".to_string(), "it's".into(), "x,y".into()]);
    }
}
