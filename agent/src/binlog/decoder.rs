//! The stateful decoder: raw events in, [`SourceItem`]s out, in binlog order.
//!
//! Used by both the offline file reader and the live replication stream. It tracks the
//! format description (checksums, post-header sizes), the table maps of the current
//! file, the open transaction and the executed GTID state. Invariants:
//! - a `Commit` carries a checkpoint at a transaction boundary (file, position just past
//!   the commit, GTID state including the transaction);
//! - a standalone statement (DDL) is wrapped as its own Begin/Change/Commit;
//! - table maps are cleared at every FORMAT_DESCRIPTION, which is safe because replication
//!   always resumes at a transaction boundary and every transaction re-maps its tables.

use std::collections::HashMap;
use std::sync::Arc;

use super::error::DecodeError;
use super::events::{self, MARIADB_FL_STANDALONE};
use super::rows::{self, ValueOptions};
use super::table_map;
use super::{ChecksumAlg, EventHeader, FormatDescription, event_type as et, frame};
use crate::binlog::schema::{DictTable, refine};
use crate::event::{
    ChangeEvent, ChangeKind, Checkpoint, Position, Rows, SourceItem, TableSchema, TxnContext,
};
use crate::gtid::{Gtid, GtidState};

/// Decoder settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecoderOptions {
    /// Offset from UTC, in seconds, in which TIMESTAMP values are printed.
    pub tz_offset_secs: i32,
}

struct CachedTable {
    raw: Vec<u8>,
    schema: Arc<TableSchema>,
    /// Whether the table filter keeps this table's changes.
    captured: bool,
}

/// Which `(database, table)` changes a decoder emits; see [`Decoder::with_table_filter`].
pub type TableFilterFn = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

struct PendingGtid {
    gtid: Option<Gtid>,
    commit_ms: u64,
}

/// Decodes one binlog stream (files in order, or a replication connection).
pub struct Decoder {
    opts: ValueOptions,
    fde: FormatDescription,
    /// Checksum assumed before the first FORMAT_DESCRIPTION (live streams know it from the
    /// server's settings; the first fake ROTATE arrives before any FDE).
    initial_checksum: ChecksumAlg,
    seen_fde: bool,
    file: Arc<str>,
    tables: HashMap<u64, CachedTable>,
    dictionary: HashMap<(String, String), Arc<DictTable>>,
    txn: Option<Arc<TxnContext>>,
    pending: Option<PendingGtid>,
    gtid_state: Option<GtidState>,
    statement: Option<Arc<str>>,
    events: u64,
    filter: Option<TableFilterFn>,
}

/// What one event was, for the caller's bookkeeping (live streams use it to track
/// heartbeats and rotations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// The event header.
    pub header: EventHeader,
}

impl Decoder {
    /// A decoder positioned at the start of `file`.
    pub fn new(file: &str, opts: DecoderOptions) -> Self {
        Decoder {
            opts: ValueOptions {
                tz_offset_secs: opts.tz_offset_secs,
            },
            fde: FormatDescription::assumed(),
            initial_checksum: ChecksumAlg::None,
            seen_fde: false,
            file: Arc::from(file),
            tables: HashMap::new(),
            dictionary: HashMap::new(),
            txn: None,
            pending: None,
            gtid_state: None,
            statement: None,
            events: 0,
            filter: None,
        }
    }

    /// Emits only changes of tables `keep(database, table)` accepts. The others are
    /// skipped before their rows are decoded (their transactions still begin and
    /// commit, so checkpoints move past them); DDL is matched by its target table, or
    /// as `database.` when it names none.
    pub fn with_table_filter(mut self, keep: TableFilterFn) -> Self {
        self.filter = Some(keep);
        self
    }

