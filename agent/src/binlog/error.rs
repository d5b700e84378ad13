//! Errors of the binlog decoder.
//!
//! Two layers: [`DecodeError`] says what is wrong inside one event (with the byte offset
//! inside that event); [`BinlogError`] adds where the event sits (file and position) and
//! is what callers see. Callers branch on the kind: a checksum or truncation error means
//! the bytes are bad, a schema mismatch means the decoder must halt rather than guess.

use std::fmt;

/// What is wrong inside one event.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The event ended before a field did.
    #[error("truncated {what}: needs {needed} bytes at byte {at} of the event, {available} left")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Offset inside the event.
        at: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the event.
        available: usize,
    },
    /// A field has a value the format does not allow.
    #[error("malformed {what} at byte {at} of the event: {detail}")]
    Malformed {
        /// The field being read.
        what: &'static str,
        /// Offset inside the event.
        at: usize,
        /// What is wrong.
        detail: String,
    },
    /// The event's CRC32 does not match its bytes.
    #[error("checksum mismatch: event says {stored:#010x}, bytes give {computed:#010x}")]
    Checksum {
        /// CRC32 stored in the event.
        stored: u32,
        /// CRC32 of the event bytes.
        computed: u32,
    },
    /// A well-formed event Sluice cannot turn into changes.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A rows event refers to a table id no TABLE_MAP announced.
    #[error("rows event for table id {0}, which no TABLE_MAP event announced")]
    UnknownTable(u64),
    /// The row does not match the table's known schema: decoding on would misalign values.
    #[error("schema mismatch for `{table}`: {detail}")]
    SchemaMismatch {
        /// `db.table`.
        table: String,
        /// What differs.
        detail: String,
    },
}

/// A decoder failure, located in the binlog.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BinlogError {
    /// One event could not be decoded.
    #[error("{location}: {error}")]
    Event {
        /// Where the event is.
        location: Location,
        /// What is wrong with it (part of this error's message, so not repeated as a
        /// separate cause).
        error: DecodeError,
    },
    /// The file is not a binlog.
    #[error("{file}: not a binlog file (magic bytes are {magic:02x?}, expected fe 62 69 6e)")]
    NotBinlog {
        /// File name.
        file: String,
        /// The first bytes found.
        magic: Vec<u8>,
    },
    /// Reading the file failed.
    #[error("{file}: {source}")]
    Io {
        /// File name.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl BinlogError {
    /// The decode error inside, if this is an event error.
    pub fn decode_error(&self) -> Option<&DecodeError> {
        match self {
            BinlogError::Event { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Where an event sits: binlog file, the event's start offset and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Binlog file name.
    pub file: String,
    /// Offset of the event's first byte in the file.
    pub offset: u64,
    /// Event type name, when the header could be read.
    pub event_type: Option<&'static str>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.file, self.offset)?;
        if let Some(t) = self.event_type {
            write!(f, " ({t})")?;
        }
        Ok(())
    }
}
