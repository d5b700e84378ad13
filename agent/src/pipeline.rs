//! `sluice run`: source → routers → messages → sink → checkpoint.
//!
//! Invariants:
//! - the checkpoint advances only to a transaction boundary all of whose messages, and
//!   all earlier ones, the sink acknowledged ([`crate::sink::acks`]);
//! - module versions change only between transactions ([`RouterSet`]);
//! - the source runs in its own task behind a bounded channel, so a slow sink slows the
//!   binlog reader (backpressure) and no read is ever cancelled half-way;
//! - on a sink failure the pipeline starts over from the last checkpoint with a new
//!   sink; what was in flight is sent again (at-least-once), carrying its binlog
//!   position for deduplication;
//! - operator commands ([`Control`]) are applied between source items, and pausing
//!   only stops taking items: acknowledgements and checkpoints carry on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use prometheus_client::metrics::counter::Counter;

use crate::checkpoint;
use crate::config::Config;
use crate::control::{Command, CommandError, CommandKind, Control};
use crate::event::{Cell, ChangeEvent, ChangeKind, Checkpoint, Rows, SourceItem, TableSchema};
use crate::format::{Format, canal, debezium};
use crate::metrics;
use crate::router::watch::ModuleDir;
use crate::router::{Delivery, Policy, Route, RouteInput, RouterEngine, RouterSet};
use crate::sink::config::{MessageUnit, Oversize};
use crate::sink::{HeaderValue, OutMessage, POSITION_HEADER, RefusalReason, Sink, SinkError};
use crate::source::{BinlogSource, Received, ServerEnd, SourceError};

/// A decision header with which a module picks the format (`canal` or `debezium`) of
/// one destination; consumed by the agent, not published.
pub const FORMAT_HEADER: &str = "sluice.format";

/// Entries kept in the per-table caches, which are keyed by binlog table id. The server
/// hands out a new id whenever a table is opened again, so ids only grow: past this many
/// the cache starts over instead of keeping every id ever seen.
const TABLE_CACHE: usize = 4096;

/// Time allowed to drain in-flight messages at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Transactions processed.
    pub transactions: u64,
    /// Messages published.
    pub messages: u64,
    /// The last checkpoint written.
    pub checkpoint: Option<Checkpoint>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Splits updates that change the primary key into a delete of the old row and an
/// insert of the new one (same position), keeping each key's history on one partition.
pub fn split_pk_updates(ev: ChangeEvent) -> Vec<ChangeEvent> {
    if ev.kind != ChangeKind::Update || ev.table.primary_key.is_empty() {
        return vec![ev];
    }
    let pk = &ev.table.primary_key;
    let changed: Vec<bool> = (0..ev.rows.len())
        .map(|r| {
            let (b, a) = (ev.rows.image(r, 0), ev.rows.image(r, 1));
            pk.iter().any(|&c| b.cell(c) != a.cell(c))
        })
        .collect();
    if !changed.iter().any(|&c| c) {
        return vec![ev];
    }
    let cols = ev.table.columns.len();
    let cells = |img: crate::event::Image<'_>| -> Vec<Option<Vec<u8>>> {
        (0..cols)
            .map(|c| match img.cell(c) {
                Cell::Value(v) => Some(v.to_vec()),
                _ => None,
            })
            .collect()
    };
    let mut kept = Rows::new(cols, 2);
    let mut deletes = Rows::new(cols, 1);
    let mut inserts = Rows::new(cols, 1);
    for (r, &ch) in changed.iter().enumerate() {
        let b = cells(ev.rows.image(r, 0));
        let a = cells(ev.rows.image(r, 1));
        if ch {
            deletes.push_image(&refs(&b));
            inserts.push_image(&refs(&a));
        } else {
            kept.push_image(&refs(&b));
            kept.push_image(&refs(&a));
        }
    }
    let mut out = Vec::with_capacity(3);
    let with = |kind: ChangeKind, rows: Rows| ChangeEvent {
        kind,
        rows,
        ..ev.clone()
    };
    if !kept.is_empty() {
        out.push(with(ChangeKind::Update, kept));
    }
    out.push(with(ChangeKind::Delete, deletes));
    out.push(with(ChangeKind::Insert, inserts));
    out
}

/// Everything that lives for one attempt (source, routers, sink).
struct Run<'a> {
    cfg: &'a Config,
    routers: Option<RouterSet>,
    sink: Sink,
    txn: u64,
    chunk: Vec<ChangeEvent>,
    chunk_rows: usize,
    recent: Vec<ChangeEvent>,
    msg_id: u64,
    json: Vec<u8>,
    /// The newest checkpoint handed to the writer.
    saved: Option<Checkpoint>,
    writer: checkpoint::Writer,
    summary: RunSummary,
    ctl: Arc<Control>,
    /// Per-table metric handles, so no label set is built per change.
    table_metrics: HashMap<(u64, ChangeKind), (Arc<TableSchema>, Counter, Counter)>,
    /// Per-table renderings every message of the table repeats, by table id.
    tables: HashMap<u64, Arc<TableOut>>,
    /// `sluice.type` header values, one per kind.
    kind_headers: Vec<(ChangeKind, HeaderValue)>,
    /// Reused across changes: destination groups and their rows (see `publish_change`).
    groups: Vec<(usize, Format)>,
    group_rows: Vec<Vec<usize>>,
    /// Reused: the position header being written.
    position: Vec<u8>,
    /// The binlog event (file, offset, sub) whose messages are being made, and how many
    /// it has made so far: the last part of `sluice.position` (see [`Run::next_position`]).
    event_at: Option<(Arc<str>, u64, u32)>,
    event_messages: u32,
    /// The last transaction boundary read.
    read: Option<Checkpoint>,
    /// Commit time of the open transaction (ms since the epoch).
    commit_ms: u64,
    /// Where the binlog stream is, and the server's end as last listed: while the
    /// server is ahead, or read items wait in the channel, the source is behind.
    received: Received,
    server_end: ServerEnd,
    /// Whether the source was behind at the last tick (see [`Run::track_lag`]).
    source_behind: bool,
    /// Between a Begin and its Commit.
    in_txn: bool,
    /// When the open transaction's first event reached the pipeline.
    txn_seen: Instant,
    /// `message = "transaction"`: the open transaction's messages per destination.
    gathered: Vec<Gathered>,
    /// Whether the status shows messages held for a missing topic.
    holding: bool,
    /// Modules already warned about a bad `sluice.format` header.
    bad_format_warned: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

