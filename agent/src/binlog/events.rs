//! Bodies of the non-row events the decoder needs: QUERY, ROTATE, XID, GTIDs of both
//! families, GTID lists, ROWS_QUERY / ANNOTATE_ROWS, TRANSACTION_PAYLOAD and MariaDB's
//! compressed events.
//!
//! mysql_common returns nothing for MariaDB events 160-164, so they are parsed here from
//! MariaDB's documented layouts. Every parser takes the event body (header and checksum
//! already removed) and the post-header length the FORMAT_DESCRIPTION declared.

use std::io::Read;

use super::cursor::Cursor;
use super::error::DecodeError;
use super::{FormatDescription, HEADER_LEN, event_type};
use crate::gtid::{MariadbGtid, MariadbGtidState, MysqlGtid, MysqlGtidSet, Uuid};

/// Hard cap on what one compressed event may expand to (a 1 GiB event is MySQL's own
/// `max_allowed_packet` ceiling); a bigger claim is treated as corruption.
const MAX_DECOMPRESSED: usize = 1 << 30;

/// A QUERY event: DDL, `BEGIN`, `COMMIT`, or a statement-format DML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryEvent {
    /// Default database when the statement ran.
    pub database: String,
    /// Statement text.
    pub sql: String,
    /// Server error code the statement ended with (0 on success).
    pub error_code: u16,
    /// Whether a MySQL 8 atomic DDL carries an XID (its commit is the statement itself).
    pub ddl_xid: Option<u64>,
}

/// Parses a QUERY event body.
pub fn parse_query(body: &[u8], fde: &FormatDescription) -> Result<QueryEvent, DecodeError> {
    let post = fde.post_header_len(event_type::QUERY).unwrap_or(13);
    let mut c = Cursor::new(body, HEADER_LEN);
    c.skip(8, "QUERY thread id and exec time")?;
    let db_len = c.u8("QUERY database length")? as usize;
    let error_code = c.u16("QUERY error code")?;
    let status_len = if post >= 13 {
        c.u16("QUERY status vars length")? as usize
    } else {
        0
    };
    c.skip(usize::from(post).saturating_sub(13), "QUERY post-header")?;
    let status = c.take(status_len, "QUERY status vars")?;
    let ddl_xid = scan_status_vars(status);
    let db = c.take(db_len, "QUERY database")?;
    c.skip(1, "QUERY database terminator")?;
    let sql = c.take_rest();
    Ok(QueryEvent {
        database: String::from_utf8_lossy(db).into_owned(),
        sql: String::from_utf8_lossy(sql).into_owned(),
        error_code,
        ddl_xid,
    })
}

/// Walks QUERY status variables far enough to find `Q_DDL_LOGGED_WITH_XID`. Stops quietly
/// at a code it does not know: the database and SQL positions do not depend on it.
fn scan_status_vars(mut s: &[u8]) -> Option<u64> {
    fn fixed(s: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
        (s.len() >= n).then(|| s.split_at(n))
    }
    while let Some((&code, rest)) = s.split_first() {
        let skip = match code {
            0 | 3 | 10 => 4,
            1 | 9 | 129 => 8,
            2 => 1 + usize::from(*rest.first()?) + 1,
            4 => 6,
            5 | 6 => 1 + usize::from(*rest.first()?),
            7 | 8 | 18 => 2,
            11 => {
                let u = usize::from(*rest.first()?);
                let h = usize::from(*rest.get(1 + u)?);
                2 + u + h
            }
            12 => {
                let n = *rest.first()?;
                let mut off = 1;
                if n != 254 {
                    for _ in 0..n {
                        let end = rest.get(off..)?.iter().position(|&b| b == 0)?;
                        off += end + 1;
                    }
                }
                off
            }
            13 | 128 => 3,
            16 | 19 | 20 | 130 => 1,
            17 => {
                let (v, _) = fixed(rest, 8)?;
                let xid = u64::from_le_bytes(v.try_into().ok()?);
                return Some(xid);
            }
            _ => return None,
        };
        s = rest.get(skip..)?;
    }
    None
}

/// A ROTATE event: the next binlog file and the position in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotateEvent {
    /// Position in the next file.
    pub position: u64,
    /// Next file name.
    pub file: String,
}

/// Parses a ROTATE event body.
pub fn parse_rotate(body: &[u8]) -> Result<RotateEvent, DecodeError> {
    let mut c = Cursor::new(body, HEADER_LEN);
    let position = c.u64("ROTATE position")?;
    let name = c.take_rest();
    if name.is_empty() || name.contains(&0) {
        return Err(DecodeError::Malformed {
            what: "ROTATE file name",
            at: HEADER_LEN + 8,
            detail: "empty or contains NUL".into(),
        });
    }
    Ok(RotateEvent {
        position,
        file: String::from_utf8_lossy(name).into_owned(),
    })
}

