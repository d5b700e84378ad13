//! The packed batch and decision formats of `wit/router.wit`, both directions.
//!
//! The agent writes batches ([`BatchWriter`]) and reads decisions ([`parse_decisions`]);
//! modules read batches ([`Batch`]) and write decisions ([`Decisions`]). Keeping both
//! sides here keeps them in agreement. Readers never panic: a batch that is malformed
//! fails [`Batch::parse`], a cell that points outside the data reads as absent, and
//! malformed decisions are an [`AbiError`] the agent turns into the module's failure
//! policy.

use std::fmt;
use std::ops::Range;

/// First bytes of a batch.
pub const BATCH_MAGIC: [u8; 4] = *b"SLB1";
/// First bytes of a decision buffer.
pub const DECISIONS_MAGIC: [u8; 4] = *b"SLD1";
/// Cell length marking SQL NULL.
pub const NULL_CELL: u32 = u32::MAX;
/// Cell length marking a column left out of the row image.
pub const ABSENT_CELL: u32 = u32::MAX - 1;
/// Topic index meaning "topic name follows inline".
pub const INLINE_TOPIC: u32 = u32::MAX;
/// Table id of DDL events.
pub const DDL_TABLE: u32 = u32::MAX;

const HEADER: usize = 16;
const EVENT_ENTRY: usize = 16;
const CELL_ENTRY: usize = 8;

/// What a change did (the WIT `change-kind`, as its batch byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Rows inserted.
    Insert = 0,
    /// Rows updated.
    Update = 1,
    /// Rows deleted.
    Delete = 2,
    /// A statement (DDL).
    Ddl = 3,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::Insert,
            1 => Kind::Update,
            2 => Kind::Delete,
            3 => Kind::Ddl,
            _ => return None,
        })
    }

    /// Canal's name of the kind (`INSERT`, ...; `QUERY` for DDL).
    pub fn canal_name(self) -> &'static str {
        match self {
            Kind::Insert => "INSERT",
            Kind::Update => "UPDATE",
            Kind::Delete => "DELETE",
            Kind::Ddl => "QUERY",
        }
    }
}

/// A malformed batch or decision buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbiError(pub String);

impl fmt::Display for AbiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AbiError {}

fn err<T>(msg: impl Into<String>) -> Result<T, AbiError> {
    Err(AbiError(msg.into()))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

/// Builds a batch. Reuse one writer across batches: `clear` keeps its buffers.
#[derive(Debug, Default, Clone)]
pub struct BatchWriter {
    events: Vec<u8>,
    cells: Vec<u8>,
    data: Vec<u8>,
    n_events: u32,
    n_cells: u32,
}

impl BatchWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets all events, keeping capacity.
    pub fn clear(&mut self) {
        self.events.clear();
        self.cells.clear();
        self.data.clear();
        self.n_events = 0;
        self.n_cells = 0;
    }

    /// Events written so far.
    pub fn len(&self) -> usize {
        self.n_events as usize
    }

    /// Whether no event was written.
    pub fn is_empty(&self) -> bool {
        self.n_events == 0
    }

    /// Bytes the finished batch will take.
    pub fn encoded_len(&self) -> usize {
        HEADER + self.events.len() + self.cells.len() + self.data.len()
    }

    /// Starts an event; push exactly `columns` cells per present image next
    /// (before-image first).
    pub fn begin_event(
        &mut self,
        table: u32,
        kind: Kind,
        columns: u16,
        before: bool,
        after: bool,
        row: u32,
    ) {
        let flags = u8::from(before) | (u8::from(after) << 1);
        self.events.extend_from_slice(&table.to_le_bytes());
        self.events.push(kind as u8);
        self.events.push(flags);
        self.events.extend_from_slice(&columns.to_le_bytes());
        self.events.extend_from_slice(&self.n_cells.to_le_bytes());
        self.events.extend_from_slice(&row.to_le_bytes());
        self.n_events += 1;
    }

    /// Appends a cell with a value.
    #[inline]
    pub fn push_value(&mut self, value: &[u8]) {
        let off = self.data.len() as u32;
        self.data.extend_from_slice(value);
        self.cells.extend_from_slice(&off.to_le_bytes());
        self.cells
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.n_cells += 1;
    }

    /// Appends a NULL cell.
    #[inline]
    pub fn push_null(&mut self) {
        self.push_marker(NULL_CELL);
    }

    /// Appends a cell for a column the row image left out.
    #[inline]
    pub fn push_absent(&mut self) {
        self.push_marker(ABSENT_CELL);
    }

    #[inline]
    fn push_marker(&mut self, len: u32) {
        self.cells.extend_from_slice(&0u32.to_le_bytes());
        self.cells.extend_from_slice(&len.to_le_bytes());
        self.n_cells += 1;
    }

    /// Appends an optional value (`None` is NULL).
    #[inline]
    pub fn push_cell(&mut self, value: Option<&[u8]>) {
        match value {
            Some(v) => self.push_value(v),
            None => self.push_null(),
        }
    }

    /// Writes the finished batch into `out` (cleared first).
    pub fn finish_into(&self, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(self.encoded_len());
        out.extend_from_slice(&BATCH_MAGIC);
        out.extend_from_slice(&self.n_events.to_le_bytes());
        out.extend_from_slice(&self.n_cells.to_le_bytes());
        out.extend_from_slice(&(self.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.events);
        out.extend_from_slice(&self.cells);
        out.extend_from_slice(&self.data);
    }

    /// The finished batch.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.finish_into(&mut out);
        out
    }
}

