//! The pipeline loop on a source and a publisher in memory: what it checkpoints follows
//! what the publisher acknowledged, not what it read or sent, and a refusal takes its
//! policy without moving the checkpoint past the refused transaction.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::event_loop::{Inputs, run_once};
use crate::checkpoint;
use crate::config::Config;
use crate::control::Control;
use crate::event::{
    ChangeEvent, ChangeKind, Charset, Checkpoint, Column, ColumnKind, Position, Rows, SourceItem,
    TableSchema, TxnContext,
};
use crate::sink::acks::Acks;
use crate::sink::{OutMessage, Publisher, RefusalReason, Refused, SinkError};
use crate::source::{ItemSource, ServerEnd, SourceError};

/// Items from a list; then nothing more, like a caught-up server.
struct ListSource(VecDeque<SourceItem>);

impl ItemSource for ListSource {
    async fn next_item(&mut self) -> Result<SourceItem, SourceError> {
        match self.0.pop_front() {
            Some(item) => Ok(item),
            None => std::future::pending().await,
        }
    }
}

/// What the in-memory broker holds, shared with the test.
#[derive(Default)]
struct Broker {
    acks: Acks,
    sent: Vec<OutMessage>,
    /// Sent and not yet acknowledged, in order: (transaction, index in `sent`).
    unacked: VecDeque<u64>,
    /// Acknowledge on receipt.
    auto_ack: bool,
    /// Refuse (as too large) the message sent at this index.
    refuse_at: Option<usize>,
    refused: Vec<Refused>,
}

impl Broker {
    /// Acknowledges the oldest `n` unacknowledged messages.
    fn ack(&mut self, n: usize) {
        for _ in 0..n {
            if let Some(txn) = self.unacked.pop_front() {
                self.acks.acked(txn, 0);
            }
        }
    }
}

struct MemoryPublisher(Arc<Mutex<Broker>>);

impl MemoryPublisher {
    fn broker(&self) -> std::sync::MutexGuard<'_, Broker> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Publisher for MemoryPublisher {
    fn send(&mut self, msg: OutMessage) -> Result<(), SinkError> {
        let mut b = self.broker();
        b.acks.sent(msg.txn, 0);
        let at = b.sent.len();
        if b.refuse_at == Some(at) {
            b.refused.push(Refused {
                txn: msg.txn,
                reason: RefusalReason::TooLarge,
                topic: msg.topic.to_string(),
                position: msg.position(),
                module: String::new(),
                headers: msg.sluice_headers(),
                payload_bytes: msg.payload.len(),
                key_bytes: 0,
                in_flight_bytes: 0,
                detail: "message too large".into(),
            });
        } else if b.auto_ack {
            b.acks.acked(msg.txn, 0);
        } else {
            b.unacked.push_back(msg.txn);
        }
        b.sent.push(msg);
        Ok(())
    }

    fn commit(&mut self, txn: u64, cp: Checkpoint, seen: Instant) -> Result<(), SinkError> {
        self.broker().acks.committed(txn, cp, seen);
        Ok(())
    }

    fn safe_checkpoint(&mut self) -> Result<Option<Checkpoint>, SinkError> {
        Ok(self.broker().acks.safe().cloned())
    }

    fn drain(&mut self, timeout: Duration) -> Result<(), SinkError> {
        let in_flight = self.broker().acks.in_flight();
        if in_flight == 0 {
            return Ok(());
        }
        std::thread::sleep(timeout.min(Duration::from_millis(10)));
        Err(SinkError::Timeout {
            in_flight,
            waited: timeout,
        })
    }

    fn counts(&self) -> (u64, u64) {
        let b = self.broker();
        (b.acks.in_flight(), b.acks.acked_total())
    }

    fn take_refused(&mut self) -> Vec<Refused> {
        std::mem::take(&mut self.broker().refused)
    }

    fn settle(&mut self, r: &Refused) {
        self.broker().acks.settled(r.txn, 0);
    }
}

