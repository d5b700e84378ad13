//! Binlog decoding: framing, checksums, event bodies and row values.
//!
//! The decoder works on raw event bytes (19-byte header + body + optional CRC32), the same
//! whether they come from a file ([`mod@file`]) or from a replication stream
//! (`crate::source`). Invariants:
//! - every event's CRC32 is verified when the format description says CRC32;
//! - no input makes it panic: short or corrupt bytes become a [`BinlogError`] naming the
//!   file, the event's offset and what was being read;
//! - row values are rendered straight from the rows event bytes into one packed buffer
//!   per rows event (see [`crate::event::Rows`]), never one allocation per value.

pub mod cursor;
pub mod decimal;
pub mod decoder;
pub mod error;
pub mod events;
pub mod file;
pub mod float;
pub mod jsonb;
pub mod rows;
pub mod schema;
pub mod table_map;
pub mod temporal;
pub mod text;

pub use decoder::{Decoder, DecoderOptions};
pub use error::{BinlogError, DecodeError, Location};

use cursor::Cursor;

/// The four bytes every binlog file starts with.
pub const BINLOG_MAGIC: [u8; 4] = [0xfe, b'b', b'i', b'n'];

/// Size of the common event header (binlog version 4).
pub const HEADER_LEN: usize = 19;

/// Size of the CRC32 trailer.
pub const CHECKSUM_LEN: usize = 4;

/// Header flag of events the server made up for the stream (fake ROTATE and the like).
pub const LOG_EVENT_ARTIFICIAL_F: u16 = 0x20;

/// Binlog event type codes (MySQL and MariaDB).
#[allow(missing_docs)]
pub mod event_type {
    pub const START_V3: u8 = 1;
    pub const QUERY: u8 = 2;
    pub const STOP: u8 = 3;
    pub const ROTATE: u8 = 4;
    pub const INTVAR: u8 = 5;
    pub const RAND: u8 = 13;
    pub const USER_VAR: u8 = 14;
    pub const FORMAT_DESCRIPTION: u8 = 15;
    pub const XID: u8 = 16;
    pub const BEGIN_LOAD_QUERY: u8 = 17;
    pub const EXECUTE_LOAD_QUERY: u8 = 18;
    pub const TABLE_MAP: u8 = 19;
    pub const PRE_GA_WRITE_ROWS: u8 = 20;
    pub const PRE_GA_UPDATE_ROWS: u8 = 21;
    pub const PRE_GA_DELETE_ROWS: u8 = 22;
    pub const WRITE_ROWS_V1: u8 = 23;
    pub const UPDATE_ROWS_V1: u8 = 24;
    pub const DELETE_ROWS_V1: u8 = 25;
    pub const INCIDENT: u8 = 26;
    pub const HEARTBEAT: u8 = 27;
    pub const IGNORABLE: u8 = 28;
    pub const ROWS_QUERY: u8 = 29;
    pub const WRITE_ROWS_V2: u8 = 30;
    pub const UPDATE_ROWS_V2: u8 = 31;
    pub const DELETE_ROWS_V2: u8 = 32;
    pub const GTID: u8 = 33;
    pub const ANONYMOUS_GTID: u8 = 34;
    pub const PREVIOUS_GTIDS: u8 = 35;
    pub const TRANSACTION_CONTEXT: u8 = 36;
    pub const VIEW_CHANGE: u8 = 37;
    pub const XA_PREPARE: u8 = 38;
    pub const PARTIAL_UPDATE_ROWS: u8 = 39;
    pub const TRANSACTION_PAYLOAD: u8 = 40;
    pub const HEARTBEAT_V2: u8 = 41;
    pub const GTID_TAGGED: u8 = 42;
    pub const MARIADB_ANNOTATE_ROWS: u8 = 160;
    pub const MARIADB_BINLOG_CHECKPOINT: u8 = 161;
    pub const MARIADB_GTID: u8 = 162;
    pub const MARIADB_GTID_LIST: u8 = 163;
    pub const MARIADB_START_ENCRYPTION: u8 = 164;
    pub const MARIADB_QUERY_COMPRESSED: u8 = 165;
    pub const MARIADB_WRITE_ROWS_COMPRESSED_V1: u8 = 166;
    pub const MARIADB_UPDATE_ROWS_COMPRESSED_V1: u8 = 167;
    pub const MARIADB_DELETE_ROWS_COMPRESSED_V1: u8 = 168;
    pub const MARIADB_WRITE_ROWS_COMPRESSED: u8 = 169;
    pub const MARIADB_UPDATE_ROWS_COMPRESSED: u8 = 170;
    pub const MARIADB_DELETE_ROWS_COMPRESSED: u8 = 171;

