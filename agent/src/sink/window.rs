//! The state a publisher's pipeline side shares with its background client task: the
//! acknowledgement bookkeeping ([`Acks`]), the bound on what is in flight, messages the
//! broker refused for good, and a failure no reconnect can fix. Publishers whose
//! client runs in a task of its own (RabbitMQ, RocketMQ) implement most of
//! [`super::Publisher`] by delegating here.
//!
//! Invariants: every message counted in with [`Window::sent`] leaves exactly once,
//! through [`Window::acked`] or (refused, then its policy applied) [`Window::settle`];
//! a failure is reported to the pipeline once, by the next [`Window::check`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::acks::Acks;
use super::{Refused, SinkError};
use crate::event::Checkpoint;

/// Shared by the pipeline side and the client task of one publisher.
#[derive(Debug)]
pub struct Window {
    acks: Mutex<Acks>,
    refused: Mutex<Vec<Refused>>,
    failure: Mutex<Option<SinkError>>,
    max_in_flight: u64,
    max_bytes: u64,
}

fn poisoned() -> SinkError {
    SinkError::Setup("delivery state poisoned".into())
}

impl Window {
    /// Room for `max_in_flight` messages and `max_bytes` bytes (a soft bound: the
    /// message that crosses it is taken).
    pub fn new(max_in_flight: usize, max_bytes: u64) -> Self {
        Window {
            acks: Mutex::new(Acks::default()),
            refused: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            max_in_flight: max_in_flight.max(1) as u64,
            max_bytes,
        }
    }

    /// A message of transaction `txn`, `bytes` long, enters the window.
    pub fn sent(&self, txn: u64, bytes: u64) -> Result<(), SinkError> {
        self.acks.lock().map_err(|_| poisoned())?.sent(txn, bytes);
        Ok(())
    }

    /// The broker acknowledged a message of transaction `txn`.
    pub fn acked(&self, txn: u64, bytes: u64) {
        if let Ok(mut a) = self.acks.lock() {
            a.acked(txn, bytes);
        }
    }

    /// The broker refused a message for good; it waits for its policy.
    pub fn refuse(&self, r: Refused) {
        if let Ok(mut q) = self.refused.lock() {
            q.push(r);
        }
    }

    /// Something no reconnect can fix: the pipeline stops with it at its next check.
    pub fn fail(&self, e: SinkError) {
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert(e);
        }
    }

    /// Fails with what the client task could not get past.
    pub fn check(&self) -> Result<(), SinkError> {
        match self.failure.lock().map_err(|_| poisoned())?.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether the window has room.
    pub fn has_room(&self) -> bool {
        self.acks
            .lock()
            .map(|a| a.in_flight() < self.max_in_flight && a.in_flight_bytes() < self.max_bytes)
            .unwrap_or(true)
    }

    /// Transaction `txn`, first seen at `seen`, is fully sent; `cp` is after it.
    pub fn commit(&self, txn: u64, cp: Checkpoint, seen: Instant) {
        if let Ok(mut a) = self.acks.lock() {
            a.committed(txn, cp, seen);
        }
    }

    /// The newest boundary whose messages, and all earlier ones, were acknowledged.
    pub fn safe(&self) -> Option<Checkpoint> {
        self.acks.lock().ok().and_then(|a| a.safe().cloned())
    }

    /// Waits (at most `timeout`) until every message is acknowledged or waits, refused,
    /// for its policy.
    pub fn drain(&self, timeout: Duration) -> Result<(), SinkError> {
        let start = Instant::now();
        loop {
            self.check()?;
            let (in_flight, _) = self.counts();
            let refused = self.refused.lock().map(|r| r.len()).unwrap_or(0) as u64;
            if in_flight <= refused {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(SinkError::Timeout {
                    in_flight,
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// (in flight, acknowledged).
    pub fn counts(&self) -> (u64, u64) {
        self.acks
            .lock()
            .map(|a| (a.in_flight(), a.acked_total()))
            .unwrap_or((0, 0))
    }

    /// Messages refused since the last call.
    pub fn take_refused(&self) -> Vec<Refused> {
        self.refused
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default()
    }

    /// A refused message's policy was applied: it leaves the window.
    pub fn settle(&self, r: &Refused) {
        if let Ok(mut a) = self.acks.lock() {
            a.settled(r.txn, r.in_flight_bytes);
        }
    }
}

/// Waits (at most 30 s) for a client task's first connection outcome, giving the task
/// this worker thread meanwhile when on a multi-threaded runtime. `what` names the
/// broker in the error.
pub fn first_outcome(
    rx: &std::sync::mpsc::Receiver<Result<(), SinkError>>,
    what: &str,
) -> Result<(), SinkError> {
    let wait = || rx.recv_timeout(Duration::from_secs(30));
    let answer = match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    };
    answer.unwrap_or_else(|_| {
        Err(SinkError::Setup(format!(
            "{what}: no connection within 30 s"
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(txn: u64) -> Refused {
        Refused {
            txn,
            reason: super::super::RefusalReason::TooLarge,
            topic: "t".into(),
            position: "f:4:0".into(),
            module: String::new(),
            headers: Vec::new(),
            payload_bytes: 1,
            key_bytes: 0,
            in_flight_bytes: 10,
            detail: "too large".into(),
        }
    }

    #[test]
    fn a_refused_message_holds_its_transaction_until_settled() {
        let w = Window::new(2, 1 << 20);
        let cp = |p| Checkpoint {
            file: "f".into(),
            position: p,
            gtid: None,
        };
        w.sent(1, 10).expect("sent");
        w.sent(1, 10).expect("sent");
        assert!(!w.has_room(), "two in flight fill a window of two");
        w.commit(1, cp(100), Instant::now());
        w.acked(1, 10);
        w.refuse(refused(1));
        assert_eq!(w.safe(), None, "the refused message holds the transaction");
        // Drain does not wait for what waits for its policy.
        w.drain(Duration::from_millis(50))
            .expect("nothing else in flight");
        let r = w.take_refused();
        assert_eq!(r.len(), 1);
        w.settle(&r[0]);
        assert_eq!(w.safe(), Some(cp(100)));
        assert!(w.has_room());
        // A failure is reported once.
        w.fail(SinkError::Setup("gone".into()));
        w.fail(SinkError::Setup("later".into()));
        assert!(matches!(w.check(), Err(SinkError::Setup(e)) if e == "gone"));
        assert!(w.check().is_ok());
    }
}
