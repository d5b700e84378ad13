//! One Canal destination's stream: the entries routed to it, in binlog order, cut into
//! batches a client fetches, acknowledges or rolls back.
//!
//! Invariants:
//! - entries leave only by acknowledgement: a batch fetched and not acknowledged (the
//!   client rolled back, disconnected, or the agent stopped) is delivered again, in the
//!   same order, before anything after it;
//! - an acknowledgement names the oldest batch outstanding (Canal's rule), so
//!   acknowledgements move the cursor forward only, in order;
//! - every entry's header position (`logfileName`, `logfileOffset`) is unique and
//!   increasing within the destination: a transaction's begin sits just before its
//!   first row event, its end at its commit boundary, and a row event whose messages
//!   cannot share one entry has its later parts at `offset + 1, + 2, ...` (still inside
//!   the event, so before the next one) — so a client's "skip what is at or below the
//!   last position processed" is exact;
//! - a batch holds whole transactions when they fit in the fetch size, and never cuts an
//!   entry.

use std::collections::VecDeque;
use std::sync::Arc;

use prost::Message;

use crate::format::canal_entry::{self, Entry};

/// A position in the binlog as entries are ordered: (file number, offset).
pub type PosKey = (u64, u64);

/// The ordering key of `file`:`offset` (the number after the file name's last dot).
pub fn pos_key(file: &str, offset: u64) -> PosKey {
    let n = file
        .rsplit_once('.')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0);
    (n, offset)
}

/// One entry on its way, and the window messages it stands for.
#[derive(Debug, Clone)]
pub struct Item {
    /// Transaction sequence (the pipeline's).
    pub txn: u64,
    /// The serialised entry.
    pub entry: Vec<u8>,
    /// Its header position.
    pub key: PosKey,
    /// `database.table` of a row entry (for the client's filter); `None` for begin/end.
    pub table: Option<(Arc<str>, Arc<str>)>,
    /// Window messages (transaction, bytes) acknowledged with this entry.
    pub messages: Vec<(u64, u64)>,
    /// The row event it comes from and its type, for merging: (key, sub, event type).
    event: Option<(PosKey, u32, i32)>,
}

/// A batch handed to a client and not yet acknowledged.
#[derive(Debug)]
struct Batch {
    id: i64,
    items: Vec<Item>,
}

/// Why an acknowledgement was refused (Canal's error code 400 or 402).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// Batch 0: Canal's "batchId should assign value".
    #[error("batchId should assign value")]
    Zero,
    /// Not the oldest outstanding batch.
    #[error("batchId:{got} is not the firstly:{oldest}")]
    OutOfOrder {
        /// What the client named.
        got: i64,
        /// The oldest outstanding batch.
        oldest: i64,
    },
    /// No such batch outstanding.
    #[error("ack error, batchId:{0} is not exist, please check")]
    Unknown(i64),
}

/// What [`Destination::ack`] releases.
#[derive(Debug, Default)]
pub struct Acked {
    /// Window messages now acknowledged.
    pub messages: Vec<(u64, u64)>,
    /// The position of the last entry acknowledged.
    pub cursor: Option<PosKey>,
    /// Entries acknowledged.
    pub entries: u64,
}

/// A batch to send.
#[derive(Debug)]
pub struct Fetched {
    /// Its id (> 0).
    pub id: i64,
    /// Serialised entries, filtered by the client's filter.
    pub entries: Vec<Vec<u8>>,
}

/// One destination.
#[derive(Debug, Default)]
pub struct Destination {
    pending: VecDeque<Item>,
    outstanding: VecDeque<Batch>,
    last_batch: i64,
    /// The transaction whose begin is queued and whose end is not.
    open_txn: Option<u64>,
    /// Position of the last entry queued (keys only grow).
    last_key: Option<PosKey>,
    /// Position acknowledged by a client in an earlier run: entries at or below it were
    /// processed, and are acknowledged without being sent again.
    resume_after: Option<PosKey>,
    /// Server and time of the open transaction's last row, for its end entry.
    last_row_meta: (u32, u64, String),
}

impl Destination {
    /// A destination whose client acknowledged up to `resume_after` in an earlier run.
    pub fn new(resume_after: Option<PosKey>) -> Self {
        Destination {
            resume_after,
            ..Destination::default()
        }
    }