    /// Human-readable name of an event type, for errors and logs.
    pub fn name(t: u8) -> &'static str {
        match t {
            START_V3 => "START_EVENT_V3",
            QUERY => "QUERY_EVENT",
            STOP => "STOP_EVENT",
            ROTATE => "ROTATE_EVENT",
            INTVAR => "INTVAR_EVENT",
            RAND => "RAND_EVENT",
            USER_VAR => "USER_VAR_EVENT",
            FORMAT_DESCRIPTION => "FORMAT_DESCRIPTION_EVENT",
            XID => "XID_EVENT",
            BEGIN_LOAD_QUERY => "BEGIN_LOAD_QUERY_EVENT",
            EXECUTE_LOAD_QUERY => "EXECUTE_LOAD_QUERY_EVENT",
            TABLE_MAP => "TABLE_MAP_EVENT",
            PRE_GA_WRITE_ROWS => "PRE_GA_WRITE_ROWS_EVENT",
            PRE_GA_UPDATE_ROWS => "PRE_GA_UPDATE_ROWS_EVENT",
            PRE_GA_DELETE_ROWS => "PRE_GA_DELETE_ROWS_EVENT",
            WRITE_ROWS_V1 => "WRITE_ROWS_EVENT_V1",
            UPDATE_ROWS_V1 => "UPDATE_ROWS_EVENT_V1",
            DELETE_ROWS_V1 => "DELETE_ROWS_EVENT_V1",
            INCIDENT => "INCIDENT_EVENT",
            HEARTBEAT => "HEARTBEAT_EVENT",
            IGNORABLE => "IGNORABLE_EVENT",
            ROWS_QUERY => "ROWS_QUERY_EVENT",
            WRITE_ROWS_V2 => "WRITE_ROWS_EVENT",
            UPDATE_ROWS_V2 => "UPDATE_ROWS_EVENT",
            DELETE_ROWS_V2 => "DELETE_ROWS_EVENT",
            GTID => "GTID_EVENT",
            ANONYMOUS_GTID => "ANONYMOUS_GTID_EVENT",
            PREVIOUS_GTIDS => "PREVIOUS_GTIDS_EVENT",
            TRANSACTION_CONTEXT => "TRANSACTION_CONTEXT_EVENT",
            VIEW_CHANGE => "VIEW_CHANGE_EVENT",
            XA_PREPARE => "XA_PREPARE_LOG_EVENT",
            PARTIAL_UPDATE_ROWS => "PARTIAL_UPDATE_ROWS_EVENT",
            TRANSACTION_PAYLOAD => "TRANSACTION_PAYLOAD_EVENT",
            HEARTBEAT_V2 => "HEARTBEAT_LOG_EVENT_V2",
            GTID_TAGGED => "GTID_TAGGED_LOG_EVENT",
            MARIADB_ANNOTATE_ROWS => "ANNOTATE_ROWS_EVENT",
            MARIADB_BINLOG_CHECKPOINT => "BINLOG_CHECKPOINT_EVENT",
            MARIADB_GTID => "GTID_EVENT (MariaDB)",
            MARIADB_GTID_LIST => "GTID_LIST_EVENT",
            MARIADB_START_ENCRYPTION => "START_ENCRYPTION_EVENT",
            MARIADB_QUERY_COMPRESSED => "QUERY_COMPRESSED_EVENT",
            MARIADB_WRITE_ROWS_COMPRESSED_V1 => "WRITE_ROWS_COMPRESSED_EVENT_V1",
            MARIADB_UPDATE_ROWS_COMPRESSED_V1 => "UPDATE_ROWS_COMPRESSED_EVENT_V1",
            MARIADB_DELETE_ROWS_COMPRESSED_V1 => "DELETE_ROWS_COMPRESSED_EVENT_V1",
            MARIADB_WRITE_ROWS_COMPRESSED => "WRITE_ROWS_COMPRESSED_EVENT",
            MARIADB_UPDATE_ROWS_COMPRESSED => "UPDATE_ROWS_COMPRESSED_EVENT",
            MARIADB_DELETE_ROWS_COMPRESSED => "DELETE_ROWS_COMPRESSED_EVENT",
            _ => "UNKNOWN_EVENT",
        }
    }
}

/// The common 19-byte event header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHeader {
    /// Seconds since the epoch when the statement started.
    pub timestamp: u32,
    /// Event type code (see [`event_type`]).
    pub event_type: u8,
    /// Server that wrote the event.
    pub server_id: u32,
    /// Whole event size, header and checksum included.
    pub event_size: u32,
    /// Offset of the next event in the file (`end_log_pos`); 0 for artificial events.
    pub log_pos: u32,
    /// Event flags.
    pub flags: u16,
}

