//! Message assembly: one change's deliveries grouped into messages (per destination,
//! per row, or per event), rendered in the chosen format, with Sluice's headers and a
//! unique, repeatable `sluice.position`.
//!
//! Invariants: rows sharing a destination keep their order inside one message; every
//! message of one binlog event gets the next index N in `FILE:OFFSET[/SUB]:N`, so
//! positions are unique and strictly increasing per partition and repeat exactly when
//! a message is sent again after a restart.

use std::collections::HashMap;
use std::sync::Arc;

use crate::event::{ChangeEvent, ChangeKind, TableSchema};
use crate::format::{Format, canal, debezium};
use crate::router::Delivery;
use crate::sink::config::MessageUnit;
use crate::sink::{HeaderValue, OutMessage, POSITION_HEADER};

use super::{FORMAT_HEADER, Run, TABLE_CACHE, now_ms};

/// Buffers and caches reused from message to message, so a warm pipeline allocates
/// little per message.
pub(super) struct Assembly {
    /// Canal's `id`: messages made so far.
    pub(super) msg_id: u64,
    /// The payload being rendered.
    pub(super) json: Vec<u8>,
    /// Per-table renderings every message of the table repeats, by table id.
    pub(super) tables: HashMap<u64, Arc<TableOut>>,
    /// `sluice.type` header values, one per kind.
    pub(super) kind_headers: Vec<(ChangeKind, HeaderValue)>,
    /// Destination groups of the change at hand and their rows (see `publish_change`).
    pub(super) groups: Vec<(usize, Format)>,
    pub(super) group_rows: Vec<Vec<usize>>,
    /// The position header being written.
    pub(super) position: Vec<u8>,
    /// The binlog event (file, offset, sub) whose messages are being made, and how many
    /// it has made so far: the last part of `sluice.position` (see
    /// [`Run::next_position`]).
    pub(super) event_at: Option<(Arc<str>, u64, u32)>,
    pub(super) event_messages: u32,
    /// Modules already warned about a bad `sluice.format` header.
    pub(super) bad_format_warned: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

impl Assembly {
    pub(super) fn new() -> Self {
        Assembly {
            msg_id: 0,
            json: Vec::with_capacity(4096),
            tables: HashMap::new(),
            kind_headers: Vec::new(),
            groups: Vec::new(),
            group_rows: Vec::new(),
            position: Vec::new(),
            event_at: None,
            event_messages: 0,
            bad_format_warned: Default::default(),
        }
    }
}

/// What every message of one table version repeats, rendered once.
pub(super) struct TableOut {
    canal: canal::TableJson,
    database: HeaderValue,
    table: HeaderValue,
}

impl TableOut {
    pub(super) fn new(t: &Arc<TableSchema>) -> Self {
        TableOut {
            canal: canal::TableJson::new(t),
            database: HeaderValue::from(t.database.as_bytes()),
            table: HeaderValue::from(t.table.as_bytes()),
        }
    }
}

impl Run<'_> {
    /// The renderings of `t`'s table version, made on its first message.
    pub(super) fn table_out(&mut self, t: &Arc<TableSchema>) -> Arc<TableOut> {
        match self.asm.tables.get(&t.table_id) {
            Some(o) if o.canal.renders(t) => o.clone(),
            _ => {
                let o = Arc::new(TableOut::new(t));
                if self.asm.tables.len() >= TABLE_CACHE {
                    self.asm.tables.clear();
                }
                self.asm.tables.insert(t.table_id, o.clone());
                o
            }
        }
    }

    pub(super) fn kind_header(&mut self, kind: ChangeKind) -> HeaderValue {
        if let Some((_, v)) = self.asm.kind_headers.iter().find(|(k, _)| *k == kind) {
            return v.clone();
        }
        let v = HeaderValue::from(kind.canal_name().as_bytes());
        self.asm.kind_headers.push((kind, v.clone()));
        v
    }

    pub(super) fn publish_change(
        &mut self,
        ev: &ChangeEvent,
        first_input: usize,
        ds: &[Delivery],
    ) -> anyhow::Result<()> {
        // Rows sharing a destination form one message (Canal's split by partition); with
        // `message = "row"`, or Debezium, one message per row. Group `g` is
        // `groups[g]` (its first delivery and format) and `group_rows[g]`; both are
        // reused from change to change, so grouping allocates nothing once warm.
        let mut groups = std::mem::take(&mut self.asm.groups);
        let mut group_rows = std::mem::take(&mut self.asm.group_rows);
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
        self.asm.groups = groups;
        self.asm.group_rows = group_rows;
        result
    }