fn config(dir: &Path) -> Config {
    let text = format!(
        "[source]\nhost = \"127.0.0.1\"\nuser = \"u\"\npassword_env = \"HOME\"\nserver_id = 7\n\
         [sink]\nkind = \"stdout\"\ndefault_topic = \"changes\"\n\
         [checkpoint]\npath = \"{}\"\ninterval_ms = 10\n[admin]\nlisten = \"off\"\n",
        dir.join("cp").display()
    );
    let raw = toml::from_str(&text).expect("test config parses");
    Config::validate(raw, dir).expect("test config is valid")
}

/// `n` transactions, each inserting two rows (ids 2i and 2i+1) into `d.t`, committing
/// at `f:1000*i`.
fn transactions(n: u64) -> (Vec<SourceItem>, Vec<Checkpoint>) {
    let col = |name: &str| Column {
        name: name.into(),
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
    let table = Arc::new(TableSchema {
        table_id: 1,
        database: "d".into(),
        table: "t".into(),
        columns: vec![col("id"), col("v")],
        primary_key: vec![0],
        names_known: true,
    });
    let file: Arc<str> = Arc::from("f.000001");
    let (mut items, mut cps) = (Vec::new(), Vec::new());
    for i in 1..=n {
        let txn = Arc::new(TxnContext {
            gtid: None,
            commit_ms: 0,
        });
        items.push(SourceItem::Begin(txn.clone()));
        let mut rows = Rows::new(2, 1);
        for id in [2 * i, 2 * i + 1] {
            let id = id.to_string();
            rows.push_image(&[Some(id.as_bytes()), Some(b"x")]);
        }
        items.push(SourceItem::Change(ChangeEvent {
            position: Position {
                file: file.clone(),
                offset: 1000 * i - 500,
                next: 1000 * i - 100,
                sub: 0,
            },
            server_id: 1,
            event_ms: 0,
            txn,
            kind: ChangeKind::Insert,
            table: table.clone(),
            rows,
            sql: None,
        }));
        let cp = Checkpoint {
            file: file.clone(),
            position: 1000 * i,
            gtid: None,
        };
        items.push(SourceItem::Commit {
            xid: Some(i),
            checkpoint: cp.clone(),
        });
        cps.push(cp);
    }
    (items, cps)
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{what}: not within 10 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

struct Harness {
    broker: Arc<Mutex<Broker>>,
    cancel: CancellationToken,
    run: tokio::task::JoinHandle<anyhow::Result<super::RunSummary>>,
    cp_path: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl Harness {
    fn start(rt: &tokio::runtime::Runtime, items: Vec<SourceItem>, broker: Broker) -> Self {
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sluice-pipeline-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let cfg = config(&dir);
        let cp_path = cfg.checkpoint.clone();
        let broker = Arc::new(Mutex::new(broker));
        let publisher = Box::new(MemoryPublisher(broker.clone()));
        let cancel = CancellationToken::new();
        let ctl = Arc::new(Control::new(Duration::from_secs(60)));
        let inputs = Inputs {
            source: ListSource(items.into()),
            server_end: ServerEnd::default(),
            resume: None,
        };
        let stop = cancel.clone();
        let run =
            rt.spawn(async move { run_once(&cfg, inputs, publisher, None, &ctl, stop).await });
        Harness {
            broker,
            cancel,
            run,
            cp_path,
            dir,
        }
    }

    fn broker(&self) -> std::sync::MutexGuard<'_, Broker> {
        self.broker.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn clean_up(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn checkpoint(&self) -> Option<Checkpoint> {
        checkpoint::load(&self.cp_path).expect("checkpoint file readable")
    }
}

#[test]
fn the_checkpoint_follows_acknowledgements_not_reads() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (items, cps) = transactions(3);
    let mut h = Harness::start(&rt, items, Broker::default());
    // Every row of every transaction is sent (one message per row: their keys differ)...
    wait_until("six messages sent", || h.broker().sent.len() == 6);
    // ...and with nothing acknowledged, nothing is checkpointed, however long we wait.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(h.checkpoint(), None);

    // The first transaction's two messages: its boundary, and no further.
    h.broker().ack(2);
    wait_until("checkpoint after the first transaction", || {
        h.checkpoint().as_ref() == Some(&cps[0])
    });
    // Half of the second transaction does not move it.
    h.broker().ack(1);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(h.checkpoint().as_ref(), Some(&cps[0]));
    h.broker().ack(3);
    wait_until("checkpoint after the last transaction", || {
        h.checkpoint().as_ref() == Some(&cps[2])
    });

    // What was sent: the default topic, keyed by primary key, positions unique and
    // numbered within their binlog event.
    let positions: Vec<String> = h.broker().sent.iter().map(|m| m.position()).collect();
    assert_eq!(
        positions,
        [
            "f.000001:500:0",
            "f.000001:500:1",
            "f.000001:1500:0",
            "f.000001:1500:1",
            "f.000001:2500:0",
            "f.000001:2500:1"
        ]
    );
    for m in &h.broker().sent {
        assert_eq!(&*m.topic, "changes");
        assert!(m.key.is_some(), "keyed by primary key");
    }

    h.cancel.cancel();
    let summary = rt
        .block_on(&mut h.run)
        .expect("the run task ends")
        .expect("a clean stop");
    assert_eq!(summary.transactions, 3);
    assert_eq!(summary.messages, 6);
    assert_eq!(summary.checkpoint.as_ref(), Some(&cps[2]));
    h.clean_up();
}

#[test]
fn a_refused_message_stops_the_run_without_checkpointing_past_it() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (items, cps) = transactions(3);
    // The second transaction's first message is refused as too large; without modules
    // the sink's oversize policy is halt.
    let broker = Broker {
        auto_ack: true,
        refuse_at: Some(2),
        ..Broker::default()
    };
    let mut h = Harness::start(&rt, items, broker);
    let result = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), &mut h.run)
            .await
            .expect("the run stops by itself")
            .expect("the run task ends")
    });
    let err = result.expect_err("a refused message with the halt policy stops the run");
    match err.downcast_ref::<SinkError>() {
        Some(SinkError::TooLarge {
            topic, position, ..
        }) => {
            assert_eq!(topic, "changes");
            assert_eq!(position, "f.000001:1500:0");
        }
        other => panic!("expected TooLarge naming the message, got {other:?}: {err:#}"),
    }
    // The first transaction is safe; the refused one is not passed.
    let cp = checkpoint::load(&h.cp_path).expect("readable");
    assert_eq!(cp.as_ref(), Some(&cps[0]));
    h.clean_up();
}

