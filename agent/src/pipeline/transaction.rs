//! A transaction's changes on their way to messages: source items (begin, change,
//! commit), batches of changes routed together, and the key used when no module routes.
//!
//! Invariants: a transaction's changes are routed in binlog order, in batches of at
//! most `router.batch` rows, and all of them before its commit reaches the publisher;
//! module swaps wait for the commit ([`crate::router::RouterSet::at_transaction_boundary`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;

use crate::event::{Cell, ChangeEvent, ChangeKind, Rows, SourceItem};
use crate::metrics;
use crate::router::{Delivery, Route, RouteInput};

use super::{Run, TABLE_CACHE, now_ms};

/// The transaction being read.
pub(super) struct OpenTxn {
    /// Its sequence number (messages carry it; acknowledgements count by it).
    pub(super) seq: u64,
    /// Between a Begin and its Commit.
    pub(super) active: bool,
    /// When its first event reached the pipeline.
    pub(super) seen: Instant,
    /// Its commit time (ms since the epoch).
    pub(super) commit_ms: u64,
    /// Changes waiting to be routed together, and their rows.
    pub(super) chunk: Vec<ChangeEvent>,
    pub(super) chunk_rows: usize,
    /// A few recent changes, for module canaries.
    pub(super) recent: Vec<ChangeEvent>,
    /// `message = "transaction"`: its messages per destination.
    pub(super) gathered: Vec<super::gather::Gathered>,
    /// Per-table metric handles, so no label set is built per change.
    pub(super) table_metrics: HashMap<(u64, ChangeKind), TableCounters>,
}

/// A table version and its row and byte counters.
pub(super) type TableCounters = (Arc<crate::event::TableSchema>, Counter, Counter);

impl OpenTxn {
    pub(super) fn new() -> Self {
        OpenTxn {
            seq: 0,
            active: false,
            seen: Instant::now(),
            commit_ms: 0,
            chunk: Vec::new(),
            chunk_rows: 0,
            recent: Vec::new(),
            gathered: Vec::new(),
            table_metrics: HashMap::new(),
        }
    }
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

impl Run<'_> {
    pub(super) fn on_item(&mut self, item: SourceItem) -> anyhow::Result<()> {
        match item {
            SourceItem::Begin(ctx) => {
                self.open.seq += 1;
                self.open.active = true;
                self.open.seen = Instant::now();
                self.open.commit_ms = ctx.commit_ms;
            }
            SourceItem::Change(ev) => {
                self.count_rows(&ev);
                let parts = if self.cfg.split_pk_updates {
                    split_pk_updates(ev)
                } else {
                    vec![ev]
                };
                for p in parts {
                    self.open.chunk_rows += p.rows.len().max(1);
                    self.open.chunk.push(p);
                }
                if self.open.chunk_rows >= self.cfg.batch {
                    self.flush_chunk()?;
                }
            }
            SourceItem::Commit { checkpoint, .. } => {
                self.flush_chunk()?;
                self.flush_gathered()?;
                let m = metrics::global();
                m.transactions.inc();
                if self.open.commit_ms > 0 {
                    let lag = now_ms().saturating_sub(self.open.commit_ms) as f64 / 1000.0;
                    m.source_lag_seconds.set(lag);
                }
                m.source_file_index
                    .set(metrics::file_index(&checkpoint.file));
                m.source_offset.set(checkpoint.position as i64);
                self.progress.read = Some(checkpoint.clone());
                self.open.active = false;
                self.sink
                    .commit(self.open.seq, checkpoint, self.open.seen)?;
                self.progress.summary.transactions += 1;
                if let Some(set) = &mut self.routers {
                    set.at_transaction_boundary(&self.open.recent);
                }
                self.open.recent.clear();
            }
        }
        Ok(())
    }

    pub(super) fn route(&mut self, inputs: &[RouteInput<'_>]) -> anyhow::Result<Vec<Delivery>> {
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
    pub(super) fn flush_chunk(&mut self) -> anyhow::Result<()> {
        if self.open.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.open.chunk);
        self.open.chunk_rows = 0;
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
        if self.open.recent.len() < 8 {
            let room = 8 - self.open.recent.len();
            self.open.recent.extend(chunk.into_iter().take(room));
        }
        Ok(())
    }

    pub(super) fn count_rows(&mut self, ev: &ChangeEvent) {
        let key = (ev.table.table_id, ev.kind);
        let fresh = match self.open.table_metrics.get(&key) {
            Some((t, _, _)) => !Arc::ptr_eq(t, &ev.table),
            None => true,
        };
        if fresh {
            let (rows, bytes) =
                metrics::global().table(&ev.table.database, &ev.table.table, ev.kind.canal_name());
            if self.open.table_metrics.len() >= TABLE_CACHE {
                self.open.table_metrics.clear();
            }
            self.open
                .table_metrics
                .insert(key, (ev.table.clone(), rows, bytes));
        }
        if let Some((_, rows, bytes)) = self.open.table_metrics.get(&key) {
            rows.inc_by(ev.rows.len().max(1) as u64);
            bytes.inc_by(ev.rows.data.len() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Charset, Column, ColumnKind, Position, TableSchema, TxnContext};

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