/// Parses an XID event body.
pub fn parse_xid(body: &[u8]) -> Result<u64, DecodeError> {
    let mut c = Cursor::new(body, HEADER_LEN);
    let xid = c.u64("XID")?;
    if !c.is_empty() {
        return Err(DecodeError::Malformed {
            what: "XID event",
            at: c.offset(),
            detail: format!("{} bytes after the XID", c.remaining()),
        });
    }
    Ok(xid)
}

/// A MySQL GTID or ANONYMOUS_GTID event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlGtidEvent {
    /// The GTID; `None` for ANONYMOUS_GTID.
    pub gtid: Option<MysqlGtid>,
    /// Commit time on this server, microseconds since the epoch (MySQL 8.0.1+).
    pub immediate_commit_us: Option<u64>,
}

/// Parses a GTID (33) or ANONYMOUS_GTID (34) body.
pub fn parse_mysql_gtid(body: &[u8], anonymous: bool) -> Result<MysqlGtidEvent, DecodeError> {
    let mut c = Cursor::new(body, HEADER_LEN);
    c.skip(1, "GTID flags")?;
    let uuid = Uuid(
        c.take(16, "GTID server uuid")?
            .try_into()
            .map_err(|_| DecodeError::Unsupported("GTID uuid".into()))?,
    );
    let gno = c.u64("GTID number")?;
    let mut immediate_commit_us = None;
    // Logical clock (type 2 + two i64) since 5.7, then commit timestamps since 8.0.1.
    if c.remaining() >= 17 {
        c.skip(17, "GTID logical clock")?;
        if c.remaining() >= 7 {
            let mut ts = c.uint_n(7, "GTID immediate commit timestamp")?;
            if ts & (1 << 55) != 0 {
                ts &= !(1 << 55);
                c.skip(7, "GTID original commit timestamp")?;
            }
            immediate_commit_us = Some(ts);
        }
    }
    Ok(MysqlGtidEvent {
        gtid: (!anonymous).then(|| MysqlGtid {
            uuid,
            tag: String::new(),
            gno,
        }),
        immediate_commit_us,
    })
}

/// Parses a PREVIOUS_GTIDS body (tagged or untagged encoding).
pub fn parse_previous_gtids(body: &[u8]) -> Result<MysqlGtidSet, DecodeError> {
    let mut c = Cursor::new(body, HEADER_LEN);
    let raw = c.u64("PREVIOUS_GTIDS count")?;
    // MySQL 8.4 marks the tagged encoding in the top byte; the count then sits in the
    // middle six bytes, after a format byte.
    let tagged = raw >> 56 == 1;
    let n_sids = if tagged {
        (raw >> 8) & 0x0000_ffff_ffff_ffff
    } else {
        raw
    };
    let mut set = MysqlGtidSet::default();
    for _ in 0..n_sids {
        let uuid = Uuid(
            c.take(16, "PREVIOUS_GTIDS uuid")?
                .try_into()
                .map_err(|_| DecodeError::Unsupported("uuid".into()))?,
        );
        let tag = if tagged {
            let len = c.u8("PREVIOUS_GTIDS tag length")?;
            // A one-byte varlen integer: the value sits above a 0 marker bit. Tags are at
            // most 32 characters, so longer encodings do not occur.
            if len & 1 != 0 {
                return Err(DecodeError::Malformed {
                    what: "PREVIOUS_GTIDS tag length",
                    at: c.offset() - 1,
                    detail: format!("{len:#04x} is not a one-byte length"),
                });
            }
            let tag = c.take(usize::from(len >> 1), "PREVIOUS_GTIDS tag")?;
            String::from_utf8_lossy(tag).into_owned()
        } else {
            String::new()
        };
        let n = c.u64("PREVIOUS_GTIDS interval count")?;
        for _ in 0..n {
            let start = c.u64("PREVIOUS_GTIDS interval start")?;
            let end = c.u64("PREVIOUS_GTIDS interval end")?;
            if start == 0 || end <= start {
                return Err(DecodeError::Malformed {
                    what: "PREVIOUS_GTIDS interval",
                    at: c.offset() - 16,
                    detail: format!("[{start}, {end}) is empty or starts at 0"),
                });
            }
            set.add_interval(uuid, &tag, start, end);
        }
    }
    Ok(set)
}

/// MariaDB GTID event flag: a transaction without BEGIN/COMMIT (DDL, non-transactional).
pub const MARIADB_FL_STANDALONE: u8 = 1;
const MARIADB_FL_GROUP_COMMIT_ID: u8 = 2;

/// A MariaDB GTID event (162).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MariadbGtidEvent {
    /// The GTID (server id comes from the event header).
    pub gtid: MariadbGtid,
    /// Event flags (`FL_STANDALONE` = 1, ...).
    pub flags: u8,
}