/// Messages of one transaction for one destination, joined as a JSON array.
struct Gathered {
    /// The first message, its payload the array so far (without the closing `]`).
    msg: OutMessage,
    events: usize,
    part: u32,
    mixed: bool,
}

impl Gathered {
    fn new(mut msg: OutMessage, part: u32) -> Self {
        msg.payload.insert(0, b'[');
        Gathered {
            msg,
            events: 1,
            part,
            mixed: false,
        }
    }

    fn push(&mut self, m: OutMessage) {
        self.msg.payload.push(b',');
        self.msg.payload.extend_from_slice(&m.payload);
        self.events += 1;
        if self.msg.header("sluice.table") != m.header("sluice.table")
            || self.msg.header("sluice.type") != m.header("sluice.type")
        {
            self.mixed = true;
        }
    }
}

/// What every message of one table version repeats, rendered once.
struct TableOut {
    canal: canal::TableJson,
    database: HeaderValue,
    table: HeaderValue,
}

impl TableOut {
    fn new(t: &Arc<TableSchema>) -> Self {
        TableOut {
            canal: canal::TableJson::new(t),
            database: HeaderValue::from(t.database.as_bytes()),
            table: HeaderValue::from(t.table.as_bytes()),
        }
    }
}

impl Run<'_> {
    fn route(&mut self, inputs: &[RouteInput<'_>]) -> anyhow::Result<Vec<Delivery>> {
        match &mut self.routers {
            Some(set) => Ok(set.route(inputs)?),
            None => {
                // No modules: everything to the default topic, keyed by primary key.
                let topic: Arc<str> = Arc::from(self.cfg.sink.default_topic.as_str());
                Ok(inputs
                    .iter()
                    .enumerate()
                    .map(|(i, inp)| Delivery {
                        input: i,
                        route: Route {
                            topic: topic.clone(),
                            key: pk_key(inp),
                            partition: None,
                            headers: Vec::new(),
                        },
                        module: Arc::from(""),
                        version: Arc::from(""),
                        dead_letter: None,
                    })
                    .collect())
            }
        }
    }

    /// Routes and publishes the buffered changes of the open transaction.
    fn flush_chunk(&mut self) -> anyhow::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.chunk);
        self.chunk_rows = 0;
        let inputs: Vec<RouteInput<'_>> = chunk
            .iter()
            .flat_map(|ev| (0..ev.rows.len().max(1)).map(move |row| RouteInput { event: ev, row }))
            .collect();
        let mut deliveries = self.route(&inputs)?;
        // Group per change: deliveries are per (module, input) in input order.
        deliveries.sort_by_key(|d| d.input);
        let mut start = 0;
        let mut ci = 0;
        let mut offset = 0; // first input index of change `ci`
        while start < deliveries.len() {
            let first = deliveries[start].input;
            while first >= offset + chunk[ci].rows.len().max(1) {
                offset += chunk[ci].rows.len().max(1);
                ci += 1;
            }
            let end_input = offset + chunk[ci].rows.len().max(1);
            let mut end = start;
            while end < deliveries.len() && deliveries[end].input < end_input {
                end += 1;
            }
            self.publish_change(&chunk[ci], offset, &deliveries[start..end])?;
            start = end;
        }
        // A few recent events feed module canaries; a rows event can hold thousands of
        // rows, so keep only a handful.
        if self.recent.len() < 8 {
            let room = 8 - self.recent.len();
            self.recent.extend(chunk.into_iter().take(room));
        }
        Ok(())
    }

    /// The renderings of `t`'s table version, made on its first message.
    fn table_out(&mut self, t: &Arc<TableSchema>) -> Arc<TableOut> {
        match self.tables.get(&t.table_id) {
            Some(o) if o.canal.renders(t) => o.clone(),
            _ => {
                let o = Arc::new(TableOut::new(t));
                if self.tables.len() >= TABLE_CACHE {
                    self.tables.clear();
                }
                self.tables.insert(t.table_id, o.clone());
                o
            }
        }
    }

    fn kind_header(&mut self, kind: ChangeKind) -> HeaderValue {
        if let Some((_, v)) = self.kind_headers.iter().find(|(k, _)| *k == kind) {
            return v.clone();
        }
        let v = HeaderValue::from(kind.canal_name().as_bytes());
        self.kind_headers.push((kind, v.clone()));
        v
    }

    fn publish_change(
        &mut self,
        ev: &ChangeEvent,
        first_input: usize,
        ds: &[Delivery],
    ) -> anyhow::Result<()> {
        // Rows sharing a destination form one message (Canal's split by partition); with
        // `message = "row"`, or Debezium, one message per row. Group `g` is
        // `groups[g]` (its first delivery and format) and `group_rows[g]`; both are
        // reused from change to change, so grouping allocates nothing once warm.
        let mut groups = std::mem::take(&mut self.groups);
        let mut group_rows = std::mem::take(&mut self.group_rows);
        groups.clear();
        for (i, d) in ds.iter().enumerate() {
            let row = d.input - first_input;
            let format = self.format_of(d);
            let per_row = self.cfg.sink.unit == MessageUnit::Row || format == Format::Debezium;
            let same = |&(j, _): &(usize, Format)| {
                let g: &Delivery = &ds[j];
                g.route == d.route && g.module == d.module && g.dead_letter == d.dead_letter
            };
            match groups.iter().position(|g| !per_row && same(g)) {
                Some(g) => group_rows[g].push(row),
                None => {
                    groups.push((i, format));
                    if group_rows.len() < groups.len() {
                        group_rows.push(Vec::new());
                    }
                    let rows = &mut group_rows[groups.len() - 1];
                    rows.clear();
                    rows.push(row);
                }
            }
        }
        let table = self.table_out(&ev.table);
        let kind = self.kind_header(ev.kind);
        let mut result = Ok(());
        for (&(i, format), rows) in groups.iter().zip(&group_rows) {
            result = self.publish_group(ev, &ds[i], format, rows, &table, &kind);
            if result.is_err() {
                break;
            }
        }
        self.groups = groups;
        self.group_rows = group_rows;
        result
    }

    /// Renders and sends (or gathers) the message of `rows` of `ev` for delivery `d`.
    fn publish_group(
        &mut self,
        ev: &ChangeEvent,
        d: &Delivery,
        format: Format,
        rows: &[usize],
        table: &TableOut,
        kind: &HeaderValue,
    ) -> anyhow::Result<()> {
        self.msg_id += 1;
        self.json.clear();
        match format {
            Format::Canal => canal::flat_message_rows(
                &mut self.json,
                ev,
                &table.canal,
                rows,
                self.msg_id,
                now_ms(),
            ),
            Format::Debezium => debezium::envelope(&mut self.json, ev, rows[0], now_ms()),
        }
        self.next_position(ev);
        let mut headers: Vec<(std::borrow::Cow<'static, str>, HeaderValue)> = Vec::with_capacity(
            6 + if d.dead_letter.is_some() { 2 } else { 0 } + d.route.headers.len(),
        );
        headers.extend([
            ("sluice.db".into(), table.database.clone()),
            ("sluice.table".into(), table.table.clone()),
            ("sluice.type".into(), kind.clone()),
            (
                POSITION_HEADER.into(),
                HeaderValue::from(&self.position[..]),
            ),
        ]);
        if !d.module.is_empty() {
            headers.push(("sluice.module".into(), HeaderValue::from(d.module.clone())));
            headers.push((
                "sluice.module.version".into(),
                HeaderValue::from(d.version.clone()),
            ));
        }
        if let Some((kind, err)) = &d.dead_letter {
            headers.push(("sluice.error.kind".into(), kind.as_bytes().into()));
            headers.push(("sluice.error".into(), err.as_bytes().into()));
        }
        headers.extend(
            d.route
                .headers
                .iter()
                .filter(|(k, _)| k != FORMAT_HEADER)
                .map(|(k, v)| (std::borrow::Cow::Owned(k.clone()), v.as_slice().into())),
        );
        let msg = OutMessage {
            topic: d.route.topic.clone(),
            partition: d.route.partition,
            key: d.route.key.clone(),
            headers,
            // Hand the buffer over instead of copying it; the next message gets a
            // fresh one sized like this.
            payload: {
                let hint = self.json.len() + self.json.len() / 4 + 256;
                std::mem::replace(&mut self.json, Vec::with_capacity(hint))
            },
            txn: self.txn,
        };
        let Some(msg) = self.check_size(msg, ev, d)? else {
            return Ok(());
        };
        if self.cfg.sink.unit == MessageUnit::Transaction {
            self.gather(msg)?;
        } else {
            self.sink.send(msg)?;
            self.summary.messages += 1;
        }
        Ok(())
    }

    /// Writes the next message's `sluice.position` into `self.position`:
    /// `FILE:OFFSET[/SUB]:N`, the binlog event the message comes from and N, its index
    /// among the messages made from that event (0, 1, ...). The parts of a split event
    /// (a primary-key change's delete and insert) and every destination's messages
    /// count on from one another, so positions are unique, and since messages of one
    /// partition are sent in the order they are made, strictly increasing per
    /// partition as (file number, offset, sub, N). The numbering depends only on the
    /// binlog and the modules' decisions, so a message sent again after a restart
    /// repeats its old position: consumers deduplicate by it.
    fn next_position(&mut self, ev: &ChangeEvent) {
        let p = &ev.position;
        let same = self
            .event_at
            .as_ref()
            .is_some_and(|(f, o, s)| *o == p.offset && *s == p.sub && **f == *p.file);
        if same {
            self.event_messages += 1;
        } else {
            self.event_at = Some((p.file.clone(), p.offset, p.sub));
            self.event_messages = 0;
        }
        self.position.clear();
        use std::io::Write;
        // Writing into a Vec cannot fail.
        let _ = write!(self.position, "{}:{}", p, self.event_messages);
    }

    /// Shows in the status (and so in `/readyz`) why messages are held, while they are.
    /// Cheap unless the hold starts or ends, so it runs on every turn of the loop: held
    /// messages can also be released inside a send.
    fn report_held(&mut self) {
        if self.sink.holding() != self.holding {
            let why = self.sink.waiting_for().map(|e| e.to_string());
            self.holding = why.is_some();
            self.ctl.update(|s| s.sink_error = why);
        }
    }

    /// The format of a delivery: the module's `sluice.format` decision header, else the
    /// module's configured format, else the sink's.
    fn format_of(&self, d: &Delivery) -> Format {
        if let Some((_, v)) = d.route.headers.iter().find(|(k, _)| k == FORMAT_HEADER) {
            match v.as_slice() {
                b"canal" => return Format::Canal,
                b"debezium" => return Format::Debezium,
                other => {
                    // A module bug, not a reason to lose the event: say so, use the default.
                    if self
                        .bad_format_warned
                        .borrow_mut()
                        .insert(d.module.to_string())
                    {
                        tracing::warn!(
                            message = "Module asked for an unknown format; using the configured one.",
                            module = %d.module,
                            header = FORMAT_HEADER,
                            value = %String::from_utf8_lossy(other),
                            expected = "canal or debezium",
                        );
                    }
                }
            }
        }
        self.cfg
            .module_formats
            .get(&*d.module)
            .copied()
            .unwrap_or(self.cfg.sink.format)
    }

    /// The failure policy of module `name`, if it is one.
    fn module_policy(&self, name: &str) -> Option<Policy> {
        self.cfg
            .modules
            .iter()
            .find(|(m, _)| *m.name == *name)
            .map(|(m, _)| m.on_error.clone())
    }

    /// What to do with a message too large to publish, decided by `module` (empty:
    /// none). `sink.on_oversize = "dead-letter"` sends a reference to its topic; else
    /// the deciding module's policy applies (skip: dropped and counted; dead-letter: a
    /// reference to the module's dead-letter topic; halt: the agent stops naming the
    /// module, so a module cannot make the agent exit on every restart unless its owner
    /// chose halt). A message already on its way to a dead-letter topic halts rather
    /// than being referred again.
    fn oversize_action(&self, module: &str, dead_letter: bool) -> OversizeAction {
        match (&self.cfg.sink.oversize, self.module_policy(module)) {
            (Oversize::DeadLetter(topic), _) => OversizeAction::DeadLetter(topic.clone()),
            (Oversize::Halt, Some(Policy::DeadLetter(topic))) if !dead_letter => {
                OversizeAction::DeadLetter(topic)
            }
            (Oversize::Halt, Some(Policy::Skip)) => OversizeAction::Skip,
            _ => OversizeAction::Halt,
        }
    }

    /// Applies the oversize policy to one message. What counts is what the broker
    /// stores, key and headers included (a module's 50 MB key weighs 50 MB); see
    /// [`Run::oversize_action`]. `None`: the message is dropped.
    fn check_size(
        &self,
        mut msg: OutMessage,
        ev: &ChangeEvent,
        d: &Delivery,
    ) -> anyhow::Result<Option<OutMessage>> {
        let limit = self.cfg.sink.max_message_bytes;
        let bytes = msg.wire_bytes();
        if bytes <= limit {
            return Ok(Some(msg));
        }
        let key_bytes = msg.key.as_ref().map_or(0, Vec::len);
        let to = match self.oversize_action(&d.module, d.dead_letter.is_some()) {
            OversizeAction::DeadLetter(to) => to,
            OversizeAction::Skip => {
                crate::metrics::global()
                    .module(&d.module, &d.version)
                    .action("skip-oversize");
                tracing::warn!(
                    message = "Message over sink.max_message_bytes skipped by its module's policy.",
                    module = %d.module,
                    topic = %msg.topic,
                    position = %msg.position(),
                    bytes,
                    key_bytes,
                    limit,
                );
                return Ok(None);
            }
            OversizeAction::Halt => {
                return Err(SinkError::Oversize {
                    topic: msg.topic.to_string(),
                    position: msg.position(),
                    module: d.module.to_string(),
                    bytes,
                    limit,
                }
                .into());
            }
        };
        msg.payload = serde_json::json!({
            "oversize": true,
            "bytes": bytes,
            "payload_bytes": msg.payload.len(),
            "key_bytes": key_bytes,
            "topic": &*msg.topic,
            "position": msg.position(),
            "database": &ev.table.database,
            "table": &ev.table.table,
            "module": &*d.module,
        })
        .to_string()
        .into_bytes();
        msg.topic = Arc::from(to.as_str());
        msg.partition = None;
        msg.key = None;
        msg.headers
            .retain(|(k, v)| crate::sink::kept_on_reference(k, v));
        Ok(Some(msg))
    }

    /// Waits (at most `timeout`) until everything sent is acknowledged, putting what
    /// the broker refuses meanwhile through its policy.
    fn drain(&mut self, timeout: Duration) -> Result<(), SinkError> {
        let start = Instant::now();
        loop {
            self.settle_refused()?;
            let left = timeout.saturating_sub(start.elapsed());
            match self.sink.drain(left.min(Duration::from_millis(100))) {
                Err(SinkError::Timeout { in_flight, .. }) if left.is_zero() => {
                    return Err(SinkError::Timeout {
                        in_flight,
                        waited: timeout,
                    });
                }
                Err(SinkError::Timeout { .. }) => {}
                other => return other,
            }
        }
    }

    /// Puts the messages the broker refused as too large through the oversize policy
    /// ([`Run::oversize_action`]): skipped, or a reference sent to the dead-letter
    /// topic in the same transaction (sent before the original is settled, so the
    /// checkpoint never passes a transaction whose reference is not acknowledged), or
    /// the agent stops naming the module and both limits.
    fn settle_refused(&mut self) -> Result<(), SinkError> {
        for r in self.sink.take_refused() {
            let version = r.header("sluice.module.version").unwrap_or_default();
            let was_dead_letter = r.header("sluice.error.kind").is_some();
            let action = match r.reason {
                RefusalReason::TooLarge => self.oversize_action(&r.module, was_dead_letter),
                // Unroutable: the module's policy alone (the sink's oversize policy is
                // about size).
                RefusalReason::Unroutable | RefusalReason::Rejected => {
                    match self.module_policy(&r.module) {
                        Some(Policy::Skip) => OversizeAction::Skip,
                        Some(Policy::DeadLetter(t)) if !was_dead_letter => {
                            OversizeAction::DeadLetter(t)
                        }
                        _ => OversizeAction::Halt,
                    }
                }
            };
            let action = match action {
                // A reference refused in turn must not be referred again.
                OversizeAction::DeadLetter(to) if to == r.topic => OversizeAction::Halt,
                a => a,
            };
            match action {
                OversizeAction::Halt if r.reason == RefusalReason::Rejected => {
                    return Err(SinkError::Rejected {
                        topic: r.topic,
                        position: r.position,
                        detail: r.detail,
                    });
                }
                OversizeAction::Halt if r.reason == RefusalReason::Unroutable => {
                    return Err(SinkError::Unroutable {
                        position: r.position,
                        module: r.module,
                        detail: r.detail,
                    });
                }
                OversizeAction::Halt => {
                    return Err(SinkError::TooLarge {
                        topic: r.topic,
                        position: r.position,
                        detail: r.detail,
                    });
                }
                OversizeAction::Skip => {
                    let what = match r.reason {
                        RefusalReason::TooLarge => "skip-oversize",
                        RefusalReason::Unroutable => "skip-unroutable",
                        RefusalReason::Rejected => "skip-rejected",
                    };
                    metrics::global().module(&r.module, &version).action(what);
                    tracing::warn!(
                        message = "Message the broker refused skipped by its module's policy.",
                        reason = what,
                        module = %r.module,
                        topic = %r.topic,
                        position = %r.position,
                        payload_bytes = r.payload_bytes,
                        key_bytes = r.key_bytes,
                        error = %r.detail,
                    );
                }
                OversizeAction::DeadLetter(to) => {
                    let payload = serde_json::json!({
                        "oversize": r.reason == RefusalReason::TooLarge,
                        "reason": match r.reason {
                            RefusalReason::TooLarge => "too-large",
                            RefusalReason::Unroutable => "unroutable",
                            RefusalReason::Rejected => "rejected",
                        },
                        "refused_by_broker": &r.detail,
                        "payload_bytes": r.payload_bytes,
                        "key_bytes": r.key_bytes,
                        "topic": &r.topic,
                        "position": &r.position,
                        "database": r.header("sluice.db"),
                        "table": r.header("sluice.table"),
                        "module": &r.module,
                    });
                    let msg = OutMessage {
                        topic: Arc::from(to.as_str()),
                        partition: None,
                        key: None,
                        headers: r
                            .headers
                            .iter()
                            .map(|(k, v)| (k.clone().into(), HeaderValue::from(&v[..])))
                            .collect(),
                        payload: payload.to_string().into_bytes(),
                        txn: r.txn,
                    };
                    tracing::warn!(
                        message = "Message the broker refused sent to the dead-letter topic as a reference.",
                        module = %r.module,
                        topic = %r.topic,
                        dead_letter_topic = %to,
                        position = %r.position,
                        error = %r.detail,
                    );
                    self.sink.send(msg)?;
                }
            }
            self.sink.settle(&r);
        }
        Ok(())
    }

    /// `message = "transaction"`: appends a message to the transaction's message for the
    /// same destination (topic, and explicit partition or else key), sending that one
    /// first as a numbered part if the result would exceed `max_message_bytes`.
    fn gather(&mut self, msg: OutMessage) -> anyhow::Result<()> {
        let limit = self.cfg.sink.max_message_bytes;
        let same = |a: &Gathered| {
            a.msg.topic == msg.topic
                && a.msg.partition == msg.partition
                && (msg.partition.is_some() || a.msg.key == msg.key)
                && a.msg.header("sluice.module") == msg.header("sluice.module")
        };
        let at = self.gathered.iter().position(same);
        if let Some(i) = at
            && self.gathered[i].msg.wire_bytes() + msg.payload.len() + 2 > limit
        {
            let full = self.gathered.remove(i);
            let part = full.part + 1;
            self.send_gathered(full)?;
            self.gathered.push(Gathered::new(msg, part));
            return Ok(());
        }
        match at {
            Some(i) => self.gathered[i].push(msg),
            None => self.gathered.push(Gathered::new(msg, 0)),
        }
        Ok(())
    }

    fn send_gathered(&mut self, g: Gathered) -> anyhow::Result<()> {
        let mut msg = g.msg;
        msg.payload.push(b']');
        let set = |msg: &mut OutMessage, k: &str, v: String| match msg
            .headers
            .iter_mut()
            .find(|(n, _)| n == k)
        {
            Some(h) => h.1 = v.into_bytes().into(),
            None => msg
                .headers
                .push((k.to_string().into(), v.into_bytes().into())),
        };
        set(&mut msg, "sluice.events", g.events.to_string());
        set(&mut msg, "sluice.part", g.part.to_string());
        if g.mixed {
            set(&mut msg, "sluice.table", "*".into());
            set(&mut msg, "sluice.type", "*".into());
        }
        self.sink.send(msg)?;
        self.summary.messages += 1;
        Ok(())
    }

    /// Sends the transaction's gathered messages, in the order they were started.
    fn flush_gathered(&mut self) -> anyhow::Result<()> {
        for g in std::mem::take(&mut self.gathered) {
            self.send_gathered(g)?;
        }
        Ok(())
    }

    fn on_item(&mut self, item: SourceItem) -> anyhow::Result<()> {
        match item {
            SourceItem::Begin(ctx) => {
                self.txn += 1;
                self.in_txn = true;
                self.txn_seen = Instant::now();
                self.commit_ms = ctx.commit_ms;
            }
            SourceItem::Change(ev) => {
                self.count_rows(&ev);
                let parts = if self.cfg.split_pk_updates {
                    split_pk_updates(ev)
                } else {
                    vec![ev]
                };
                for p in parts {
                    self.chunk_rows += p.rows.len().max(1);
                    self.chunk.push(p);
                }
                if self.chunk_rows >= self.cfg.batch {
                    self.flush_chunk()?;
                }
            }
            SourceItem::Commit { checkpoint, .. } => {
                self.flush_chunk()?;
                self.flush_gathered()?;
                let m = metrics::global();
                m.transactions.inc();
                if self.commit_ms > 0 {
                    let lag = now_ms().saturating_sub(self.commit_ms) as f64 / 1000.0;
                    m.source_lag_seconds.set(lag);
                }
                m.source_file_index
                    .set(metrics::file_index(&checkpoint.file));
                m.source_offset.set(checkpoint.position as i64);
                self.read = Some(checkpoint.clone());
                self.in_txn = false;
                self.sink.commit(self.txn, checkpoint, self.txn_seen)?;
                self.summary.transactions += 1;
                if let Some(set) = &mut self.routers {
                    set.at_transaction_boundary(&self.recent);
                }
                self.recent.clear();
            }
        }
        Ok(())
    }

    fn count_rows(&mut self, ev: &ChangeEvent) {
        let key = (ev.table.table_id, ev.kind);
        let fresh = match self.table_metrics.get(&key) {
            Some((t, _, _)) => !Arc::ptr_eq(t, &ev.table),
            None => true,
        };
        if fresh {
            let (rows, bytes) =
                metrics::global().table(&ev.table.database, &ev.table.table, ev.kind.canal_name());
            if self.table_metrics.len() >= TABLE_CACHE {
                self.table_metrics.clear();
            }
            self.table_metrics
                .insert(key, (ev.table.clone(), rows, bytes));
        }
        if let Some((_, rows, bytes)) = self.table_metrics.get(&key) {
            rows.inc_by(ev.rows.len().max(1) as u64);
            bytes.inc_by(ev.rows.data.len() as u64);
        }
    }

    /// Keeps `sluice_source_lag_seconds` true while nothing is read (paused, a full
    /// window, a stalled pipeline): whenever the server has written past the stream,
    /// or read items wait for the pipeline (`queued`), the lag is the age of the
    /// transaction being read, growing with the clock until the pipeline moves on.
    /// Caught up, it keeps what the last commit measured.
    fn track_lag(&mut self, queued: bool) {
        let received = self.received.get();
        self.source_behind = queued || self.server_end.is_ahead_of(received.as_ref());
        if self.source_behind && self.commit_ms > 0 {
            let lag = now_ms().saturating_sub(self.commit_ms) as f64 / 1000.0;
            metrics::global().source_lag_seconds.set(lag);
        }
    }

    fn save_checkpoint(&mut self) -> anyhow::Result<()> {
        if let Some(cp) = self.sink.safe_checkpoint()?
            && self.saved.as_ref() != Some(&cp)
        {
            self.writer.submit(cp.clone())?;
            self.saved = Some(cp);
            self.summary.checkpoint = self.saved.clone();
        }
        self.writer.check()?;
        let counts = self.sink.counts();
        let behind =
            counts.0 > 0 || (self.read.is_some() && self.read != self.saved) || self.source_behind;
        self.ctl.update(|s| {
            s.messages = counts;
            s.behind = behind;
            s.read = self.read.clone();
        });
        Ok(())
    }

    /// Applies an operator command. Module swaps it asks for still wait for a
    /// transaction boundary ([`RouterSet`]).
    fn on_command(&mut self, cmd: Command) {
        use serde_json::json;
        let no_modules =
            || CommandError::Conflict("no modules are configured; nothing to swap".into());
        let result = match cmd.kind {
            CommandKind::Load { module, bytes } => match &self.routers {
                None => Err(no_modules()),
                Some(set) => {
                    let version = crate::router::engine::hash_hex(&bytes);
                    set.stage(&module, bytes)
                        .map(|()| {
                            tracing::info!(
                                message = "Module candidate loaded by the admin API; running its canary.",
                                module = %module,
                                version = %&version[..12],
                            );
                            json!({ "module": module, "version": version, "state": "canary" })
                        })
                        .map_err(CommandError::NotFound)
                }
            },
            CommandKind::Promote { module } => match &mut self.routers {
                None => Err(no_modules()),
                Some(set) => set
                    .promote(&module)
                    .map(|v| json!({ "module": module, "version": v, "state": "promoting" }))
                    .map_err(CommandError::Conflict),
            },
            CommandKind::Rollback { module } => match &self.routers {
                None => Err(no_modules()),
                Some(set) => set
                    .rollback(&module)
                    .map(|v| json!({ "module": module, "version": v, "state": "rolling-back" }))
                    .map_err(CommandError::Conflict),
            },
            CommandKind::CreateTopic { name, partitions } => {
                let Some(creator) = self.sink.topic_admin() else {
                    let _ = cmd.reply.send(Err(CommandError::Conflict(
                        "the sink is not Kafka; there are no topics to create".into(),
                    )));
                    return;
                };
                let (default_partitions, replication) = self
                    .cfg
                    .admin
                    .as_ref()
                    .map(|a| (a.topic_partitions, a.topic_replication))
                    .unwrap_or((1, 1));
                let partitions = partitions.unwrap_or(default_partitions);
                // The broker may take a while; the pipeline does not wait for it.
                tokio::spawn(async move {
                    let r = creator
                        .create(name.clone(), partitions, replication)
                        .await
                        .map(|()| {
                            tracing::info!(message = "Topic created by the admin API.", topic = %name, partitions);
                            json!({ "topic": name, "partitions": partitions, "replication": replication })
                        })
                        .map_err(|e| match e {
                            SinkError::TopicExists(_) => CommandError::Conflict(e.to_string()),
                            e => CommandError::Failed(e.to_string()),
                        });
                    let _ = cmd.reply.send(r);
                });
                return;
            }
        };
        let _ = cmd.reply.send(result);
    }
}

