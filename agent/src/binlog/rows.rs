//! Rows events (WRITE/UPDATE/DELETE v1 and v2, MySQL's PARTIAL_UPDATE_ROWS and MariaDB's
//! compressed rows) decoded straight into packed text cells.
//!
//! Invariant: every value is appended to one buffer per event ([`Rows`]); the column
//! count and each value's bytes are checked against the table's schema, and a mismatch
//! is a [`DecodeError::SchemaMismatch`], never a silently shifted row.

use super::cursor::Cursor;
use super::decimal::read_decimal;
use super::error::DecodeError;
use super::events::mariadb_uncompress;
use super::float::{push_double, push_float};
use super::jsonb::push_json;
use super::temporal;
use super::text::{
    push_enum, push_i64, push_inet4, push_inet6, push_set, push_text, push_u64, push_uuid,
};
use super::{FormatDescription, HEADER_LEN, event_type as et};
use crate::event::{ChangeKind, Charset, Column, ColumnKind, Refinement, Rows, Span, TableSchema};

/// Layout facts of a rows event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowsLayout {
    /// Insert, update or delete.
    pub kind: ChangeKind,
    /// v2 header (extra data after the flags).
    pub v2: bool,
    /// MariaDB zlib-compressed body.
    pub compressed: bool,
    /// MySQL PARTIAL_UPDATE_ROWS (JSON diffs possible in the after image).
    pub partial: bool,
}

/// Whether `t` is a rows event, and its layout.
pub fn layout(t: u8) -> Option<RowsLayout> {
    use ChangeKind::*;
    let l = |kind, v2, compressed, partial| {
        Some(RowsLayout {
            kind,
            v2,
            compressed,
            partial,
        })
    };
    match t {
        et::WRITE_ROWS_V1 => l(Insert, false, false, false),
        et::UPDATE_ROWS_V1 => l(Update, false, false, false),
        et::DELETE_ROWS_V1 => l(Delete, false, false, false),
        et::WRITE_ROWS_V2 => l(Insert, true, false, false),
        et::UPDATE_ROWS_V2 => l(Update, true, false, false),
        et::DELETE_ROWS_V2 => l(Delete, true, false, false),
        et::PARTIAL_UPDATE_ROWS => l(Update, true, false, true),
        et::MARIADB_WRITE_ROWS_COMPRESSED_V1 => l(Insert, false, true, false),
        et::MARIADB_UPDATE_ROWS_COMPRESSED_V1 => l(Update, false, true, false),
        et::MARIADB_DELETE_ROWS_COMPRESSED_V1 => l(Delete, false, true, false),
        et::MARIADB_WRITE_ROWS_COMPRESSED => l(Insert, true, true, false),
        et::MARIADB_UPDATE_ROWS_COMPRESSED => l(Update, true, true, false),
        et::MARIADB_DELETE_ROWS_COMPRESSED => l(Delete, true, true, false),
        _ => None,
    }
}

fn id_len(t: u8, fde: &FormatDescription) -> usize {
    if fde.post_header_len(t) == Some(6) {
        4
    } else {
        6
    }
}

/// The table id a rows event refers to.
pub fn table_id(t: u8, body: &[u8], fde: &FormatDescription) -> Result<u64, DecodeError> {
    Cursor::new(body, HEADER_LEN).uint_n(id_len(t, fde), "rows event table id")
}

/// Options that change how values render.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValueOptions {
    /// Offset from UTC, in seconds, used to print TIMESTAMP columns.
    pub tz_offset_secs: i32,
}

/// Decodes the rows of one rows event body against `schema`.
pub fn decode(
    t: u8,
    body: &[u8],
    fde: &FormatDescription,
    schema: &TableSchema,
    opts: ValueOptions,
) -> Result<Rows, DecodeError> {
    let lay = layout(t).ok_or_else(|| DecodeError::Unsupported(format!("event type {t}")))?;
    let mut c = Cursor::new(body, HEADER_LEN);
    c.skip(id_len(t, fde), "rows event table id")?;
    c.skip(2, "rows event flags")?;
    if lay.v2 {
        let extra = c.u16("rows event extra data length")? as usize;
        c.skip(extra.saturating_sub(2), "rows event extra data")?;
    }
    decode_body(&mut c, lay, schema, opts)
}

