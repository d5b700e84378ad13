//! Acknowledgement bookkeeping: which transaction boundary is safe to checkpoint.
//!
//! Every message belongs to a transaction (by sequence number). A transaction's
//! checkpoint becomes safe once it committed (all its messages were sent), all its
//! messages were acknowledged, and every earlier transaction is safe too: the watermark
//! only moves forward, in order, whatever order acknowledgements arrive in.
//!
//! It also feeds the delivery metrics: messages sent/acknowledged, in flight, and the
//! time from the agent first seeing a transaction (its first binlog event, which the
//! server writes only at commit) to its watermark passing.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::event::Checkpoint;
use crate::metrics;

#[derive(Debug, Default)]
struct Txn {
    pending: u64,
    committed: Option<Checkpoint>,
    seen_at: Option<Instant>,
}

/// In-order acknowledgement watermark.
#[derive(Debug, Default)]
pub struct Acks {
    txns: BTreeMap<u64, Txn>,
    safe: Option<Checkpoint>,
    in_flight: u64,
    in_flight_bytes: u64,
    acked: u64,
}

impl Acks {
    /// A message of transaction `seq`, `bytes` long, was handed to the sink.
    pub fn sent(&mut self, seq: u64, bytes: u64) {
        self.txns.entry(seq).or_default().pending += 1;
        self.in_flight += 1;
        self.in_flight_bytes += bytes;
        let m = metrics::global();
        m.messages_sent.inc();
        m.in_flight.inc();
    }

    /// A message of transaction `seq`, `bytes` long, was acknowledged.
    pub fn acked(&mut self, seq: u64, bytes: u64) {
        self.acked += 1;
        metrics::global().messages_acked.inc();
        self.settled(seq, bytes);
    }

    /// A message of transaction `seq`, `bytes` long, was refused and its policy applied
    /// (skipped, or replaced by a reference sent as a message of its own): it leaves
    /// the window without counting as acknowledged.
    pub fn settled(&mut self, seq: u64, bytes: u64) {
        if let Some(t) = self.txns.get_mut(&seq) {
            t.pending = t.pending.saturating_sub(1);
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(bytes);
        metrics::global().in_flight.dec();
        self.advance();
    }

    /// Transaction `seq`, first seen at `seen`, is complete (all its messages sent);
    /// `cp` is after it.
    pub fn committed(&mut self, seq: u64, cp: Checkpoint, seen: Instant) {
        let t = self.txns.entry(seq).or_default();
        t.committed = Some(cp);
        t.seen_at = Some(seen);
        self.advance();
    }

    fn advance(&mut self) {
        while let Some(entry) = self.txns.first_entry() {
            let t = entry.get();
            if t.pending > 0 || t.committed.is_none() {
                break;
            }
            let t = entry.remove();
            if let Some(at) = t.seen_at {
                metrics::global()
                    .delivery_seconds
                    .observe(at.elapsed().as_secs_f64());
            }
            self.safe = t.committed;
        }
    }

    /// The newest checkpoint all of whose messages, and all earlier ones, were acked.
    pub fn safe(&self) -> Option<&Checkpoint> {
        self.safe.as_ref()
    }

    /// Messages sent and not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Bytes (payload and key) of the messages in flight.
    pub fn in_flight_bytes(&self) -> u64 {
        self.in_flight_bytes
    }

    /// Messages acknowledged so far.
    pub fn acked_total(&self) -> u64 {
        self.acked
    }
}

impl Drop for Acks {
    fn drop(&mut self) {
        // A sink dropped with messages in flight (a restart) hands them to the next one.
        metrics::global().in_flight.dec_by(self.in_flight as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn cp(pos: u64) -> Checkpoint {
        Checkpoint {
            file: Arc::from("f"),
            position: pos,
            gtid: None,
        }
    }

    #[test]
    fn watermark_moves_in_order_only() {
        let mut a = Acks::default();
        a.sent(1, 10);
        a.sent(1, 20);
        a.committed(1, cp(100), Instant::now());
        a.sent(2, 5);
        a.committed(2, cp(200), Instant::now());
        a.committed(3, cp(300), Instant::now()); // a transaction without messages
        assert_eq!(a.in_flight_bytes(), 35);
        a.acked(2, 5);
        assert_eq!(a.safe(), None, "txn 1 still has messages in flight");
        a.acked(1, 10);
        assert_eq!(a.safe(), None);
        a.acked(1, 20);
        assert_eq!(a.safe().map(|c| c.position), Some(300));
        assert_eq!((a.in_flight(), a.in_flight_bytes()), (0, 0));
        a.sent(4, 1);
        a.acked(4, 1);
        assert_eq!(a.safe().map(|c| c.position), Some(300), "not committed yet");
    }
}