    /// Entries queued and not yet fetched.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Batches fetched and not acknowledged.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Queues a row entry (a serialised [`Entry`] from
    /// [`canal_entry::row_entry`]) of transaction `txn`, standing for a window message
    /// of `bytes`. Returns the messages to acknowledge at once (entries an earlier run's
    /// client already acknowledged), or `Err` naming what is wrong with the entry.
    pub fn push_row(
        &mut self,
        txn: u64,
        entry: Vec<u8>,
        bytes: u64,
    ) -> Result<Vec<(u64, u64)>, String> {
        let mut e = Entry::decode(&entry[..]).map_err(|e| format!("not a Canal entry: {e}"))?;
        let h = e.header.clone().unwrap_or_default();
        let event_key = pos_key(&h.logfile_name, h.logfile_offset.max(0) as u64);
        let sub = h
            .props
            .iter()
            .find(|p| p.key == canal_entry::POSITION_PROP)
            .and_then(|p| p.value.rsplit_once(':'))
            .and_then(|(rest, _)| rest.rsplit_once('/'))
            .and_then(|(_, s)| s.parse().ok())
            .unwrap_or(0);
        let event_type = h.event_type.unwrap_or(0);
        self.last_row_meta = (
            h.server_id as u32,
            h.execute_time.max(0) as u64,
            h.gtid.clone(),
        );
        // Already processed by the client before a restart: acknowledged, not resent.
        if self.resume_after.is_some_and(|r| event_key <= r) {
            return Ok(vec![(txn, bytes)]);
        }
        if self.open_txn != Some(txn) {
            self.open_txn = Some(txn);
            let begin_key = (event_key.0, event_key.1.saturating_sub(1));
            self.queue(Item {
                txn,
                entry: canal_entry::transaction_entry(
                    true,
                    &h.logfile_name,
                    begin_key.1,
                    h.server_id as u32,
                    h.execute_time.max(0) as u64,
                    "",
                    &h.gtid,
                ),
                key: begin_key,
                table: None,
                messages: Vec::new(),
                event: None,
            });
        }
        // The same event (and type) as the entry before it, not yet fetched: one entry
        // with both's rows, as Canal makes one entry per event.
        if let Some(last) = self.pending.back_mut()
            && let Some((k, s, t)) = last.event
            && k == event_key
            && s == sub
            && t == event_type
            && last.txn == txn
        {
            let mut merged = Entry::decode(&last.entry[..]).map_err(|e| e.to_string())?;
            merged.store_value.extend_from_slice(&e.store_value);
            last.entry = merged.encode_to_vec();
            last.messages.push((txn, bytes));
            return Ok(Vec::new());
        }
        // A later part of an event already queued: the next free offset inside it.
        let mut key = event_key;
        if let Some(last) = self.last_key
            && last >= key
        {
            key = (last.0, last.1 + 1);
            if let Some(h) = e.header.as_mut() {
                h.logfile_offset = key.1 as i64;
            }
        }
        let entry = if key != event_key {
            e.encode_to_vec()
        } else {
            entry
        };
        let table = (
            Arc::from(h.schema_name.as_str()),
            Arc::from(h.table_name.as_str()),
        );
        self.queue(Item {
            txn,
            entry,
            key,
            table: Some(table),
            messages: vec![(txn, bytes)],
            event: Some((event_key, sub, event_type)),
        });
        Ok(Vec::new())
    }

    /// Transaction `txn` committed; `file`:`offset` is the boundary after it.
    pub fn end(&mut self, txn: u64, file: &str, offset: u64) {
        if self.open_txn != Some(txn) {
            return;
        }
        self.open_txn = None;
        let key = pos_key(file, offset);
        if self.resume_after.is_some_and(|r| key <= r) {
            return;
        }
        let (server, ms, gtid) = self.last_row_meta.clone();
        let id = if gtid.is_empty() {
            format!("{file}:{offset}")
        } else {
            gtid.clone()
        };
        self.queue(Item {
            txn,
            entry: canal_entry::transaction_entry(false, file, offset, server, ms, &id, &gtid),
            key,
            table: None,
            messages: Vec::new(),
            event: None,
        });
    }

    fn queue(&mut self, item: Item) {
        self.last_key = Some(self.last_key.map_or(item.key, |k| k.max(item.key)));
        self.pending.push_back(item);
    }