fn mismatch(schema: &TableSchema, detail: String) -> DecodeError {
    DecodeError::SchemaMismatch {
        table: schema.qualified_name(),
        detail,
    }
}

fn decode_body(
    c: &mut Cursor<'_>,
    lay: RowsLayout,
    schema: &TableSchema,
    opts: ValueOptions,
) -> Result<Rows, DecodeError> {
    // MySQL and MariaDB allow at most 4096 columns per table.
    let width = c.lenenc_count("rows event column count", 4096)?;
    if width != schema.columns.len() {
        return Err(mismatch(
            schema,
            format!(
                "rows event has {width} columns, the table map has {}",
                schema.columns.len()
            ),
        ));
    }
    let bitmap_len = width.div_ceil(8);
    let present_before = c.take(bitmap_len, "rows event column bitmap")?;
    let present_after = if lay.kind == ChangeKind::Update {
        c.take(bitmap_len, "rows event after-image column bitmap")?
    } else {
        present_before
    };
    let images = if lay.kind == ChangeKind::Update { 2 } else { 1 };
    if lay.compressed {
        // MariaDB compresses only the row images; width and bitmaps stay plain. Offsets
        // inside the inflated rows count from the compressed record's start.
        let at = c.offset();
        let inflated = mariadb_uncompress(c.rest(), at)?;
        let mut plain = Cursor::new(&inflated, at);
        decode_images(
            &mut plain,
            lay,
            schema,
            opts,
            [present_before, present_after],
            images,
        )
    } else {
        decode_images(
            c,
            lay,
            schema,
            opts,
            [present_before, present_after],
            images,
        )
    }
}

/// Most cells a rows event may decode to per byte of its row data. FULL images stay under
/// 8 (every present cell costs at least a null-bitmap bit); MINIMAL images of very wide
/// tables are the only legal events that come near.
const MAX_SPANS_PER_BYTE: usize = 64;

fn decode_images(
    c: &mut Cursor<'_>,
    lay: RowsLayout,
    schema: &TableSchema,
    opts: ValueOptions,
    present: [&[u8]; 2],
    images: usize,
) -> Result<Rows, DecodeError> {
    let width = schema.columns.len();
    let mut rows = Rows {
        data: Vec::with_capacity(c.remaining() + c.remaining() / 2),
        spans: Vec::with_capacity(width * images * 4),
        columns: width,
        images,
    };
    // Cells cost a `Span` each whether or not the image carries them, so a row that
    // takes few bytes can still cost many; the budget keeps a hostile event's decoded
    // form within a fixed multiple of its size. Rows with every column present (FULL
    // images, which the live source requires) use at most 8 spans per byte.
    let span_budget = c
        .remaining()
        .saturating_mul(MAX_SPANS_PER_BYTE)
        .max(width * images);
    while !c.is_empty() {
        let row_start = c.offset();
        for (image, bitmap) in present.iter().enumerate().take(images) {
            let partial_json = if lay.partial && image == 1 {
                read_partial_header(c, schema, bitmap)?
            } else {
                false
            };
            decode_image(c, schema, bitmap, &mut rows, opts, partial_json)?;
        }
        // A row that reads no bytes (no column present, so no null bitmap and no
        // values) would repeat forever on the same input.
        if c.offset() == row_start {
            return Err(DecodeError::Malformed {
                what: "rows event column bitmap",
                at: row_start,
                detail: format!(
                    "no column of `{}` is present, so a row takes no bytes",
                    schema.qualified_name()
                ),
            });
        }
        if rows.spans.len() > span_budget {
            return Err(DecodeError::Malformed {
                what: "rows event",
                at: row_start,
                detail: format!(
                    "rows of `{}` ({width} columns) decode to more than {MAX_SPANS_PER_BYTE} \
                     cells per byte of the event",
                    schema.qualified_name()
                ),
            });
        }
    }
    Ok(rows)
}