fn refs(v: &[Option<Vec<u8>>]) -> Vec<Option<&[u8]>> {
    v.iter().map(|x| x.as_deref()).collect()
}

/// The built-in key (no modules): primary-key values joined as the SDK's `KeyBuilder`
/// joins them, so keys from modules and from the agent agree.
fn pk_key(inp: &RouteInput<'_>) -> Option<Vec<u8>> {
    use sluice_sdk::abi::Cell as AbiCell;
    let t = &inp.event.table;
    if t.primary_key.is_empty() || inp.event.kind == ChangeKind::Ddl {
        return None;
    }
    let img = if inp.event.kind == ChangeKind::Update {
        inp.event.rows.image(inp.row, 1)
    } else {
        inp.event.rows.image(inp.row, 0)
    };
    let mut k = sluice_sdk::keys::KeyBuilder::new();
    for &c in &t.primary_key {
        k.part(match img.cell(c) {
            Cell::Value(v) => AbiCell::Value(v),
            Cell::Null => AbiCell::Null,
            Cell::Absent => AbiCell::Absent,
        });
    }
    Some(k.as_bytes().to_vec())
}

/// Reads module files and builds the router set.
fn load_routers(cfg: &Config) -> anyhow::Result<Option<RouterSet>> {
    if cfg.modules.is_empty() {
        return Ok(None);
    }
    let engine = Arc::new(RouterEngine::new(
        (cfg.modules.len() as u32) * 3 + 2,
        cfg.cache_dir.as_deref(),
    )?);
    let mut mods = Vec::new();
    for (spec, path) in &cfg.modules {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading module `{}` from {}", spec.name, path.display()))?;
        mods.push((spec.clone(), bytes));
    }
    Ok(Some(RouterSet::new(engine, mods)?))
}