/// A batch, read in place.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    buf: &'a [u8],
    n_events: usize,
    n_cells: usize,
    cells_at: usize,
    data_at: usize,
}

impl<'a> Batch<'a> {
    /// Checks the header and section sizes.
    pub fn parse(buf: &'a [u8]) -> Result<Self, AbiError> {
        if buf.get(..4) != Some(&BATCH_MAGIC[..]) {
            return err("batch does not start with SLB1");
        }
        let (Some(e), Some(c), Some(d)) = (u32_at(buf, 4), u32_at(buf, 8), u32_at(buf, 12)) else {
            return err("batch header is truncated");
        };
        let (e, c, d) = (e as usize, c as usize, d as usize);
        let cells_at = HEADER + e * EVENT_ENTRY;
        let data_at = cells_at + c * CELL_ENTRY;
        if data_at.checked_add(d) != Some(buf.len()) {
            return err(format!(
                "batch sections ({e} events, {c} cells, {d} data bytes) do not add up to its {} bytes",
                buf.len()
            ));
        }
        Ok(Batch {
            buf,
            n_events: e,
            n_cells: c,
            cells_at,
            data_at,
        })
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.n_events
    }

    /// Whether the batch has no events.
    pub fn is_empty(&self) -> bool {
        self.n_events == 0
    }

    /// Event `i` (`None` past the end).
    pub fn event(&self, i: usize) -> Option<EventRef<'a>> {
        if i >= self.n_events {
            return None;
        }
        let at = HEADER + i * EVENT_ENTRY;
        let b = self.buf;
        Some(EventRef {
            batch: *self,
            table: u32_at(b, at)?,
            kind: Kind::from_u8(*b.get(at + 4)?).unwrap_or(Kind::Ddl),
            flags: *b.get(at + 5)?,
            columns: u16_at(b, at + 6)?,
            first_cell: u32_at(b, at + 8)? as usize,
            row: u32_at(b, at + 12)?,
        })
    }

    /// All events in order.
    pub fn iter(&self) -> impl Iterator<Item = EventRef<'a>> + '_ {
        (0..self.n_events).filter_map(|i| self.event(i))
    }

    fn cell(&self, index: usize) -> Cell<'a> {
        if index >= self.n_cells {
            return Cell::Absent;
        }
        let at = self.cells_at + index * CELL_ENTRY;
        let (Some(off), Some(len)) = (u32_at(self.buf, at), u32_at(self.buf, at + 4)) else {
            return Cell::Absent;
        };
        match len {
            NULL_CELL => Cell::Null,
            ABSENT_CELL => Cell::Absent,
            len => {
                let start = self.data_at + off as usize;
                match self.buf.get(start..start + len as usize) {
                    Some(v) => Cell::Value(v),
                    None => Cell::Absent,
                }
            }
        }
    }
}