/// PARTIAL_UPDATE_ROWS after images start with value options; JSON diffs are refused.
fn read_partial_header(
    c: &mut Cursor<'_>,
    schema: &TableSchema,
    present: &[u8],
) -> Result<bool, DecodeError> {
    let opts = c.lenenc("partial update value options")?.unwrap_or(0);
    if opts & 1 == 0 {
        return Ok(false);
    }
    let json_cols: Vec<&Column> = schema
        .columns
        .iter()
        .enumerate()
        .filter(|(i, col)| {
            matches!(col.kind, ColumnKind::Json { .. }) && present[i / 8] & (1 << (i % 8)) != 0
        })
        .map(|(_, col)| col)
        .collect();
    let bits = c.take(json_cols.len().div_ceil(8), "partial JSON bitmap")?;
    for (n, col) in json_cols.iter().enumerate() {
        if bits[n / 8] & (1 << (n % 8)) != 0 {
            return Err(DecodeError::Unsupported(format!(
                "partial JSON update of `{}`.`{}` (binlog_row_value_options=PARTIAL_JSON); \
                 set binlog_row_value_options='' on the server",
                schema.qualified_name(),
                col.name
            )));
        }
    }
    Ok(true)
}

fn decode_image(
    c: &mut Cursor<'_>,
    schema: &TableSchema,
    present: &[u8],
    rows: &mut Rows,
    opts: ValueOptions,
    _partial: bool,
) -> Result<(), DecodeError> {
    let n_present = present
        .iter()
        .map(|b| b.count_ones() as usize)
        .sum::<usize>();
    let nulls = c.take(n_present.div_ceil(8), "row null bitmap")?;
    let mut k = 0usize;
    for (i, col) in schema.columns.iter().enumerate() {
        if present[i / 8] & (1 << (i % 8)) == 0 {
            rows.spans.push(Span {
                start: 0,
                len: Span::ABSENT,
            });
            continue;
        }
        let is_null = nulls[k / 8] & (1 << (k % 8)) != 0;
        k += 1;
        if is_null || matches!(col.kind, ColumnKind::Null) {
            rows.spans.push(Span {
                start: 0,
                len: Span::NULL,
            });
            continue;
        }
        let start = rows.data.len();
        decode_value(c, col, &mut rows.data, opts).map_err(|e| match e {
            DecodeError::Truncated {
                at,
                needed,
                available,
                ..
            } => DecodeError::SchemaMismatch {
                table: schema.qualified_name(),
                detail: format!(
                    "value of column {} (`{}`, {}) runs past the event at byte {at}: \
                     needs {needed} bytes, {available} left",
                    i + 1,
                    col.name,
                    col.sql_type
                ),
            },
            other => other,
        })?;
        let len = rows.data.len() - start;
        if rows.data.len() > u32::MAX as usize - 2 {
            return Err(DecodeError::Unsupported(
                "rows event renders to more than 4 GiB of text".into(),
            ));
        }
        rows.spans.push(Span {
            start: start as u32,
            len: len as u32,
        });
    }
    Ok(())
}