/// A source of endless 1 MiB rows, counting what it hands out.
struct BigRows {
    template: ChangeEvent,
    made: Arc<std::sync::atomic::AtomicUsize>,
}

impl ItemSource for BigRows {
    async fn next_item(&mut self) -> Result<SourceItem, SourceError> {
        self.made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(SourceItem::Change(self.template.clone()))
    }
}

/// Read-ahead is bounded in bytes, not only in items: with the pipeline taking nothing
/// (paused, or held by a slow broker), a source of 1 MiB rows is parked after about
/// `READ_AHEAD_BYTES` of them, and taking items lets it read on.
#[test]
fn read_ahead_holds_a_bounded_number_of_bytes() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (items, _) = transactions(1);
    let Some(SourceItem::Change(mut template)) = items.into_iter().nth(1) else {
        panic!("a change");
    };
    let big = vec![b'x'; 1 << 20];
    let mut rows = Rows::new(2, 1);
    rows.push_image(&[Some(b"1"), Some(&big)]);
    template.rows = rows;
    let made = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = CancellationToken::new();
    rt.block_on(async {
        let (mut rx, task) = super::event_loop::spawn_reader(
            BigRows {
                template,
                made: made.clone(),
            },
            stop.clone(),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let bound = super::event_loop::READ_AHEAD_BYTES / (1 << 20) + 1;
        let parked = made.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            parked <= bound,
            "{parked} rows of 1 MiB read ahead (bound {bound})"
        );
        // The 256-item channel alone would have let 256 through.
        assert!(parked >= bound - 1, "{parked}");
        for _ in 0..10 {
            assert!(rx.recv().await.is_some());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = made.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            after >= parked + 9 && after <= bound + 10,
            "{parked} then {after}"
        );
        stop.cancel();
        drop(rx);
        let _ = task.await;
    });
}