/// A cell of a row image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    /// SQL NULL.
    Null,
    /// Not part of the row image.
    Absent,
    /// The value: UTF-8 text in MySQL's text form, or raw bytes for binary columns.
    Value(&'a [u8]),
}

impl<'a> Cell<'a> {
    /// The value bytes (`None` for NULL and absent cells).
    pub fn bytes(self) -> Option<&'a [u8]> {
        match self {
            Cell::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The value as text (`None` for NULL, absent, or bytes that are not UTF-8).
    pub fn text(self) -> Option<&'a str> {
        self.bytes().and_then(|b| std::str::from_utf8(b).ok())
    }
}

/// One event of a batch.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    batch: Batch<'a>,
    /// Table id (see `add-table`), or [`DDL_TABLE`].
    pub table: u32,
    /// What happened.
    pub kind: Kind,
    flags: u8,
    /// Cells per image.
    pub columns: u16,
    first_cell: usize,
    /// Row index within its binlog rows event.
    pub row: u32,
}

impl<'a> EventRef<'a> {
    /// Whether a before-image is present.
    pub fn has_before(&self) -> bool {
        self.flags & 1 != 0
    }

    /// Whether an after-image is present.
    pub fn has_after(&self) -> bool {
        self.flags & 2 != 0
    }

    /// Cell `col` of the before-image.
    pub fn before(&self, col: usize) -> Cell<'a> {
        if !self.has_before() || col >= usize::from(self.columns) {
            return Cell::Absent;
        }
        self.batch.cell(self.first_cell + col)
    }

    /// Cell `col` of the after-image.
    pub fn after(&self, col: usize) -> Cell<'a> {
        if !self.has_after() || col >= usize::from(self.columns) {
            return Cell::Absent;
        }
        let skip = if self.has_before() {
            usize::from(self.columns)
        } else {
            0
        };
        self.batch.cell(self.first_cell + skip + col)
    }

    /// Cell `col` of the row as it is now: the after-image, or the before-image for
    /// deletes. This is the image Canal hashes for partitions.
    pub fn current(&self, col: usize) -> Cell<'a> {
        if self.has_after() {
            self.after(col)
        } else {
            self.before(col)
        }
    }

    /// For DDL events: (database, table, SQL).
    pub fn ddl(&self) -> Option<(&'a str, &'a str, &'a str)> {
        if self.kind != Kind::Ddl {
            return None;
        }
        let c = |i| self.batch.cell(self.first_cell + i).text().unwrap_or("");
        Some((c(0), c(1), c(2)))
    }
}

/// A topic named by a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic<'a> {
    /// Index into the subscription's `topics`.
    Index(u32),
    /// A topic name computed by the module (e.g. from the table name).
    Name(&'a str),
}

/// One destination of a routed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination<'a> {
    /// Where to publish.
    pub topic: Topic<'a>,
    /// Message key (also the partitioning input when no partition is given).
    pub key: Option<&'a [u8]>,
    /// Explicit partition.
    pub partition: Option<i32>,
    /// Extra message headers.
    pub headers: &'a [(&'a str, &'a [u8])],
}

impl<'a> Destination<'a> {
    /// A destination with just a topic.
    pub fn topic(topic: Topic<'a>) -> Self {
        Destination {
            topic,
            key: None,
            partition: None,
            headers: &[],
        }
    }

    /// The subscription's topic number `index`.
    pub fn to_index(index: u32) -> Self {
        Self::topic(Topic::Index(index))
    }

    /// A topic by name.
    pub fn to_name(name: &'a str) -> Self {
        Self::topic(Topic::Name(name))
    }

    /// Sets the key.
    pub fn key(mut self, key: &'a [u8]) -> Self {
        self.key = Some(key);
        self
    }