/// Appends one value's text.
#[inline]
fn decode_value(
    c: &mut Cursor<'_>,
    col: &Column,
    out: &mut Vec<u8>,
    opts: ValueOptions,
) -> Result<(), DecodeError> {
    match col.kind {
        ColumnKind::Int { bytes } => {
            let n = usize::from(bytes);
            let raw = c.uint_n(n, "integer value")?;
            if col.unsigned {
                push_u64(out, raw);
            } else {
                let shift = 64 - 8 * n as u32;
                push_i64(out, ((raw << shift) as i64) >> shift);
            }
        }
        ColumnKind::Float => {
            push_float(out, f32::from_bits(c.u32("FLOAT value")?));
        }
        ColumnKind::Double => {
            push_double(out, f64::from_bits(c.u64("DOUBLE value")?));
        }
        ColumnKind::Decimal { precision, scale } => read_decimal(c, precision, scale, out)?,
        ColumnKind::Year => temporal::read_year(c, out)?,
        ColumnKind::Date => temporal::read_date(c, out)?,
        ColumnKind::Time { fsp, old } => {
            if old {
                temporal::read_time_old(c, out)?
            } else {
                temporal::read_time2(c, fsp, out)?
            }
        }
        ColumnKind::DateTime { fsp, old } => {
            if old {
                temporal::read_datetime_old(c, out)?
            } else {
                temporal::read_datetime2(c, fsp, out)?
            }
        }
        ColumnKind::Timestamp { fsp, old } => {
            if old {
                temporal::read_timestamp_old(c, opts.tz_offset_secs, out)?
            } else {
                temporal::read_timestamp2(c, fsp, opts.tz_offset_secs, out)?
            }
        }
        ColumnKind::Bit { bits } => {
            let n = usize::from(bits.div_ceil(8));
            let s = c.take(n, "BIT value")?;
            if n > 8 {
                return Err(DecodeError::Malformed {
                    what: "BIT value",
                    at: c.offset(),
                    detail: format!("BIT({bits}) is wider than 64 bits"),
                });
            }
            push_u64(out, super::cursor::be_uint(s));
        }
        ColumnKind::Char { max_bytes } => {
            let n = if max_bytes > 255 {
                c.u16("CHAR length")? as usize
            } else {
                c.u8("CHAR length")? as usize
            };
            let raw = c.take(n, "CHAR value")?;
            push_stringish(out, raw, col, Some(usize::from(max_bytes)));
        }
        ColumnKind::VarChar { max_bytes } => {
            let n = if max_bytes > 255 {
                c.u16("VARCHAR length")? as usize
            } else {
                c.u8("VARCHAR length")? as usize
            };
            let raw = c.take(n, "VARCHAR value")?;
            push_stringish(out, raw, col, None);
        }
        ColumnKind::Blob { len_bytes } => {
            let n = c.uint_n(usize::from(len_bytes).clamp(1, 4), "BLOB length")? as usize;
            let raw = c.take(n, "BLOB value")?;
            push_stringish(out, raw, col, None);
        }
        ColumnKind::Enum { pack_len } => {
            let v = c.uint_n(usize::from(pack_len).clamp(1, 2), "ENUM value")?;
            push_enum(out, v, col.labels.as_deref());
        }
        ColumnKind::Set { pack_len } => {
            let v = c.uint_n(usize::from(pack_len).clamp(1, 8), "SET value")?;
            push_set(out, v, col.labels.as_deref());
        }
        ColumnKind::Json { len_bytes } => {
            let n = c.uint_n(usize::from(len_bytes).clamp(1, 4), "JSON length")? as usize;
            let at = c.offset();
            let raw = c.take(n, "JSON value")?;
            push_json(out, raw, at)?;
        }
        ColumnKind::Geometry { len_bytes } => {
            let n = c.uint_n(usize::from(len_bytes).clamp(1, 4), "GEOMETRY length")? as usize;
            out.extend_from_slice(c.take(n, "GEOMETRY value")?);
        }
        ColumnKind::Vector { len_bytes } => {
            let n = c.uint_n(usize::from(len_bytes).clamp(1, 4), "VECTOR length")? as usize;
            let raw = c.take(n, "VECTOR value")?;
            push_vector(out, raw);
        }
        ColumnKind::Null => {}
    }
    Ok(())
}

/// CHAR/VARCHAR/BLOB bytes: refined types, binary padding or transcoded text.
#[inline]
fn push_stringish(out: &mut Vec<u8>, raw: &[u8], col: &Column, fixed: Option<usize>) {
    match col.refinement {
        Some(Refinement::Uuid) => return push_uuid(out, raw),
        Some(Refinement::Inet6) => return push_inet6(out, raw),
        Some(Refinement::Inet4) => return push_inet4(out, raw),
        None => {}
    }
    match (col.charset, fixed) {
        // BINARY(N) is stored without its trailing 0x00 padding; SELECT shows N bytes.
        (Charset::Binary, Some(n)) => {
            out.extend_from_slice(raw);
            for _ in raw.len()..n {
                out.push(0);
            }
        }
        (cs, _) => push_text(out, raw, cs),
    }
}