/// Parses a MariaDB GTID body.
pub fn parse_mariadb_gtid(body: &[u8], server_id: u32) -> Result<MariadbGtidEvent, DecodeError> {
    let mut c = Cursor::new(body, HEADER_LEN);
    let seq = c.u64("MariaDB GTID sequence number")?;
    let domain = c.u32("MariaDB GTID domain")?;
    let flags = c.u8("MariaDB GTID flags")?;
    if flags & MARIADB_FL_GROUP_COMMIT_ID != 0 {
        c.skip(8, "MariaDB GTID commit id")?;
    }
    Ok(MariadbGtidEvent {
        gtid: MariadbGtid {
            domain,
            server_id,
            seq,
        },
        flags,
    })
}

/// Parses a MariaDB GTID_LIST body (163) into a replication state.
pub fn parse_mariadb_gtid_list(body: &[u8]) -> Result<MariadbGtidState, DecodeError> {
    let mut c = Cursor::new(body, HEADER_LEN);
    let n = c.u32("GTID_LIST count")? & 0x0fff_ffff;
    let mut st = MariadbGtidState::default();
    for _ in 0..n {
        let domain = c.u32("GTID_LIST domain")?;
        let server_id = c.u32("GTID_LIST server id")?;
        let seq = c.u64("GTID_LIST sequence number")?;
        st.update(MariadbGtid {
            domain,
            server_id,
            seq,
        });
    }
    Ok(st)
}

/// Parses a MariaDB BINLOG_CHECKPOINT body (161): the oldest binlog still needed for
/// crash recovery.
pub fn parse_binlog_checkpoint(body: &[u8]) -> Result<String, DecodeError> {
    let mut c = Cursor::new(body, HEADER_LEN);
    let n = c.u32("BINLOG_CHECKPOINT name length")? as usize;
    let name = c.take(n, "BINLOG_CHECKPOINT name")?;
    Ok(String::from_utf8_lossy(name).into_owned())
}

/// Text of a ROWS_QUERY (MySQL) event: the statement that produced the next rows.
pub fn parse_rows_query(body: &[u8]) -> Result<String, DecodeError> {
    let mut c = Cursor::new(body, HEADER_LEN);
    c.skip(1, "ROWS_QUERY length")?;
    Ok(String::from_utf8_lossy(c.take_rest()).into_owned())
}

/// Text of a MariaDB ANNOTATE_ROWS event.
pub fn parse_annotate_rows(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// Decompresses a MySQL TRANSACTION_PAYLOAD body into the inner events' bytes (which
/// carry no checksums).
pub fn decompress_transaction_payload(body: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut c = Cursor::new(body, HEADER_LEN);
    let mut compression = None;
    let mut uncompressed_size = None;
    loop {
        let at = c.offset();
        let field =
            c.lenenc("TRANSACTION_PAYLOAD field type")?
                .ok_or_else(|| DecodeError::Malformed {
                    what: "TRANSACTION_PAYLOAD field type",
                    at,
                    detail: "NULL".into(),
                })?;
        if field == 0 {
            break;
        }
        let len = c.lenenc_len("TRANSACTION_PAYLOAD field length")?;
        let mut v = Cursor::new(c.take(len, "TRANSACTION_PAYLOAD field")?, c.offset() - len);
        let value = v.lenenc("TRANSACTION_PAYLOAD field value")?.unwrap_or(0);
        match field {
            2 => compression = Some(value),
            3 => uncompressed_size = Some(value),
            _ => {}
        }
    }
    let payload = c.take_rest();
    let limit = uncompressed_size
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        .unwrap_or(MAX_DECOMPRESSED)
        .min(MAX_DECOMPRESSED);
    match compression {
        Some(255) => Ok(payload.to_vec()),
        Some(0) | None => {
            let dec =
                zstd::stream::read::Decoder::new(payload).map_err(|e| DecodeError::Malformed {
                    what: "TRANSACTION_PAYLOAD zstd frame",
                    at: HEADER_LEN,
                    detail: e.to_string(),
                })?;
            read_bounded(dec, limit, "TRANSACTION_PAYLOAD zstd data")
        }
        Some(other) => Err(DecodeError::Unsupported(format!(
            "TRANSACTION_PAYLOAD compression type {other}"
        ))),
    }
}

fn read_bounded<R: Read>(r: R, limit: usize, what: &'static str) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    r.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Malformed {
            what,
            at: HEADER_LEN,
            detail: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(DecodeError::Malformed {
            what,
            at: HEADER_LEN,
            detail: format!("expands past {limit} bytes"),
        });
    }
    Ok(out)
}