    /// The next batch of at most `fetch` entries (at least 1): whole transactions while
    /// they fit; a transaction larger than `fetch` alone is cut between entries. Entries
    /// `keep` rejects (the client's table filter) are part of the batch but not sent.
    /// `None` when nothing is pending.
    pub fn fetch(&mut self, fetch: usize, keep: &dyn Fn(&str, &str) -> bool) -> Option<Fetched> {
        let fetch = fetch.max(1);
        if self.pending.is_empty() {
            return None;
        }
        let mut take = 0;
        let mut i = 0;
        // Walk transaction by transaction: `i` is the start of the next one.
        while i < self.pending.len() && take < fetch {
            let txn = self.pending[i].txn;
            let mut j = i;
            while j < self.pending.len() && self.pending[j].txn == txn {
                j += 1;
            }
            let whole = j - i;
            if take + whole <= fetch {
                take += whole;
                i = j;
            } else {
                if take == 0 {
                    take = fetch;
                }
                break;
            }
        }
        let items: Vec<Item> = self.pending.drain(..take).collect();
        self.last_batch += 1;
        let id = self.last_batch;
        let entries = items
            .iter()
            .filter(|it| it.table.as_ref().is_none_or(|(d, t)| keep(d, t)))
            .map(|it| it.entry.clone())
            .collect();
        self.outstanding.push_back(Batch { id, items });
        Some(Fetched { id, entries })
    }

    /// The client acknowledged batch `id`, which must be the oldest outstanding.
    pub fn ack(&mut self, id: i64) -> Result<Acked, AckError> {
        if id == 0 {
            return Err(AckError::Zero);
        }
        let Some(oldest) = self.outstanding.front().map(|b| b.id) else {
            return Err(AckError::Unknown(id));
        };
        if id != oldest {
            return Err(if self.outstanding.iter().any(|b| b.id == id) {
                AckError::OutOfOrder { got: id, oldest }
            } else {
                AckError::Unknown(id)
            });
        }
        let mut out = Acked::default();
        if let Some(b) = self.outstanding.pop_front() {
            out.entries = b.items.len() as u64;
            for it in b.items {
                out.cursor = Some(it.key);
                out.messages.extend(it.messages);
            }
        }
        Ok(out)
    }