    /// Sets an explicit partition.
    pub fn partition(mut self, p: i32) -> Self {
        self.partition = Some(p);
        self
    }

    /// Sets headers.
    pub fn headers(mut self, h: &'a [(&'a str, &'a [u8])]) -> Self {
        self.headers = h;
        self
    }
}

/// Decisions being written, one per event in batch order.
#[derive(Debug, Clone)]
pub struct Decisions {
    buf: Vec<u8>,
    count: u32,
}

impl Default for Decisions {
    fn default() -> Self {
        Self::new()
    }
}

impl Decisions {
    /// An empty decision buffer.
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(&DECISIONS_MAGIC);
        buf.extend_from_slice(&0u32.to_le_bytes());
        Decisions { buf, count: 0 }
    }

    /// Decisions written so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether none was written.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Drops the next event.
    pub fn drop_event(&mut self) {
        self.buf.push(0);
        self.count += 1;
    }

    /// Routes the next event to one destination.
    pub fn send(&mut self, d: Destination<'_>) {
        self.send_all(std::slice::from_ref(&d));
    }

    /// Routes the next event to several destinations (at most 255; more are ignored).
    pub fn send_all(&mut self, ds: &[Destination<'_>]) {
        let ds = &ds[..ds.len().min(255)];
        if ds.is_empty() {
            return self.drop_event();
        }
        self.buf.push(1);
        self.buf.push(ds.len() as u8);
        for d in ds {
            match d.topic {
                Topic::Index(i) => self.buf.extend_from_slice(&i.to_le_bytes()),
                Topic::Name(n) => {
                    let n = &n.as_bytes()[..n.len().min(u16::MAX as usize)];
                    self.buf.extend_from_slice(&INLINE_TOPIC.to_le_bytes());
                    self.buf.extend_from_slice(&(n.len() as u16).to_le_bytes());
                    self.buf.extend_from_slice(n);
                }
            }
            let flags = u8::from(d.partition.is_some())
                | (u8::from(d.key.is_some()) << 1)
                | (u8::from(!d.headers.is_empty()) << 2);
            self.buf.push(flags);
            if let Some(p) = d.partition {
                self.buf.extend_from_slice(&p.to_le_bytes());
            }
            if let Some(k) = d.key {
                self.buf.extend_from_slice(&(k.len() as u32).to_le_bytes());
                self.buf.extend_from_slice(k);
            }
            if !d.headers.is_empty() {
                let hs = &d.headers[..d.headers.len().min(u16::MAX as usize)];
                self.buf.extend_from_slice(&(hs.len() as u16).to_le_bytes());
                for (name, value) in hs {
                    let n = &name.as_bytes()[..name.len().min(u16::MAX as usize)];
                    self.buf.extend_from_slice(&(n.len() as u16).to_le_bytes());
                    self.buf.extend_from_slice(n);
                    self.buf
                        .extend_from_slice(&(value.len() as u32).to_le_bytes());
                    self.buf.extend_from_slice(value);
                }
            }
        }
        self.count += 1;
    }

    /// The finished buffer.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf[4..8].copy_from_slice(&self.count.to_le_bytes());
        self.buf
    }
}

/// A parsed destination: ranges point into the decision buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedDestination {
    /// Topic index, or the byte range of an inline name.
    pub topic: ParsedTopic,
    /// Key bytes.
    pub key: Option<Range<usize>>,
    /// Explicit partition.
    pub partition: Option<i32>,
    /// Header (name, value) ranges.
    pub headers: Vec<(Range<usize>, Range<usize>)>,
}

impl ParsedDestination {
    /// The key, copied out of `buf` (the decision buffer this was parsed from).
    pub fn key_in(&self, buf: &[u8]) -> Option<Vec<u8>> {
        self.key.clone().map(|r| buf[r].to_vec())
    }

    /// The headers, copied out of `buf` (names are UTF-8, checked by the parser).
    pub fn headers_in(&self, buf: &[u8]) -> Vec<(String, Vec<u8>)> {
        self.headers
            .iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(&buf[n.clone()]).into_owned(),
                    buf[v.clone()].to_vec(),
                )
            })
            .collect()
    }
}