impl EventHeader {
    /// Parses the header at the start of `raw`.
    pub fn parse(raw: &[u8]) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(raw, 0);
        let h = EventHeader {
            timestamp: c.u32("event header")?,
            event_type: c.u8("event header")?,
            server_id: c.u32("event header")?,
            event_size: c.u32("event header")?,
            log_pos: c.u32("event header")?,
            flags: c.u16("event header")?,
        };
        if (h.event_size as usize) < HEADER_LEN {
            return Err(DecodeError::Malformed {
                what: "event header",
                at: 9,
                detail: format!("event size {} is smaller than the header", h.event_size),
            });
        }
        Ok(h)
    }

    /// Whether the server made this event up for the stream (not in any file).
    pub fn is_artificial(&self) -> bool {
        self.flags & LOG_EVENT_ARTIFICIAL_F != 0 || self.log_pos == 0
    }
}

/// One whole event: header, body and where the body ends (checksum excluded).
#[derive(Debug, Clone, Copy)]
pub struct RawEvent<'a> {
    /// Parsed header.
    pub header: EventHeader,
    /// Header, body and checksum, exactly as read.
    pub bytes: &'a [u8],
    /// The body: after the header, before the checksum (and, for a FORMAT_DESCRIPTION,
    /// before its checksum-algorithm byte).
    pub body: &'a [u8],
}

/// Checksum algorithm named by a FORMAT_DESCRIPTION event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlg {
    /// Events carry no checksum (or the server predates checksums).
    None,
    /// Events end with a CRC32 of everything before it.
    Crc32,
}

/// Splits `bytes` (exactly one event) into header and body, verifying the CRC32 when
/// `checksum` says events carry one.
pub fn frame(bytes: &[u8], checksum: ChecksumAlg) -> Result<RawEvent<'_>, DecodeError> {
    let header = EventHeader::parse(bytes)?;
    if header.event_size as usize != bytes.len() {
        return Err(DecodeError::Truncated {
            what: "event",
            at: bytes.len(),
            needed: header.event_size as usize,
            available: bytes.len(),
        });
    }
    if header.event_type == event_type::FORMAT_DESCRIPTION {
        let (fde_checksum, body) = FormatDescription::split_checksum(bytes)?;
        if fde_checksum == ChecksumAlg::Crc32 {
            // MySQL sets LOG_EVENT_BINLOG_IN_USE_F (0x1) in a live file's FDE after
            // computing its checksum; verify against the flag cleared too.
            if let Err(e) = verify_crc(bytes) {
                let mut copy = bytes.to_vec();
                copy[17] &= !0x01;
                verify_crc(&copy).map_err(|_| e)?;
            }
        }
        return Ok(RawEvent {
            header,
            bytes,
            body,
        });
    }
    let body_end = match checksum {
        ChecksumAlg::Crc32 => {
            if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
                return Err(DecodeError::Truncated {
                    what: "event checksum",
                    at: HEADER_LEN,
                    needed: CHECKSUM_LEN,
                    available: bytes.len() - HEADER_LEN,
                });
            }
            verify_crc(bytes)?;
            bytes.len() - CHECKSUM_LEN
        }
        ChecksumAlg::None => bytes.len(),
    };
    Ok(RawEvent {
        header,
        bytes,
        body: &bytes[HEADER_LEN..body_end],
    })
}

fn verify_crc(bytes: &[u8]) -> Result<(), DecodeError> {
    let (data, tail) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let computed = crc32fast::hash(data);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    Ok(())
}

/// A FORMAT_DESCRIPTION event: how the following events are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatDescription {
    /// Binlog format version (4 for every server since 5.0).
    pub binlog_version: u16,
    /// Server version string, e.g. `10.11.14-MariaDB-log`.
    pub server_version: String,
    /// Common header length (19).
    pub header_len: u8,
    /// Post-header length per event type (index = type - 1).
    pub post_header_lens: Vec<u8>,
    /// Checksum algorithm of the events that follow.
    pub checksum: ChecksumAlg,
}

impl FormatDescription {
    /// The layout assumed before any FORMAT_DESCRIPTION is seen (binlog v4, no checksum).
    pub fn assumed() -> Self {
        FormatDescription {
            binlog_version: 4,
            server_version: String::new(),
            header_len: HEADER_LEN as u8,
            post_header_lens: Vec::new(),
            checksum: ChecksumAlg::None,
        }
    }

    /// Whether the writer was a MariaDB server.
    pub fn is_mariadb(&self) -> bool {
        self.server_version.contains("MariaDB")
    }

    /// Post-header length of `event_type`, if the FORMAT_DESCRIPTION lists it.
    pub fn post_header_len(&self, event_type: u8) -> Option<u8> {
        self.post_header_lens
            .get(usize::from(event_type).checked_sub(1)?)
            .copied()
    }