    /// Batch `id` and every later one (all of them with `id` 0) come again, in order,
    /// before anything not yet fetched.
    pub fn rollback(&mut self, id: i64) {
        let from = if id == 0 {
            0
        } else {
            match self.outstanding.iter().position(|b| b.id == id) {
                Some(i) => i,
                None => return,
            }
        };
        while self.outstanding.len() > from {
            if let Some(b) = self.outstanding.pop_back() {
                for it in b.items.into_iter().rev() {
                    self.pending.push_front(it);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::canal_entry::{Header, Pair, RowChange, entry_type};

    fn row(file: &str, offset: u64, n: u32, event_type: i32, rows: usize) -> Vec<u8> {
        let change = RowChange {
            event_type: Some(event_type),
            row_datas: vec![Default::default(); rows],
            ..RowChange::default()
        };
        Entry {
            header: Some(Header {
                logfile_name: file.into(),
                logfile_offset: offset as i64,
                schema_name: "shop".into(),
                table_name: if offset.is_multiple_of(2) {
                    "orders"
                } else {
                    "users"
                }
                .into(),
                event_type: Some(event_type),
                props: vec![Pair {
                    key: canal_entry::POSITION_PROP.into(),
                    value: format!("{file}:{offset}:{n}"),
                }],
                ..Header::default()
            }),
            entry_type: Some(entry_type::ROW_DATA),
            store_value: change.encode_to_vec(),
        }
        .encode_to_vec()
    }

    fn keys(f: &Fetched) -> Vec<(i32, i64, usize)> {
        f.entries
            .iter()
            .map(|e| {
                let e = Entry::decode(&e[..]).expect("entry");
                let rows = RowChange::decode(&e.store_value[..]).map_or(0, |c| c.row_datas.len());
                (
                    e.entry_type.unwrap_or(0),
                    e.header.map_or(0, |h| h.logfile_offset),
                    rows,
                )
            })
            .collect()
    }

    /// Two transactions of two row events each; one event's rows arrive in two
    /// messages (two partitions) and become one entry.
    fn two_transactions() -> Destination {
        let mut d = Destination::new(None);
        let b = "binlog.000003";
        d.push_row(1, row(b, 100, 0, 1, 2), 10).expect("row");
        d.push_row(1, row(b, 100, 1, 1, 1), 10).expect("merged");
        d.push_row(1, row(b, 200, 0, 2, 1), 10).expect("row");
        d.end(1, b, 300);
        d.push_row(2, row(b, 400, 0, 3, 1), 10).expect("row");
        d.end(2, b, 500);
        d
    }

    #[test]
    fn entries_are_whole_transactions_with_increasing_positions() {
        let mut d = two_transactions();
        let all = |_: &str, _: &str| true;
        let f = d.fetch(100, &all).expect("a batch");
        assert_eq!(
            keys(&f),
            [
                (1, 99, 0),
                (2, 100, 3),
                (2, 200, 1),
                (3, 300, 0),
                (1, 399, 0),
                (2, 400, 1),
                (3, 500, 0)
            ]
        );
        // Fetch 5: the first transaction (4 entries) fits, the second does not.
        let mut d = two_transactions();
        assert_eq!(d.fetch(5, &all).map(|f| f.entries.len()), Some(4));
        assert_eq!(d.fetch(5, &all).map(|f| f.entries.len()), Some(3));
        assert!(d.fetch(5, &all).is_none());
        // Fetch 2: a transaction larger than the fetch size is cut between entries.
        let mut d = two_transactions();
        assert_eq!(d.fetch(2, &all).map(|f| f.entries.len()), Some(2));
    }

    #[test]
    fn a_split_event_that_cannot_merge_gets_the_next_offsets() {
        let mut d = Destination::new(None);
        let b = "binlog.000003";
        // A primary-key change split into a delete and an insert of one event.
        d.push_row(1, row(b, 100, 0, 3, 1), 1).expect("delete");
        d.push_row(1, row(b, 100, 1, 1, 1), 1).expect("insert");
        d.end(1, b, 300);
        let f = d.fetch(10, &|_, _| true).expect("batch");
        let offsets: Vec<i64> = keys(&f).iter().map(|k| k.1).collect();
        assert_eq!(offsets, [99, 100, 101, 300]);
    }

    #[test]
    fn acks_go_in_order_and_rollbacks_redeliver_from_the_batch_named() {
        let mut d = two_transactions();
        let all = |_: &str, _: &str| true;
        let first = d.fetch(4, &all).expect("first");
        let second = d.fetch(4, &all).expect("second");
        assert_eq!(d.ack(0).map(|_| ()), Err(AckError::Zero));
        assert_eq!(
            d.ack(second.id).map(|_| ()),
            Err(AckError::OutOfOrder {
                got: second.id,
                oldest: first.id
            })
        );
        assert_eq!(d.ack(99).map(|_| ()), Err(AckError::Unknown(99)));
        // Roll back the second batch only: the first stays outstanding.
        d.rollback(second.id);
        assert_eq!(d.outstanding(), 1);
        let again = d.fetch(4, &all).expect("again");
        assert_eq!(keys(&again), keys(&second));
        let acked = d.ack(first.id).expect("in order");
        assert_eq!(
            acked.messages.len(),
            3,
            "the merged entry stands for two messages"
        );
        assert_eq!(acked.cursor, Some((3, 300)));
        // Roll back everything: the redelivered batch comes again.
        d.rollback(0);
        let third = d.fetch(10, &all).expect("third");
        assert_eq!(keys(&third), keys(&second));
        assert!(third.id > again.id, "batch ids never repeat");
    }

    #[test]
    fn a_filter_drops_entries_from_what_is_sent_not_from_the_stream() {
        let mut d = two_transactions();
        let f = d.fetch(100, &|_, t| t != "orders").expect("batch");
        // Offsets 100, 200 and 400 are `orders` (even): only begin/end remain.
        assert_eq!(keys(&f).iter().filter(|k| k.0 == 2).count(), 0);
        assert_eq!(d.ack(f.id).expect("ack").messages.len(), 4);
    }

    #[test]
    fn what_an_earlier_run_acknowledged_is_not_sent_again() {
        let mut d = Destination::new(Some((3, 300)));
        let b = "binlog.000003";
        assert_eq!(
            d.push_row(1, row(b, 100, 0, 1, 1), 7).expect("old"),
            [(1, 7)]
        );
        d.end(1, b, 300);
        assert!(
            d.push_row(2, row(b, 400, 0, 1, 1), 7)
                .expect("new")
                .is_empty()
        );
        d.end(2, b, 500);
        let f = d.fetch(10, &|_, _| true).expect("batch");
        assert_eq!(
            keys(&f).iter().map(|k| k.1).collect::<Vec<_>>(),
            [399, 400, 500]
        );
    }
}