/// Runs until `cancel` fires (clean shutdown: drain, checkpoint) or a failure a restart
/// cannot fix. Sink failures restart from the checkpoint with a new sink.
pub async fn run(
    cfg: Config,
    cancel: CancellationToken,
    ctl: Arc<Control>,
) -> anyhow::Result<RunSummary> {
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let result = run_once(&cfg, cancel.clone(), &ctl).await;
        ctl.update(|s| s.running = false);
        ctl.set_status(None);
        match result {
            Ok(s) => return Ok(s),
            Err(e) => {
                ctl.update(|s| s.sink_error = Some(crate::describe(&e)));
                if !restart_may_help(&e) || cancel.is_cancelled() {
                    return Err(e);
                }
                failures = if started.elapsed() > Duration::from_secs(60) {
                    1
                } else {
                    failures + 1
                };
                if failures > 5 {
                    return Err(e.context("the sink kept failing; giving up after 5 restarts"));
                }
                tracing::warn!(
                    message = "Sink failed; restarting from the last checkpoint.",
                    error = %crate::describe(&e),
                    attempt = failures,
                );
                metrics::global().restarts.inc();
                tokio::time::sleep(Duration::from_millis(500 * u64::from(failures))).await;
            }
        }
    }
}

/// Whether starting over from the checkpoint with a new sink can get past `e`: a
/// delivery that failed for good after the client's retries, or a producer that failed
/// or could not be set up. Not a message the broker will always refuse, a missing
/// topic, a bad module or a source error: those stop the agent with their error.
fn restart_may_help(e: &anyhow::Error) -> bool {
    e.downcast_ref::<SinkError>()
        .is_some_and(|s| matches!(s, SinkError::Delivery { .. } | SinkError::Setup(_)))
}

