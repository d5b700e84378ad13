//! Renderings of change events: Canal's FlatMessage and a Debezium-style envelope (JSON),
//! and Canal's protobuf `Entry` (what Canal's TCP protocol carries).
//!
//! The JSON forms are written by hand into a byte buffer (no intermediate
//! `serde_json::Value`): column maps keep table order, as Canal's do, and rendering is
//! one pass per event.

pub mod canal;
pub mod canal_entry;
pub mod debezium;

use crate::event::{Cell, Column};
use crate::json::{push_base64, push_escaped, push_json_string};

/// Output format of JSON messages.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Canal FlatMessage (`canal.mq.flatMessage=true`).
    #[default]
    Canal,
    /// Debezium-style envelope (`before`, `after`, `source`, `op`).
    Debezium,
    /// Canal's protobuf `Entry` (`ROWDATA`), one per message: what `kind =
    /// "canal-server"` serves (and sets itself).
    #[serde(rename = "canal-protobuf")]
    #[value(skip)]
    CanalProtobuf,
}

/// How binary cells become JSON strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryAs {
    /// One character per byte (ISO-8859-1), as Canal does.
    Latin1,
    /// Base64, as Debezium's `binary.handling.mode=bytes` does.
    Base64,
}

/// Appends a cell of `col` as a JSON value: `null`, or a string.
pub(crate) fn push_cell(out: &mut Vec<u8>, cell: Cell<'_>, col: &Column, how: BinaryAs) {
    let binary = col.is_binary();
    match cell {
        Cell::Null | Cell::Absent => out.extend_from_slice(b"null"),
        Cell::Value(b) if col.is_plain_ascii() && b.is_ascii() => {
            // Numbers and dates need neither validation nor escaping (checked ASCII
            // anyway, so a decoder bug cannot produce invalid JSON).
            out.reserve(b.len() + 2);
            out.push(b'"');
            out.extend_from_slice(b);
            out.push(b'"');
        }
        // ASCII (most text) is UTF-8 without the slower validation.
        Cell::Value(b) if !binary && b.is_ascii() => push_escaped(out, b),
        Cell::Value(b) if !binary => match std::str::from_utf8(b) {
            Ok(s) => push_json_string(out, s),
            Err(_) => push_json_string(out, &String::from_utf8_lossy(b)),
        },
        Cell::Value(b) => match how {
            BinaryAs::Latin1 => {
                let s: String = b.iter().map(|&x| char::from(x)).collect();
                push_json_string(out, &s);
            }
            BinaryAs::Base64 => {
                out.push(b'"');
                push_base64(out, b);
                out.push(b'"');
            }
        },
    }
}

pub(crate) fn push_str(out: &mut Vec<u8>, s: &str) {
    push_json_string(out, s);
}

pub(crate) fn push_num(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}