    /// Whether changes of `database.table` are emitted.
    pub fn captures(&self, database: &str, table: &str) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|keep| keep(database, table))
    }

    /// Sets the checksum to expect before the first FORMAT_DESCRIPTION.
    pub fn with_initial_checksum(mut self, alg: ChecksumAlg) -> Self {
        self.initial_checksum = alg;
        self
    }

    /// Sets the GTID state the stream starts from.
    pub fn with_gtid_state(mut self, state: Option<GtidState>) -> Self {
        self.gtid_state = state;
        self
    }

    /// The current binlog file name.
    pub fn file(&self) -> &Arc<str> {
        &self.file
    }

    /// Switches to a new file (offline reading of several files).
    pub fn start_file(&mut self, file: &str) {
        self.file = Arc::from(file);
        self.tables.clear();
        self.seen_fde = false;
    }

    /// The format description in force.
    pub fn format(&self) -> &FormatDescription {
        &self.fde
    }

    /// Whether a transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }

    /// The GTID state after the last commit, when known.
    pub fn gtid_state(&self) -> Option<&GtidState> {
        self.gtid_state.as_ref()
    }

    /// Number of events decoded.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Installs a dictionary definition for `db.table` (from information_schema).
    pub fn set_dictionary(&mut self, db: &str, table: &str, dict: Arc<DictTable>) {
        self.dictionary
            .insert((db.to_string(), table.to_string()), dict);
        self.tables.clear();
    }

    /// Forgets dictionary definitions (after DDL): of one table, or of all.
    pub fn invalidate_dictionary(&mut self, table: Option<(&str, &str)>) {
        match table {
            Some((d, t)) => {
                self.dictionary.remove(&(d.to_string(), t.to_string()));
            }
            None => self.dictionary.clear(),
        }
        self.tables.clear();
    }

    /// Whether a dictionary definition is installed for `db.table`.
    pub fn has_dictionary(&self, db: &str, table: &str) -> bool {
        self.dictionary
            .contains_key(&(db.to_string(), table.to_string()))
    }

    /// If `bytes` is a TABLE_MAP event, the (database, table) it maps. Lets a live source
    /// fetch a dictionary definition before the event is decoded.
    pub fn peek_table_map(&self, bytes: &[u8]) -> Option<(String, String)> {
        let raw = frame(bytes, self.checksum()).ok()?;
        if raw.header.event_type != et::TABLE_MAP {
            return None;
        }
        let tm = table_map::parse(raw.body, &self.fde).ok()?;
        Some((tm.schema.database.clone(), tm.schema.table.clone()))
    }

    fn checksum(&self) -> ChecksumAlg {
        if self.seen_fde {
            self.fde.checksum
        } else {
            self.initial_checksum
        }
    }

    /// Decodes one whole event that starts at `offset` of the current file, appending
    /// what it means to `out`. On error nothing is appended for this event.
    pub fn decode(
        &mut self,
        bytes: &[u8],
        offset: u64,
        out: &mut Vec<SourceItem>,
    ) -> Result<Decoded, DecodeError> {
        let raw = frame(bytes, self.checksum())?;
        let h = raw.header;
        if h.event_type == et::FORMAT_DESCRIPTION {
            self.fde = FormatDescription::parse(bytes)?;
            self.seen_fde = true;
            self.tables.clear();
        }
        let mark = out.len();
        let result = self.dispatch(h, raw.body, offset, 0, out);
        if result.is_err() {
            out.truncate(mark);
        }
        result?;
        self.events += 1;
        Ok(Decoded { header: h })
    }

    fn position(&self, h: &EventHeader, offset: u64, sub: u32) -> Position {
        Position {
            file: self.file.clone(),
            offset,
            next: if h.log_pos != 0 {
                u64::from(h.log_pos)
            } else {
                offset + u64::from(h.event_size)
            },
            sub,
        }
    }

    fn dispatch(
        &mut self,
        h: EventHeader,
        body: &[u8],
        offset: u64,
        sub: u32,
        out: &mut Vec<SourceItem>,
    ) -> Result<(), DecodeError> {
        match h.event_type {
            // Parsed in `decode`, which has the whole event (the checksum byte sits
            // between the post-header lengths and the CRC).
            et::FORMAT_DESCRIPTION => {}
            et::PRE_GA_WRITE_ROWS | et::PRE_GA_UPDATE_ROWS | et::PRE_GA_DELETE_ROWS => {
                return Err(DecodeError::Unsupported(
                    "pre-GA rows event of a MySQL 5.1/5.2 development release".into(),
                ));
            }
            et::START_V3 => {
                return Err(DecodeError::Unsupported(
                    "binlog format v1/v3 (MySQL 3.23/4.x): no FORMAT_DESCRIPTION event".into(),
                ));
            }
            et::ROTATE => {
                let r = events::parse_rotate(body)?;
                let name: Arc<str> = Arc::from(r.file.as_str());
                if name != self.file {
                    self.file = name;
                    self.tables.clear();
                }
            }
            et::QUERY | et::MARIADB_QUERY_COMPRESSED => {
                let q = if h.event_type == et::QUERY {
                    events::parse_query(body, &self.fde)?
                } else {
                    let plain = events::uncompress_query_body(body, &self.fde)?;
                    events::parse_query(&plain, &self.fde)?
                };
                self.on_query(&h, q, offset, sub, out);
            }
            et::XID => {
                let xid = events::parse_xid(body)?;
                self.commit(&h, Some(xid), out);
            }
            et::GTID | et::ANONYMOUS_GTID => {
                let g = events::parse_mysql_gtid(body, h.event_type == et::ANONYMOUS_GTID)?;
                self.pending = Some(PendingGtid {
                    gtid: g.gtid.map(Gtid::Mysql),
                    commit_ms: g
                        .immediate_commit_us
                        .map_or(u64::from(h.timestamp) * 1000, |us| us / 1000),
                });
            }
            et::GTID_TAGGED => {
                let g = parse_tagged_gtid(body)?;
                self.pending = Some(PendingGtid {
                    gtid: Some(Gtid::Mysql(g.0)),
                    commit_ms: g.1.map_or(u64::from(h.timestamp) * 1000, |us| us / 1000),
                });
            }
            et::PREVIOUS_GTIDS => {
                let set = events::parse_previous_gtids(body)?;
                match &mut self.gtid_state {
                    Some(GtidState::Mysql(s)) => {
                        for (uuid, tag, list) in set.iter() {
                            for &(a, b) in list {
                                s.add_interval(*uuid, tag, a, b);
                            }
                        }
                    }
                    _ => self.gtid_state = Some(GtidState::Mysql(set)),
                }
            }
            et::MARIADB_GTID => {
                let g = events::parse_mariadb_gtid(body, h.server_id)?;
                let standalone = g.flags & MARIADB_FL_STANDALONE != 0;
                self.pending = Some(PendingGtid {
                    gtid: Some(Gtid::Mariadb(g.gtid)),
                    commit_ms: u64::from(h.timestamp) * 1000,
                });
                if !standalone {
                    // MariaDB's GTID event stands in for BEGIN.
                    self.begin(&h, out);
                }
            }
            et::MARIADB_GTID_LIST => {
                let list = events::parse_mariadb_gtid_list(body)?;
                match &mut self.gtid_state {
                    Some(GtidState::Mariadb(s)) => {
                        for g in list.gtids() {
                            if !s.covers(g) {
                                s.update(*g);
                            }
                        }
                    }
                    _ => self.gtid_state = Some(GtidState::Mariadb(list)),
                }
            }
            et::MARIADB_BINLOG_CHECKPOINT => {
                events::parse_binlog_checkpoint(body)?;
            }
            et::MARIADB_ANNOTATE_ROWS => {
                self.statement = Some(Arc::from(events::parse_annotate_rows(body)));
            }
            et::ROWS_QUERY => {
                self.statement = Some(Arc::from(events::parse_rows_query(body)?));
            }
            et::TABLE_MAP => {
                let id = table_map::table_id(body, &self.fde)?;
                let fresh = match self.tables.get(&id) {
                    Some(t) => t.raw != body,
                    None => true,
                };
                if fresh {
                    let tm = table_map::parse(body, &self.fde)?;
                    let mut schema = tm.schema;
                    if let Some(dict) = self
                        .dictionary
                        .get(&(schema.database.clone(), schema.table.clone()))
                    {
                        let mut s = (*schema).clone();
                        match refine(&mut s, dict) {
                            Ok(()) => schema = Arc::new(s),
                            // With names in the binlog the row decodes correctly without
                            // the dictionary, which is just newer than this event.
                            Err(e) if schema.names_known => {
                                tracing::warn!(
                                    message = "Dictionary does not match the binlog; using binlog metadata only.",
                                    table = %schema.qualified_name(),
                                    error = %e,
                                );
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    let captured = self.captures(&schema.database, &schema.table);
                    self.tables.insert(
                        id,
                        CachedTable {
                            raw: body.to_vec(),
                            schema,
                            captured,
                        },
                    );
                }
            }
            et::TRANSACTION_PAYLOAD => {
                let inner = events::decompress_transaction_payload(body)?;
                let mut pos = 0usize;
                let mut n = 0u32;
                while pos < inner.len() {
                    let ih = EventHeader::parse(&inner[pos..])?;
                    let end = pos + ih.event_size as usize;
                    let ev = inner.get(pos..end).ok_or(DecodeError::Truncated {
                        what: "event inside TRANSACTION_PAYLOAD",
                        at: pos,
                        needed: ih.event_size as usize,
                        available: inner.len() - pos,
                    })?;
                    n += 1;
                    let inner_body = &ev[super::HEADER_LEN..];
                    // The outer event's end position is where the transaction resumes.
                    let mut ih2 = ih;
                    ih2.log_pos = h.log_pos;
                    ih2.event_size = h.event_size;
                    self.dispatch(ih2, inner_body, offset, n, out)?;
                    pos = end;
                }
            }
            t if rows::layout(t).is_some() => {
                self.on_rows(&h, body, offset, sub, out)?;
            }
            et::MARIADB_START_ENCRYPTION => {
                return Err(DecodeError::Unsupported(
                    "encrypted binlog (START_ENCRYPTION_EVENT); replicate from the server, \
                     which decrypts, instead of reading the file"
                        .into(),
                ));
            }
            // STOP, INTVAR, RAND, USER_VAR, LOAD data, INCIDENT, HEARTBEAT, IGNORABLE,
            // TRANSACTION_CONTEXT, VIEW_CHANGE, XA_PREPARE: nothing to emit.
            _ => {}
        }
        Ok(())
    }

    fn begin(&mut self, h: &EventHeader, out: &mut Vec<SourceItem>) -> Arc<TxnContext> {
        if let Some(t) = &self.txn {
            return t.clone();
        }
        let (gtid, commit_ms) = match &self.pending {
            Some(p) => (p.gtid.clone(), p.commit_ms),
            None => (None, u64::from(h.timestamp) * 1000),
        };
        let ctx = Arc::new(TxnContext { gtid, commit_ms });
        self.txn = Some(ctx.clone());
        out.push(SourceItem::Begin(ctx.clone()));
        ctx
    }

    fn commit(&mut self, h: &EventHeader, xid: Option<u64>, out: &mut Vec<SourceItem>) {
        if self.txn.is_none() {
            // A COMMIT/XID without BEGIN (mid-transaction start): still a boundary.
            self.begin(h, out);
        }
        let pending = self.pending.take();
        if let Some(g) = pending.and_then(|p| p.gtid) {
            match &mut self.gtid_state {
                Some(s) => s.add(&g),
                None => {
                    let mut s = match &g {
                        Gtid::Mysql(_) => GtidState::Mysql(Default::default()),
                        Gtid::Mariadb(_) => GtidState::Mariadb(Default::default()),
                    };
                    s.add(&g);
                    self.gtid_state = Some(s);
                }
            }
        }
        self.txn = None;
        self.statement = None;
        out.push(SourceItem::Commit {
            xid,
            checkpoint: Checkpoint {
                file: self.file.clone(),
                position: u64::from(h.log_pos),
                gtid: self.gtid_state.clone(),
            },
        });
    }

    fn on_query(
        &mut self,
        h: &EventHeader,
        q: events::QueryEvent,
        offset: u64,
        sub: u32,
        out: &mut Vec<SourceItem>,
    ) {
        let sql = q.sql.trim();
        let upper: String = sql
            .chars()
            .take(16)
            .collect::<String>()
            .to_ascii_uppercase();
        if upper == "BEGIN" || upper.starts_with("XA START") || upper.starts_with("START TRANS") {
            self.begin(h, out);
            return;
        }
        if upper == "COMMIT" || upper == "ROLLBACK" || upper.starts_with("XA COMMIT") {
            self.commit(h, None, out);
            return;
        }
        if upper.starts_with("XA END") || upper.starts_with("XA PREPARE") {
            return;
        }
        let standalone = self.txn.is_none();
        let txn = self.begin(h, out);
        let (db, table) = crate::ddl::target(&q.database, sql);
        if crate::ddl::is_schema_change(sql) {
            match table.as_deref() {
                Some(t) => self.invalidate_dictionary(Some((&db, t))),
                None => self.invalidate_dictionary(None),
            }
        }
        let table = table.unwrap_or_default();
        if !self.captures(&db, &table) {
            if standalone {
                self.commit(h, q.ddl_xid, out);
            }
            return;
        }
        let schema = Arc::new(TableSchema {
            table_id: 0,
            database: db,
            table,
            columns: Vec::new(),
            primary_key: Vec::new(),
            names_known: true,
        });
        out.push(SourceItem::Change(ChangeEvent {
            position: self.position(h, offset, sub),
            server_id: h.server_id,
            event_ms: u64::from(h.timestamp) * 1000,
            txn,
            kind: ChangeKind::Ddl,
            table: schema,
            rows: Rows::default(),
            sql: Some(Arc::from(sql)),
        }));
        if standalone {
            self.commit(h, q.ddl_xid, out);
        }
    }

    fn on_rows(
        &mut self,
        h: &EventHeader,
        body: &[u8],
        offset: u64,
        sub: u32,
        out: &mut Vec<SourceItem>,
    ) -> Result<(), DecodeError> {
        let t = h.event_type;
        let id = rows::table_id(t, body, &self.fde)?;
        let cached = self.tables.get(&id).ok_or(DecodeError::UnknownTable(id))?;
        let (schema, captured) = (cached.schema.clone(), cached.captured);
        if !captured {
            self.begin(h, out);
            return Ok(());
        }
        let decoded = rows::decode(t, body, &self.fde, &schema, self.opts)?;
        let kind = rows::layout(t).map_or(ChangeKind::Insert, |l| l.kind);
        let txn = self.begin(h, out);
        out.push(SourceItem::Change(ChangeEvent {
            position: self.position(h, offset, sub),
            server_id: h.server_id,
            event_ms: u64::from(h.timestamp) * 1000,
            txn,
            kind,
            table: schema,
            rows: decoded,
            sql: self.statement.clone(),
        }));
        Ok(())
    }
}

/// MySQL 8.4+ GTID_TAGGED_LOG_EVENT, in `mysql::serialization` form: a message of
/// (field id, value) pairs with variable-length integers.
fn parse_tagged_gtid(body: &[u8]) -> Result<(crate::gtid::MysqlGtid, Option<u64>), DecodeError> {
    let mut p = Varlen { b: body, pos: 0 };
    // Header: format version, message size, last non-ignorable field id.
    p.uint()?;
    p.uint()?;
    p.uint()?;
    let mut uuid = [0u8; 16];
    let mut gno = None;
    let mut tag = String::new();
    let mut commit_us = None;
    while p.pos < body.len() {
        match p.uint()? {
            1 => {
                for b in &mut uuid {
                    *b = p.uint()? as u8;
                }
            }
            // Signed fields are zigzag-encoded.
            2 => {
                let z = p.uint()?;
                gno = Some((z >> 1) ^ (z & 1).wrapping_neg());
            }
            3 => {
                let len = p.uint()? as usize;
                let s = p.take(len)?;
                tag = String::from_utf8_lossy(s).into_owned();
            }
            6 => commit_us = Some(p.uint()?),
            0 | 4 | 5 | 7..=11 => {
                p.uint()?;
            }
            // Later fields follow the ones needed here; their encoding is unknown.
            _ => break,
        }
    }
    let gno = gno.ok_or_else(|| DecodeError::Malformed {
        what: "GTID_TAGGED event",
        at: super::HEADER_LEN,
        detail: "no GNO field".into(),
    })?;
    Ok((
        crate::gtid::MysqlGtid {
            uuid: crate::gtid::Uuid(uuid),
            tag,
            gno,
        },
        commit_us,
    ))
}

struct Varlen<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Varlen<'_> {
    fn err(&self) -> DecodeError {
        DecodeError::Truncated {
            what: "GTID_TAGGED field",
            at: super::HEADER_LEN + self.pos,
            needed: 1,
            available: self.b.len().saturating_sub(self.pos),
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let s = self
            .b
            .get(self.pos..self.pos + n)
            .ok_or_else(|| self.err())?;
        self.pos += n;
        Ok(s)
    }

    /// Unsigned varlen integer: the count of trailing one bits of the first byte is the
    /// number of extra bytes.
    fn uint(&mut self) -> Result<u64, DecodeError> {
        let first = *self.b.get(self.pos).ok_or_else(|| self.err())?;
        let extra = (first.trailing_ones() as usize).min(8);
        let bytes = self.take(extra + 1)?;
        if extra == 8 {
            return Ok(super::cursor::le_uint(&bytes[1..]));
        }
        let mut wide = [0u8; 16];
        wide[..bytes.len()].copy_from_slice(bytes);
        Ok((u128::from_le_bytes(wide) >> (extra + 1)) as u64)
    }
}