/// What happens to a message too large to publish.
enum OversizeAction {
    /// Dropped, counted and logged.
    Skip,
    /// A reference (position, table, sizes) goes to this topic instead.
    DeadLetter(String),
    /// The agent stops with an error naming the module and the settings.
    Halt,
}

/// What woke the pipeline loop.
enum Wake {
    Cancel,
    Command(Command),
    Pause,
    Hangup,
    Tick,
    WindowPoll,
    Item(Option<Result<SourceItem, SourceError>>),
}

/// How often a pipeline waiting for room in the sink's window looks again.
/// It starts at 1 ms and doubles while the window stays full, up to
/// [`WINDOW_POLL_MAX`]: a broker that is down for long costs a few hundred wake-ups a
/// second, not a thousand, and a window that frees up within a millisecond or two is
/// still noticed at once.
const WINDOW_POLL: Duration = Duration::from_millis(1);
const WINDOW_POLL_MAX: Duration = Duration::from_millis(4);

async fn run_once(
    cfg: &Config,
    cancel: CancellationToken,
    ctl: &Arc<Control>,
) -> anyhow::Result<RunSummary> {
    // One run at a time owns the command inbox.
    let mut inbox = ctl.inbox().lock().await;
    let mut pause = ctl.pause_watch();
    let resume = checkpoint::load(&cfg.checkpoint)?;
    let routers = load_routers(cfg)?;
    ctl.set_status(routers.as_ref().map(|r| r.status()));
    let sink = crate::sink::open(&cfg.sink)?;
    sink.check_topics(&cfg.declared_topics())?;

    let source = BinlogSource::connect(cfg.source.clone(), resume.clone())
        .await
        .context("starting replication")?;
    // Record the resolved start before anything is published: a crash before the first
    // acknowledged transaction must resume here, not at a new `latest`.
    let resume = match resume {
        Some(cp) => Some(cp),
        None => {
            checkpoint::store(&cfg.checkpoint, source.checkpoint())?;
            Some(source.checkpoint().clone())
        }
    };
    tracing::info!(message = "Replicating.", from = %source.checkpoint());
    ctl.update(|s| {
        s.running = true;
        s.sink_error = None;
        s.checkpoint = resume.clone();
        s.advanced_at = Instant::now();
    });
    let (tx, mut rx) = mpsc::channel::<Result<SourceItem, SourceError>>(256);
    let reader_cancel = cancel.child_token();
    let (received, server_end) = (source.received(), ServerEnd::default());
    // Lists the server's binlogs every heartbeat: lag in bytes, and whether the stream
    // is behind (which the pipeline needs while it reads nothing).
    tokio::spawn(crate::source::probe_lag(
        cfg.source.clone(),
        cfg.source.heartbeat,
        received.clone(),
        server_end.clone(),
        reader_cancel.clone(),
    ));
    let reader = {
        let stop = reader_cancel.clone();
        let mut source = source;
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    item = source.next() => item,
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        })
    };

    let mut run = Run {
        cfg,
        routers,
        sink,
        txn: 0,
        chunk: Vec::new(),
        chunk_rows: 0,
        recent: Vec::new(),
        msg_id: 0,
        json: Vec::with_capacity(4096),
        saved: resume,
        writer: {
            let ctl = ctl.clone();
            checkpoint::Writer::start(&cfg.checkpoint, move |cp| {
                let m = metrics::global();
                m.checkpoint_writes.inc();
                m.checkpoint_written_ms.set(now_ms() as i64);
                m.checkpoint_offset.set(cp.position as i64);
                ctl.update(|s| {
                    s.checkpoint = Some(cp.clone());
                    s.advanced_at = Instant::now();
                });
            })?
        },
        summary: RunSummary::default(),
        ctl: ctl.clone(),
        table_metrics: HashMap::new(),
        tables: HashMap::new(),
        kind_headers: Vec::new(),
        groups: Vec::new(),
        group_rows: Vec::new(),
        position: Vec::new(),
        event_at: None,
        event_messages: 0,
        read: None,
        commit_ms: 0,
        received,
        server_end,
        source_behind: false,
        in_txn: false,
        txn_seen: Instant::now(),
        gathered: Vec::new(),
        holding: false,
        bad_format_warned: Default::default(),
    };
    let mut watcher = cfg.modules_dir.as_deref().map(ModuleDir::new);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut tick = tokio::time::interval(cfg.checkpoint_interval);
    let mut last_poll = Instant::now();
    let mut window_poll = WINDOW_POLL;
    let result: anyhow::Result<()> = loop {
        let paused = *pause.borrow_and_update();
        // A full sink window stops reading, not the loop: acknowledged checkpoints are
        // still written, commands served and signals heard while the broker catches up.
        run.report_held();
        let room = run.sink.has_room();
        let waiting_since = Instant::now();
        let wake = tokio::select! {
            biased;
            _ = cancel.cancelled() => Wake::Cancel,
            Some(cmd) = inbox.recv() => Wake::Command(cmd),
            _ = pause.changed() => Wake::Pause,
            _ = hup.recv() => Wake::Hangup,
            _ = tick.tick() => Wake::Tick,
            _ = tokio::time::sleep(window_poll), if !room => Wake::WindowPoll,
            item = rx.recv(), if !paused && room => Wake::Item(item),
        };
        // Where the time went while nothing was being processed: held back by the sink,
        // or waiting on the source. Paused time is neither.
        let waited = waiting_since.elapsed().as_secs_f64();
        window_poll = match wake {
            Wake::WindowPoll => (window_poll * 2).min(WINDOW_POLL_MAX),
            _ if room => WINDOW_POLL,
            _ => window_poll,
        };
        if !room {
            metrics::global().window_full_seconds.inc_by(waited);
        } else if !paused {
            metrics::global().source_wait_seconds.inc_by(waited);
        }
        match wake {
            Wake::Cancel => break Ok(()),
            Wake::Command(cmd) => run.on_command(cmd),
            Wake::Pause => {}
            Wake::Hangup => {
                if let Some(set) = &run.routers {
                    for (spec, path) in &cfg.modules {
                        match std::fs::read(path) {
                            Ok(bytes)
                                if set.version_of(&spec.name)
                                    != Some(crate::router::engine::hash_hex(&bytes).as_str()) =>
                            {
                                if let Err(e) = set.propose(&spec.name, bytes) {
                                    tracing::warn!(message = "Cannot reload module.", module = %spec.name, error = %e);
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(message = "Cannot read module file.", module = %spec.name, error = %e)
                            }
                        }
                    }
                }
            }
            Wake::Tick => {
                let poll_modules = last_poll.elapsed() >= Duration::from_secs(1);
                if poll_modules {
                    last_poll = Instant::now();
                }
                if let (true, Some(w), Some(set)) =
                    (poll_modules, watcher.as_mut(), run.routers.as_ref())
                {
                    for (name, bytes) in w.poll() {
                        if let Err(e) = set.propose(&name, bytes) {
                            tracing::warn!(message = "Ignoring module file.", module = %name, error = %e);
                        }
                    }
                }
                if let Some(set) = run.routers.as_mut() {
                    // Between transactions an idle pipeline is at a boundary.
                    set.apply(!run.in_txn && run.chunk.is_empty());
                }
                run.track_lag(!rx.is_empty());
                if let Err(e) = run
                    .settle_refused()
                    .map_err(anyhow::Error::from)
                    .and_then(|()| run.save_checkpoint())
                {
                    break Err(e);
                }
            }
            Wake::WindowPoll => {
                if let Err(e) = run.sink.check().and_then(|()| run.sink.release_held()) {
                    break Err(e.into());
                }
                if let Err(e) = run.settle_refused() {
                    break Err(e.into());
                }
            }
            Wake::Item(None) => break Err(anyhow::anyhow!("the binlog reader stopped")),
            Wake::Item(Some(Err(e))) => {
                break Err(anyhow::Error::new(e).context("replication stopped"));
            }
            Wake::Item(Some(Ok(item))) => {
                if let Err(e) = run.on_item(item) {
                    break Err(e);
                }
            }
        }
    };
    // Closing the channel first: a reader parked on a full channel would otherwise never
    // see the cancellation, and this wait would never end.
    drop(rx);
    reader_cancel.cancel();
    let _ = reader.await;
    // Clean shutdown: an open transaction stays unacknowledged (it is re-read on
    // restart); everything committed is drained and checkpointed.
    let drained = match &result {
        Ok(()) => match run.drain(DRAIN_TIMEOUT) {
            // A stop asked for while messages wait for their topic: they are re-read
            // from the checkpoint at the next start, so this is no failure of the stop.
            Err(e @ SinkError::MissingTopic { .. }) => {
                tracing::warn!(message = "Stopping with messages held.", reason = %e);
                Ok(())
            }
            other => other,
        },
        Err(_) => Ok(()),
    };
    // Whatever happened, record what is safe.
    let saved = run.save_checkpoint().and_then(|()| run.writer.flush());
    result?;
    drained?;
    saved?;
    let (_, acked) = run.sink.counts();
    tracing::info!(
        message = "Stopped.",
        transactions = run.summary.transactions,
        messages = run.summary.messages,
        acknowledged = acked,
        checkpoint = %run.summary.checkpoint.as_ref().map(|c| c.to_string()).unwrap_or_default(),
    );
    Ok(run.summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Charset, Column, ColumnKind, Position, TableSchema, TxnContext};

    #[test]
    fn only_failures_a_restart_can_fix_restart() {
        let sink = |e: SinkError| anyhow::Error::new(e).context("publishing");
        let at = || {
            (
                "t".to_string(),
                "binlog.000001:4:0".to_string(),
                "x".to_string(),
            )
        };
        let (topic, position, detail) = at();
        assert!(restart_may_help(&sink(SinkError::Delivery {
            topic,
            position,
            detail
        })));
        assert!(restart_may_help(&sink(SinkError::Setup("fatal".into()))));
        let (topic, position, detail) = at();
        assert!(!restart_may_help(&sink(SinkError::TooLarge {
            topic,
            position,
            detail
        })));
        assert!(!restart_may_help(&sink(SinkError::MissingTopic {
            topic: "t".into(),
            context: None
        })));
        assert!(!restart_may_help(&anyhow::anyhow!("replication stopped")));
    }

    #[test]
    fn pk_change_becomes_delete_and_insert() {
        let col = |n: &str| Column {
            name: n.into(),
            type_code: 3,
            kind: ColumnKind::Int { bytes: 4 },
            unsigned: false,
            charset: Charset::Utf8,
            collation: None,
            labels: None,
            refinement: None,
            sql_type: "int".into(),
            nullable: false,
        };
        let t = Arc::new(TableSchema {
            table_id: 1,
            database: "d".into(),
            table: "t".into(),
            columns: vec![col("id"), col("v")],
            primary_key: vec![0],
            names_known: true,
        });
        let mut rows = Rows::new(2, 2);
        rows.push_image(&[Some(b"1"), Some(b"a")]);
        rows.push_image(&[Some(b"1"), Some(b"b")]);
        rows.push_image(&[Some(b"2"), Some(b"x")]);
        rows.push_image(&[Some(b"3"), Some(b"x")]);
        let ev = ChangeEvent {
            position: Position {
                file: Arc::from("f"),
                offset: 4,
                next: 9,
                sub: 0,
            },
            server_id: 1,
            event_ms: 0,
            txn: Arc::new(TxnContext {
                gtid: None,
                commit_ms: 0,
            }),
            kind: ChangeKind::Update,
            table: t,
            rows,
            sql: None,
        };
        let parts = split_pk_updates(ev);
        let kinds: Vec<ChangeKind> = parts.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            [ChangeKind::Update, ChangeKind::Delete, ChangeKind::Insert]
        );
        assert_eq!(parts[0].rows.len(), 1);
        assert_eq!(parts[1].rows.image(0, 0).cell(0), Cell::Value(b"2"));
        assert_eq!(parts[2].rows.image(0, 0).cell(0), Cell::Value(b"3"));
    }
}