/// Inflates one MariaDB compressed record: a header byte `0x80 | algorithm << 4 | n`, an
/// `n`-byte big-endian original length, then a zlib stream. `at` is the record's offset in
/// the event, for errors.
pub fn mariadb_uncompress(rec: &[u8], at: usize) -> Result<Vec<u8>, DecodeError> {
    let mut c = Cursor::new(rec, at);
    let head = c.u8("compressed record header")?;
    if head & 0x80 == 0 || head & 0x70 != 0 {
        return Err(DecodeError::Malformed {
            what: "compressed record header",
            at,
            detail: format!("{head:#04x} is not a zlib record header"),
        });
    }
    let lenlen = usize::from(head & 0x07);
    if !(1..=4).contains(&lenlen) {
        return Err(DecodeError::Malformed {
            what: "compressed record header",
            at,
            detail: format!("length of length {lenlen} is not 1..4"),
        });
    }
    let len = c.be_uint_n(lenlen, "compressed record length")? as usize;
    let out = read_bounded(
        flate2::read::ZlibDecoder::new(c.rest()),
        len.min(MAX_DECOMPRESSED),
        "compressed record zlib data",
    )?;
    if out.len() != len {
        return Err(DecodeError::Malformed {
            what: "compressed record",
            at,
            detail: format!("inflates to {} bytes, header says {len}", out.len()),
        });
    }
    Ok(out)
}

/// Rebuilds a MariaDB QUERY_COMPRESSED body as a plain QUERY body.
pub fn uncompress_query_body(body: &[u8], fde: &FormatDescription) -> Result<Vec<u8>, DecodeError> {
    let post = usize::from(fde.post_header_len(event_type::QUERY).unwrap_or(13));
    let mut c = Cursor::new(body, HEADER_LEN);
    let head_at = c.offset();
    let head = c.take(post, "QUERY post-header")?;
    // Read the lengths through a cursor, not by index: a hostile format description may
    // declare a post-header shorter than the fields read here.
    let mut h = Cursor::new(head, head_at);
    h.skip(8, "QUERY thread id and exec time")?;
    let db_len = usize::from(h.u8("QUERY database length")?);
    h.skip(2, "QUERY error code")?;
    let status_len = if post >= 13 {
        usize::from(h.u16("QUERY status vars length")?)
    } else {
        0
    };
    let status_db = c.take(status_len + db_len + 1, "QUERY status vars and database")?;
    let at = c.offset();
    let sql = mariadb_uncompress(c.rest(), at)?;
    let mut out = Vec::with_capacity(post + status_db.len() + sql.len());
    out.extend_from_slice(head);
    out.extend_from_slice(status_db);
    out.extend_from_slice(&sql);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_gtid_with_commit_id() {
        let mut body = Vec::new();
        body.extend_from_slice(&42u64.to_le_bytes());
        body.extend_from_slice(&3u32.to_le_bytes());
        body.push(MARIADB_FL_GROUP_COMMIT_ID);
        body.extend_from_slice(&7u64.to_le_bytes());
        let g = parse_mariadb_gtid(&body, 9).unwrap();
        assert_eq!(g.gtid.to_string(), "3-9-42");
        assert!(parse_mariadb_gtid(&body[..10], 9).is_err());
    }

    /// Found by `scripts/fuzz.sh`: a format description declaring a 7-byte QUERY
    /// post-header made the QUERY_COMPRESSED path index past it and panic.
    #[test]
    fn compressed_query_with_a_short_declared_post_header_is_an_error() {
        for post in [0u8, 7, 8, 10, 12] {
            let mut fde = FormatDescription::assumed();
            fde.post_header_lens = vec![0; 40];
            fde.post_header_lens[usize::from(event_type::QUERY) - 1] = post;
            let body = vec![0u8; usize::from(post) + 4];
            assert!(
                uncompress_query_body(&body, &fde).is_err(),
                "post-header {post} must be refused, not indexed past"
            );
        }
    }

    #[test]
    fn mariadb_compressed_record_round_trip() {
        use std::io::Write;
        let text = b"INSERT INTO t VALUES (1), (2), (3), (4)".repeat(10);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&text).unwrap();
        let packed = z.finish().unwrap();
        let mut rec = vec![0x82, (text.len() >> 8) as u8, text.len() as u8];
        rec.extend_from_slice(&packed);
        assert_eq!(mariadb_uncompress(&rec, 0).unwrap(), text);
        // A lying length header is an error, not a silent truncation.
        rec[2] ^= 1;
        assert!(mariadb_uncompress(&rec, 0).is_err());
        assert!(mariadb_uncompress(&[0x90, 1, 0], 0).is_err());
    }

    #[test]
    fn status_vars_find_ddl_xid() {
        let mut s = vec![0u8, 0, 0, 0, 0]; // Q_FLAGS2
        s.push(17);
        s.extend_from_slice(&99u64.to_le_bytes());
        assert_eq!(scan_status_vars(&s), Some(99));
        assert_eq!(scan_status_vars(&[200, 1, 2]), None);
    }
}