    /// Renders and sends (or gathers) the message of `rows` of `ev` for delivery `d`.
    pub(super) fn publish_group(
        &mut self,
        ev: &ChangeEvent,
        d: &Delivery,
        format: Format,
        rows: &[usize],
        table: &TableOut,
        kind: &HeaderValue,
    ) -> anyhow::Result<()> {
        self.asm.msg_id += 1;
        self.asm.json.clear();
        match format {
            Format::Canal => canal::flat_message_rows(
                &mut self.asm.json,
                ev,
                &table.canal,
                rows,
                self.asm.msg_id,
                now_ms(),
            ),
            Format::Debezium => debezium::envelope(&mut self.asm.json, ev, rows[0], now_ms()),
            Format::CanalProtobuf => {}
        }
        self.next_position(ev);
        if format == Format::CanalProtobuf {
            // The entry's header carries the position, so it is rendered after it.
            let position = String::from_utf8_lossy(&self.asm.position).into_owned();
            crate::format::canal_entry::row_entry(&mut self.asm.json, ev, rows, &position);
        }
        let mut headers: Vec<(std::borrow::Cow<'static, str>, HeaderValue)> = Vec::with_capacity(
            6 + if d.dead_letter.is_some() { 2 } else { 0 } + d.route.headers.len(),
        );
        headers.extend([
            ("sluice.db".into(), table.database.clone()),
            ("sluice.table".into(), table.table.clone()),
            ("sluice.type".into(), kind.clone()),
            (
                POSITION_HEADER.into(),
                HeaderValue::from(&self.asm.position[..]),
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
                let hint = self.asm.json.len() + self.asm.json.len() / 4 + 256;
                std::mem::replace(&mut self.asm.json, Vec::with_capacity(hint))
            },
            txn: self.open.seq,
        };
        let Some(msg) = self.check_size(msg, ev, d)? else {
            return Ok(());
        };
        if self.cfg.sink.unit == MessageUnit::Transaction {
            self.gather(msg)?;
        } else {
            self.sink.send(msg)?;
            self.progress.summary.messages += 1;
        }
        Ok(())
    }

    /// Writes the next message's `sluice.position` into `self.asm.position`:
    /// `FILE:OFFSET[/SUB]:N`, the binlog event the message comes from and N, its index
    /// among the messages made from that event (0, 1, ...). The parts of a split event
    /// (a primary-key change's delete and insert) and every destination's messages
    /// count on from one another, so positions are unique, and since messages of one
    /// partition are sent in the order they are made, strictly increasing per
    /// partition as (file number, offset, sub, N). The numbering depends only on the
    /// binlog and the modules' decisions, so a message sent again after a restart
    /// repeats its old position: consumers deduplicate by it.
    pub(super) fn next_position(&mut self, ev: &ChangeEvent) {
        let p = &ev.position;
        let same = self
            .asm
            .event_at
            .as_ref()
            .is_some_and(|(f, o, s)| *o == p.offset && *s == p.sub && **f == *p.file);
        if same {
            self.asm.event_messages += 1;
        } else {
            self.asm.event_at = Some((p.file.clone(), p.offset, p.sub));
            self.asm.event_messages = 0;
        }
        self.asm.position.clear();
        use std::io::Write;
        // Writing into a Vec cannot fail.
        let _ = write!(self.asm.position, "{}:{}", p, self.asm.event_messages);
    }

    /// The format of a delivery: the module's `sluice.format` decision header, else the
    /// module's configured format, else the sink's.
    pub(super) fn format_of(&self, d: &Delivery) -> Format {
        // A publisher that carries one format only (the Canal server) gets it whatever a
        // module asks.
        if self.cfg.sink.format == Format::CanalProtobuf {
            return Format::CanalProtobuf;
        }
        if let Some((_, v)) = d.route.headers.iter().find(|(k, _)| k == FORMAT_HEADER) {
            match v.as_slice() {
                b"canal" => return Format::Canal,
                b"debezium" => return Format::Debezium,
                other => {
                    // A module bug, not a reason to lose the event: say so, use the default.
                    if self
                        .asm
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
}