    /// (checksum algorithm, body without the algorithm byte and CRC) of a whole FDE.
    pub(crate) fn split_checksum(bytes: &[u8]) -> Result<(ChecksumAlg, &[u8]), DecodeError> {
        // binlog_version(2) + server_version(50) + create_timestamp(4) + header_len(1)
        const FIXED: usize = 2 + 50 + 4 + 1;
        let body = bytes.get(HEADER_LEN..).unwrap_or_default();
        if body.len() < FIXED {
            return Err(DecodeError::Truncated {
                what: "FORMAT_DESCRIPTION body",
                at: HEADER_LEN,
                needed: FIXED,
                available: body.len(),
            });
        }
        let version = parse_version(&body[2..52]);
        // Servers from MySQL 5.6.1 / MariaDB 5.3 append one algorithm byte and, unless the
        // algorithm is UNDEF, four CRC bytes, after the post-header lengths.
        if version >= (5, 6, 1) || (version >= (5, 3, 0) && contains(&body[2..52], b"MariaDB")) {
            if body.len() < FIXED + 1 + CHECKSUM_LEN {
                return Err(DecodeError::Truncated {
                    what: "FORMAT_DESCRIPTION checksum",
                    at: HEADER_LEN + body.len(),
                    needed: FIXED + 1 + CHECKSUM_LEN,
                    available: body.len(),
                });
            }
            let alg_at = body.len() - CHECKSUM_LEN - 1;
            let alg = match body[alg_at] {
                0 => ChecksumAlg::None,
                1 => ChecksumAlg::Crc32,
                0xff => ChecksumAlg::None,
                other => {
                    return Err(DecodeError::Malformed {
                        what: "FORMAT_DESCRIPTION checksum algorithm",
                        at: HEADER_LEN + alg_at,
                        detail: format!("unknown algorithm {other}"),
                    });
                }
            };
            Ok((alg, &body[..alg_at]))
        } else {
            Ok((ChecksumAlg::None, body))
        }
    }

    /// Parses a whole FORMAT_DESCRIPTION event (header included).
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (checksum, body) = Self::split_checksum(bytes)?;
        let mut c = Cursor::new(body, HEADER_LEN);
        let binlog_version = c.u16("binlog version")?;
        let sv = c.take(50, "server version")?;
        let end = sv.iter().position(|&b| b == 0).unwrap_or(sv.len());
        let server_version = String::from_utf8_lossy(&sv[..end]).into_owned();
        c.skip(4, "create timestamp")?;
        let header_len = c.u8("header length")?;
        if binlog_version != 4 || usize::from(header_len) != HEADER_LEN {
            return Err(DecodeError::Unsupported(format!(
                "binlog format version {binlog_version} with {header_len}-byte headers \
                 (only version 4 with 19-byte headers, MySQL 5.0 and later, is supported)"
            )));
        }
        let post_header_lens = c.take_rest().to_vec();
        Ok(FormatDescription {
            binlog_version,
            server_version,
            header_len,
            post_header_lens,
            checksum,
        })
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Leading `major.minor.patch` of a server version string.
pub fn parse_version(raw: &[u8]) -> (u32, u32, u32) {
    let mut parts = [0u32; 3];
    let mut idx = 0;
    for &b in raw {
        match b {
            b'0'..=b'9' => {
                parts[idx] = parts[idx]
                    .saturating_mul(10)
                    .saturating_add(u32::from(b - b'0'))
            }
            b'.' if idx < 2 => idx += 1,
            _ => break,
        }
    }
    (parts[0], parts[1], parts[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version(b"10.11.14-MariaDB-log\0\0"), (10, 11, 14));
        assert_eq!(parse_version(b"5.6.35-log"), (5, 6, 35));
        assert_eq!(parse_version(b"8.0.40"), (8, 0, 40));
    }

    #[test]
    fn header_smaller_than_itself_is_refused() {
        let mut raw = [0u8; 19];
        raw[9] = 5;
        assert!(matches!(
            EventHeader::parse(&raw),
            Err(DecodeError::Malformed { .. })
        ));
    }

    #[test]
    fn checksum_mismatch_is_reported() {
        let mut raw = vec![0u8; 19 + 4 + 4];
        raw[4] = event_type::XID;
        raw[9] = raw.len() as u8;
        let crc = crc32fast::hash(&raw[..raw.len() - 4]);
        let n = raw.len();
        raw[n - 4..].copy_from_slice(&crc.to_le_bytes());
        assert!(frame(&raw, ChecksumAlg::Crc32).is_ok());
        raw[20] ^= 1;
        assert!(matches!(
            frame(&raw, ChecksumAlg::Crc32),
            Err(DecodeError::Checksum { .. })
        ));
    }
}