/// VECTOR as MySQL's `VECTOR_TO_STRING` prints it: `[1.10000e+00,2.20000e+00]`.
fn push_vector(out: &mut Vec<u8>, raw: &[u8]) {
    out.push(b'[');
    for (i, f) in raw.chunks_exact(4).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let v = f32::from_le_bytes([f[0], f[1], f[2], f[3]]);
        let s = format!("{v:.5e}");
        // Rust prints e0 / e-1; MySQL prints e+00 / e-01.
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = e.parse().unwrap_or(0);
        out.extend_from_slice(m.as_bytes());
        out.extend_from_slice(
            format!("e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs()).as_bytes(),
        );
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Cell, Column};
    use proptest::prelude::*;
    use std::sync::Arc;

    /// A value of one generated column: its binlog bytes and the text `SELECT` prints.
    #[derive(Debug, Clone)]
    struct Gen {
        kind: ColumnKind,
        unsigned: bool,
        charset: Charset,
        labels: Option<Vec<String>>,
        bytes: Vec<u8>,
        text: Option<Vec<u8>>,
    }

    fn int_col() -> impl Strategy<Value = Gen> {
        (
            prop::sample::select(vec![1u8, 2, 3, 4, 8]),
            any::<bool>(),
            any::<u64>(),
        )
            .prop_map(|(n, unsigned, raw)| {
                let bits = 8 * u32::from(n);
                let mask = if n == 8 { u64::MAX } else { (1u64 << bits) - 1 };
                let v = raw & mask;
                let text = if unsigned {
                    v.to_string()
                } else {
                    let shift = 64 - bits;
                    (((v << shift) as i64) >> shift).to_string()
                };
                Gen {
                    kind: ColumnKind::Int { bytes: n },
                    unsigned,
                    charset: Charset::Unknown,
                    labels: None,
                    bytes: v.to_le_bytes()[..usize::from(n)].to_vec(),
                    text: Some(text.into_bytes()),
                }
            })
    }

    fn decimal_col() -> impl Strategy<Value = Gen> {
        (
            1u8..=65,
            0u8..=30,
            any::<u128>(),
            any::<u128>(),
            any::<bool>(),
        )
            .prop_map(|(p, s, a, b, neg)| {
                let s = s.min(p);
                let intg = u32::from(p - s).min(38);
                let int = if intg == 0 {
                    0
                } else {
                    a % 10u128.pow(intg.min(38))
                };
                let frac = if s == 0 {
                    0
                } else {
                    b % 10u128.pow(u32::from(s).min(38))
                };
                let mut text = if p - s > 38 {
                    format!("{int}")
                } else {
                    int.to_string()
                };
                if s > 0 {
                    text.push('.');
                    text.push_str(&format!("{:0>w$}", frac, w = usize::from(s)));
                }
                if neg && (int != 0 || frac != 0) {
                    text.insert(0, '-');
                }
                Gen {
                    kind: ColumnKind::Decimal {
                        precision: p,
                        scale: s,
                    },
                    unsigned: false,
                    charset: Charset::Unknown,
                    labels: None,
                    bytes: super::super::decimal::tests::encode(&text, p, s),
                    text: Some(text.into_bytes()),
                }
            })
    }

    fn frac_bytes(micros: u32, fsp: u8) -> Vec<u8> {
        match fsp {
            0 => vec![],
            1 | 2 => vec![(micros / 10_000) as u8],
            3 | 4 => ((micros / 100) as u16).to_be_bytes().to_vec(),
            _ => micros.to_be_bytes()[1..].to_vec(),
        }
    }

    fn cut(micros: u32, fsp: u8) -> u32 {
        let unit = 10u32.pow(6 - u32::from(fsp));
        micros / unit * unit
    }

    fn frac_text(micros: u32, fsp: u8) -> String {
        if fsp == 0 {
            String::new()
        } else {
            format!(".{:06}", micros)[..1 + usize::from(fsp)].to_string()
        }
    }

    fn datetime_col() -> impl Strategy<Value = Gen> {
        (
            1000u64..=9999,
            1u64..=12,
            1u64..=28,
            0u64..24,
            0u64..60,
            0u64..60,
            0u32..1_000_000,
            0u8..=6,
        )
            .prop_map(|(y, mo, d, h, mi, s, us, fsp)| {
                let us = cut(us, fsp);
                let ymd = ((y * 13 + mo) << 5) | d;
                let int = (ymd << 17) | (h << 12) | (mi << 6) | s;
                let mut bytes = (int + 0x80_0000_0000).to_be_bytes()[3..].to_vec();
                bytes.extend(frac_bytes(us, fsp));
                let text = format!(
                    "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{}",
                    frac_text(us, fsp)
                );
                Gen {
                    kind: ColumnKind::DateTime { fsp, old: false },
                    unsigned: false,
                    charset: Charset::Unknown,
                    labels: None,
                    bytes,
                    text: Some(text.into_bytes()),
                }
            })
    }

    fn time_col() -> impl Strategy<Value = Gen> {
        (
            any::<bool>(),
            0i64..=838,
            0i64..60,
            0i64..60,
            0u32..1_000_000,
            0u8..=6,
        )
            .prop_map(|(neg, h, m, s, us, fsp)| {
                let us = cut(us, fsp);
                let neg = neg && (h, m, s, us) != (0, 0, 0, 0);
                let mut packed = (((h << 12) | (m << 6) | s) << 24) + i64::from(us);
                if neg {
                    packed = -packed;
                }
                // MySQL's my_time_packed_to_binary.
                let bytes = match fsp {
                    0 => ((packed >> 24) + 0x80_0000).to_be_bytes()[5..].to_vec(),
                    1 | 2 => {
                        let mut v = ((packed >> 24) + 0x80_0000).to_be_bytes()[5..].to_vec();
                        v.push(((packed % (1 << 24)) / 10_000) as i8 as u8);
                        v
                    }
                    3 | 4 => {
                        let mut v = ((packed >> 24) + 0x80_0000).to_be_bytes()[5..].to_vec();
                        v.extend(((((packed % (1 << 24)) / 100) as i16) as u16).to_be_bytes());
                        v
                    }
                    _ => (packed + 0x8000_0000_0000).to_be_bytes()[2..].to_vec(),
                };
                let text = format!(
                    "{}{h:02}:{m:02}:{s:02}{}",
                    if neg { "-" } else { "" },
                    frac_text(us, fsp)
                );
                Gen {
                    kind: ColumnKind::Time { fsp, old: false },
                    unsigned: false,
                    charset: Charset::Unknown,
                    labels: None,
                    bytes,
                    text: Some(text.into_bytes()),
                }
            })
    }

    fn string_col() -> impl Strategy<Value = Gen> {
        (".{0,40}", any::<bool>()).prop_map(|(s, long): (String, bool)| {
            let max: u16 = if long { 1200 } else { 200 };
            let b = s.as_bytes();
            let b = &b[..b.len().min(usize::from(max))];
            let s = String::from_utf8_lossy(b).into_owned();
            let b = s.as_bytes();
            let mut bytes = if max > 255 {
                (b.len() as u16).to_le_bytes().to_vec()
            } else {
                vec![b.len() as u8]
            };
            bytes.extend_from_slice(b);
            Gen {
                kind: ColumnKind::VarChar { max_bytes: max },
                unsigned: false,
                charset: Charset::Utf8,
                labels: None,
                bytes,
                text: Some(b.to_vec()),
            }
        })
    }

    fn blob_col() -> impl Strategy<Value = Gen> {
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| {
            let mut bytes = (b.len() as u16).to_le_bytes().to_vec();
            bytes.extend_from_slice(&b);
            Gen {
                kind: ColumnKind::Blob { len_bytes: 2 },
                unsigned: false,
                charset: Charset::Binary,
                labels: None,
                bytes,
                text: Some(b),
            }
        })
    }

    fn set_enum_bit_year_col() -> impl Strategy<Value = Gen> {
        (0u8..4, any::<u64>(), 1u16..=64).prop_map(|(which, raw, bits)| {
            let labels: Vec<String> = (0..10).map(|i| format!("l{i}")).collect();
            match which {
                0 => {
                    let idx = raw % 11;
                    let text = if idx == 0 {
                        String::new()
                    } else {
                        labels[idx as usize - 1].clone()
                    };
                    Gen {
                        kind: ColumnKind::Enum { pack_len: 1 },
                        unsigned: false,
                        charset: Charset::Utf8,
                        labels: Some(labels),
                        bytes: vec![idx as u8],
                        text: Some(text.into_bytes()),
                    }
                }
                1 => {
                    let v = raw & 0x3ff;
                    let text: Vec<&str> = (0..10)
                        .filter(|i| v & (1 << i) != 0)
                        .map(|i| labels[i].as_str())
                        .collect();
                    let text = text.join(",");
                    Gen {
                        kind: ColumnKind::Set { pack_len: 2 },
                        unsigned: false,
                        charset: Charset::Utf8,
                        labels: Some(labels.clone()),
                        bytes: (v as u16).to_le_bytes().to_vec(),
                        text: Some(text.into_bytes()),
                    }
                }
                2 => {
                    let v = if bits == 64 {
                        raw
                    } else {
                        raw & ((1 << bits) - 1)
                    };
                    let n = usize::from(bits.div_ceil(8));
                    Gen {
                        kind: ColumnKind::Bit { bits },
                        unsigned: false,
                        charset: Charset::Unknown,
                        labels: None,
                        bytes: v.to_be_bytes()[8 - n..].to_vec(),
                        text: Some(v.to_string().into_bytes()),
                    }
                }
                _ => {
                    let y = (raw % 256) as u8;
                    let text = if y == 0 {
                        "0000".to_string()
                    } else {
                        (1900 + u32::from(y)).to_string()
                    };
                    Gen {
                        kind: ColumnKind::Year,
                        unsigned: false,
                        charset: Charset::Unknown,
                        labels: None,
                        bytes: vec![y],
                        text: Some(text.into_bytes()),
                    }
                }
            }
        })
    }

    fn any_col() -> impl Strategy<Value = Gen> {
        prop_oneof![
            int_col(),
            decimal_col(),
            datetime_col(),
            time_col(),
            string_col(),
            blob_col(),
            set_enum_bit_year_col()
        ]
    }

    /// A table of generated columns and several rows of values for it (NULLs mixed in).
    fn table_and_rows() -> impl Strategy<Value = (Vec<Gen>, Vec<Vec<Option<Gen>>>)> {
        prop::collection::vec(any_col(), 1..12).prop_flat_map(|cols| {
            let n = cols.len();
            let row = prop::collection::vec(prop::option::weighted(0.85, any_col()), n);
            (Just(cols), prop::collection::vec(row, 1..6))
        })
    }

    fn schema_of(cols: &[Gen]) -> TableSchema {
        TableSchema {
            table_id: 1,
            database: "db".into(),
            table: "t".into(),
            columns: cols
                .iter()
                .enumerate()
                .map(|(i, g)| Column {
                    name: format!("c{i}"),
                    type_code: 0,
                    kind: g.kind.clone(),
                    unsigned: g.unsigned,
                    charset: g.charset,
                    collation: None,
                    labels: g.labels.clone().map(Arc::from),
                    refinement: None,
                    sql_type: String::new(),
                    nullable: true,
                })
                .collect(),
            primary_key: vec![],
            names_known: true,
        }
    }

    proptest! {
        /// Random tables and rows, encoded as a WRITE_ROWS_EVENT_V1 body, decode to the
        /// text SELECT would print, cell by cell.
        #[test]
        fn rows_render_as_select_prints((cols, rows) in table_and_rows()) {
            // A value must have its column's kind, so every row repeats the column's generated
            // value; rows differ in their NULLs, values differ across cases.
            let rows: Vec<Vec<Option<Gen>>> = rows
                .into_iter()
                .map(|r| r.into_iter().zip(&cols).map(|(v, c)| v.map(|_| c.clone())).collect())
                .collect();
            let schema = schema_of(&cols);
            let mut body = vec![1, 0, 0, 0, 0, 0, 0, 0];
            body.push(cols.len() as u8);
            body.extend(std::iter::repeat_n(0xffu8, cols.len().div_ceil(8)));
            for r in &rows {
                let mut nulls = vec![0u8; cols.len().div_ceil(8)];
                let mut vals = Vec::new();
                for (i, v) in r.iter().enumerate() {
                    match v {
                        None => nulls[i / 8] |= 1 << (i % 8),
                        Some(g) => vals.extend_from_slice(&g.bytes),
                    }
                }
                body.extend(nulls);
                body.extend(vals);
            }
            let fde = FormatDescription::assumed();
            let decoded = decode(et::WRITE_ROWS_V1, &body, &fde, &schema, ValueOptions::default())
                .expect("generated rows decode");
            prop_assert_eq!(decoded.len(), rows.len());
            for (ri, r) in rows.iter().enumerate() {
                let img = decoded.image(ri, 0);
                for (ci, v) in r.iter().enumerate() {
                    let got = match img.cell(ci) {
                        Cell::Value(b) => Some(b.to_vec()),
                        _ => None,
                    };
                    let want = v.as_ref().and_then(|g| g.text.clone());
                    prop_assert_eq!(got, want, "row {} column {} ({:?})", ri, ci, cols[ci].kind);
                }
            }
            // Any strict prefix of the body is an error, never a panic or a wrong row.
            let cut = body.len() / 2;
            if let Ok(partial) = decode(et::WRITE_ROWS_V1, &body[..cut], &fde, &schema, ValueOptions::default()) {
                prop_assert!(partial.len() < rows.len() || cut >= body.len());
            }
        }
    }

    #[test]
    fn vector_text() {
        let mut out = Vec::new();
        let raw: Vec<u8> = [1.1f32, -1.0, 0.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        push_vector(&mut out, &raw);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[1.10000e+00,-1.00000e+00,0.00000e+00]"
        );
    }
}