/// A parsed topic reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedTopic {
    /// Index into the subscription's topics.
    Index(u32),
    /// Byte range of an inline UTF-8 name.
    Name(Range<usize>),
}

/// A parsed decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedDecision {
    /// Drop the event.
    Drop,
    /// Publish to these destinations.
    Route(Vec<ParsedDestination>),
}

/// Parses and validates a decision buffer for a batch of `expected` events.
pub fn parse_decisions(buf: &[u8], expected: usize) -> Result<Vec<ParsedDecision>, AbiError> {
    let mut out = vec![ParsedDecision::Drop; expected];
    visit_decisions(buf, expected, |i, d| -> Result<(), AbiError> {
        match &mut out[i] {
            ParsedDecision::Route(ds) => ds.push(d),
            drop => *drop = ParsedDecision::Route(vec![d]),
        }
        Ok(())
    })?;
    Ok(out)
}

/// Checks a decision buffer written for `expected` events and calls `f(event, destination)`
/// for each destination in order (a dropped event has none), without building a
/// vector per event. An error from `f` stops the walk and is returned.
pub fn visit_decisions<E: From<AbiError>>(
    buf: &[u8],
    expected: usize,
    mut f: impl FnMut(usize, ParsedDestination) -> Result<(), E>,
) -> Result<(), E> {
    let err = |m: String| -> Result<(), E> { Err(E::from(AbiError(m))) };
    if buf.get(..4) != Some(&DECISIONS_MAGIC[..]) {
        return err("decisions do not start with SLD1".into());
    }
    let Some(n) = u32_at(buf, 4) else {
        return err("decision count is truncated".into());
    };
    if n as usize != expected {
        return err(format!("{n} decisions for {expected} events"));
    }
    let mut at = 8usize;
    let short = |what: &str, at: usize| {
        AbiError(format!("decision buffer ends inside {what} at byte {at}"))
    };
    for i in 0..expected {
        let action = *buf.get(at).ok_or_else(|| short("an action", at))?;
        at += 1;
        match action {
            0 => {}
            1 => {
                let nd = *buf
                    .get(at)
                    .ok_or_else(|| short("a destination count", at))?;
                at += 1;
                if nd == 0 {
                    return err(format!("decision {i} routes to no destination"));
                }
                for _ in 0..nd {
                    let t = u32_at(buf, at).ok_or_else(|| short("a topic", at))?;
                    at += 4;
                    let topic = if t == INLINE_TOPIC {
                        let len =
                            u16_at(buf, at).ok_or_else(|| short("a topic name", at))? as usize;
                        at += 2;
                        let r = at..at + len;
                        let name = buf
                            .get(r.clone())
                            .ok_or_else(|| short("a topic name", at))?;
                        if std::str::from_utf8(name).is_err() || name.is_empty() {
                            return err(format!("decision {i} names an empty or non-UTF-8 topic"));
                        }
                        at += len;
                        ParsedTopic::Name(r)
                    } else {
                        ParsedTopic::Index(t)
                    };
                    let flags = *buf.get(at).ok_or_else(|| short("destination flags", at))?;
                    at += 1;
                    if flags & !7 != 0 {
                        return err(format!(
                            "decision {i} has unknown destination flags {flags:#04x}"
                        ));
                    }
                    let partition = if flags & 1 != 0 {
                        let p = u32_at(buf, at).ok_or_else(|| short("a partition", at))? as i32;
                        at += 4;
                        if p < 0 {
                            return err(format!("decision {i} names negative partition {p}"));
                        }
                        Some(p)
                    } else {
                        None
                    };
                    let key = if flags & 2 != 0 {
                        let len = u32_at(buf, at).ok_or_else(|| short("a key", at))? as usize;
                        at += 4;
                        let r = at..at.checked_add(len).ok_or_else(|| short("a key", at))?;
                        if r.end > buf.len() {
                            return Err(short("a key", at).into());
                        }
                        at = r.end;
                        Some(r)
                    } else {
                        None
                    };
                    let mut headers = Vec::new();
                    if flags & 4 != 0 {
                        let nh = u16_at(buf, at).ok_or_else(|| short("a header count", at))?;
                        at += 2;
                        for _ in 0..nh {
                            let nl =
                                u16_at(buf, at).ok_or_else(|| short("a header name", at))? as usize;
                            at += 2;
                            let name = at..at + nl;
                            if name.end > buf.len()
                                || std::str::from_utf8(&buf[name.clone()]).is_err()
                            {
                                return err(format!(
                                    "decision {i} has a truncated or non-UTF-8 header name"
                                ));
                            }
                            at = name.end;
                            let vl = u32_at(buf, at).ok_or_else(|| short("a header value", at))?
                                as usize;
                            at += 4;
                            let value = at..at
                                .checked_add(vl)
                                .ok_or_else(|| short("a header value", at))?;
                            if value.end > buf.len() {
                                return Err(short("a header value", at).into());
                            }
                            at = value.end;
                            headers.push((name, value));
                        }
                    }
                    f(
                        i,
                        ParsedDestination {
                            topic,
                            key,
                            partition,
                            headers,
                        },
                    )?;
                }
            }
            other => return err(format!("decision {i} has unknown action {other}")),
        }
    }
    if at != buf.len() {
        return err(format!("{} bytes after the last decision", buf.len() - at));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trip() {
        let mut w = BatchWriter::new();
        w.begin_event(7, Kind::Update, 2, true, true, 3);
        w.push_value(b"1");
        w.push_null();
        w.push_value(b"1");
        w.push_value("é".as_bytes());
        w.begin_event(DDL_TABLE, Kind::Ddl, 3, false, true, 0);
        w.push_value(b"db");
        w.push_value(b"t");
        w.push_value(b"ALTER TABLE t ADD c INT");
        let buf = w.finish();
        let b = Batch::parse(&buf).unwrap();
        assert_eq!(b.len(), 2);
        let e = b.event(0).unwrap();
        assert_eq!((e.table, e.kind, e.row), (7, Kind::Update, 3));
        assert_eq!(e.before(1), Cell::Null);
        assert_eq!(e.after(1).text(), Some("é"));
        assert_eq!(e.current(0).text(), Some("1"));
        assert_eq!(e.after(2), Cell::Absent);
        assert_eq!(
            b.event(1).unwrap().ddl(),
            Some(("db", "t", "ALTER TABLE t ADD c INT"))
        );
        assert!(b.event(2).is_none());
        for cut in 0..buf.len() {
            assert!(Batch::parse(&buf[..cut]).is_err());
        }
    }

    #[test]
    fn decisions_round_trip_and_validation() {
        let mut d = Decisions::new();
        d.drop_event();
        let hs: &[(&str, &[u8])] = &[("tag", b"orders")];
        d.send_all(&[
            Destination::to_index(0).key(b"k1").partition(3),
            Destination::to_name("dyn_topic").headers(hs),
        ]);
        let buf = d.finish();
        let p = parse_decisions(&buf, 2).unwrap();
        assert_eq!(p[0], ParsedDecision::Drop);
        let ParsedDecision::Route(ds) = &p[1] else {
            panic!()
        };
        assert_eq!(ds[0].topic, ParsedTopic::Index(0));
        assert_eq!(&buf[ds[0].key.clone().unwrap()], b"k1");
        assert_eq!(ds[0].partition, Some(3));
        let ParsedTopic::Name(r) = &ds[1].topic else {
            panic!()
        };
        assert_eq!(&buf[r.clone()], b"dyn_topic");
        assert_eq!(&buf[ds[1].headers[0].1.clone()], b"orders");
        assert!(parse_decisions(&buf, 3).is_err());
        for cut in 0..buf.len() {
            assert!(parse_decisions(&buf[..cut], 2).is_err());
        }
        let mut extra = buf.clone();
        extra.push(0);
        assert!(parse_decisions(&extra, 2).is_err());
    }
}
