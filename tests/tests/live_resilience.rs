//! Live stream under stress: a 100k-row transaction, FLUSH LOGS, KILL of the dump thread,
//! a server restart, and a restart of the source from a GTID checkpoint. Every row must
//! arrive exactly once, in commit order.
//!
//! One test function: the phases restart the shared server and must not overlap.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use sluice::event::{Cell, Checkpoint, SourceItem};
use sluice::source::{BinlogSource, SourceConfig};
use sluice_tests::live::{exec, restart, server};

/// Reads until `want` distinct ids were seen and their transaction committed (or the
/// deadline), asserting no duplicate. A checkpoint covers only handed-out commits, so
/// stopping before the commit would (rightly) re-deliver the open transaction.
async fn collect(
    src: &mut BinlogSource,
    seen: &mut BTreeSet<u64>,
    want: usize,
    deadline: Instant,
) -> Option<Checkpoint> {
    collect_killing(src, seen, want, deadline, None).await
}

/// Like [`collect`]; when `kill` is given, kills the dump thread once `kill.0` rows were
/// seen, while the transaction being read is still open.
async fn collect_killing(
    src: &mut BinlogSource,
    seen: &mut BTreeSet<u64>,
    want: usize,
    deadline: Instant,
    mut kill: Option<(usize, &mut mysql_async::Conn)>,
) -> Option<Checkpoint> {
    let mut last_commit = None;
    let mut open = true;
    while seen.len() < want || open {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out with {} of {want} rows",
            seen.len()
        );
        let item = tokio::time::timeout(left, src.next())
            .await
            .unwrap_or_else(|_| panic!("timed out with {} of {want} rows", seen.len()))
            .expect("the source survives");
        match item {
            SourceItem::Change(ev) if ev.table.table == "seq" => {
                open = true;
                for r in 0..ev.rows.len() {
                    let Cell::Value(id) = ev.rows.image(r, 0).cell(0) else {
                        panic!("id is NULL")
                    };
                    let id: u64 = std::str::from_utf8(id)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .expect("numeric id");
                    assert!(
                        seen.insert(id),
                        "row {id} delivered twice (at {})",
                        ev.position
                    );
                }
                if let Some((at, conn)) = kill.as_mut()
                    && seen.len() >= *at
                {
                    assert!(kill_dump_threads(conn).await >= 1, "no dump thread to kill");
                    kill = None;
                }
            }
            SourceItem::Commit { checkpoint, .. } => {
                open = false;
                last_commit = Some(checkpoint);
            }
            _ => {}
        }
    }
    last_commit
}

async fn insert_range(conn: &mut mysql_async::Conn, from: u64, to: u64, per_txn: u64) {
    let mut start = from;
    while start <= to {
        let end = (start + per_txn - 1).min(to);
        exec(
            conn,
            &format!(
                "INSERT INTO sluice_live.seq SELECT seq, CONCAT('v', seq) FROM sluice_live.seq_{start}_to_{end}"
            ),
        )
        .await;
        start = end + 1;
    }
}

async fn kill_dump_threads(conn: &mut mysql_async::Conn) -> usize {
    let ids: Vec<u64> = conn
        .query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump'")
        .await
        .expect("processlist");
    for id in &ids {
        // The thread may have ended in between.
        let _ = conn.query_drop(format!("KILL {id}")).await;
    }
    ids.len()
}

fn fast(mut cfg: SourceConfig) -> SourceConfig {
    cfg.heartbeat = Duration::from_millis(500);
    cfg.read_timeout = Duration::from_secs(3);
    cfg.min_backoff = Duration::from_millis(50);
    cfg.max_backoff = Duration::from_millis(500);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_nothing_duplicated() {
    sluice_tests::init_logs();
    let srv = server();
    let mut admin = srv.admin().await;
    exec(&mut admin, "CREATE DATABASE IF NOT EXISTS sluice_live").await;
    exec(&mut admin, "DROP TABLE IF EXISTS sluice_live.seq").await;
    exec(
        &mut admin,
        "CREATE TABLE sluice_live.seq (id BIGINT PRIMARY KEY, v VARCHAR(32))",
    )
    .await;
    let mut src = BinlogSource::connect(fast(srv.source(4_100_001)), None)
        .await
        .expect("connect");
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut seen = BTreeSet::new();

    // Phase 1: one 100k-row transaction, then small ones around a FLUSH LOGS.
    insert_range(&mut admin, 1, 100_000, 100_000).await;
    insert_range(&mut admin, 100_001, 101_000, 10).await;
    exec(&mut admin, "FLUSH BINARY LOGS").await;
    insert_range(&mut admin, 101_001, 102_000, 100).await;
    collect(&mut src, &mut seen, 102_000, deadline).await;
    assert_eq!(seen.len(), 102_000);

    // Phase 2: kill the dump thread while the source is inside a 500k-row transaction
    // (larger than the socket buffers, so the kill cuts the transaction's stream).
    insert_range(&mut admin, 102_001, 602_000, 500_000).await;
    collect_killing(
        &mut src,
        &mut seen,
        602_000,
        deadline,
        Some((122_000, &mut admin)),
    )
    .await;
    // Rows written after the kill can only arrive over a new connection.
    insert_range(&mut admin, 602_001, 603_000, 100).await;
    collect(&mut src, &mut seen, 603_000, deadline).await;
    let stats = src.stats();
    assert!(
        stats.reconnects >= 1,
        "the kill forced a reconnect: {stats:?}"
    );
    assert!(
        stats.resumed_mid_transaction >= 1,
        "the kill landed inside the transaction: {stats:?}"
    );

    // Phase 3: restart the server.
    insert_range(&mut admin, 603_001, 610_000, 1_000).await;
    drop(admin);
    tokio::task::spawn_blocking(restart).await.expect("restart");
    let mut admin = srv.admin().await;
    insert_range(&mut admin, 610_001, 620_000, 500).await;
    collect(&mut src, &mut seen, 620_000, deadline).await;
    assert!(
        src.stats().reconnects >= 2,
        "the restart forced a reconnect"
    );

    // Phase 4: stop the source, write more, resume a new one from its GTID checkpoint.
    let checkpoint = src.checkpoint().clone();
    assert!(
        checkpoint.gtid.is_some(),
        "MariaDB checkpoints carry GTID state"
    );
    drop(src);
    insert_range(&mut admin, 620_001, 630_000, 2_000).await;
    let resume = Checkpoint {
        // Resume by GTID alone: the file name must not matter.
        file: "".into(),
        position: 4,
        gtid: checkpoint.gtid.clone(),
    };
    let mut src = BinlogSource::connect(fast(srv.source(4_100_002)), Some(resume))
        .await
        .expect("resume by GTID");
    collect(&mut src, &mut seen, 630_000, deadline).await;

    // And from a file:position checkpoint.
    let checkpoint = src.checkpoint().clone();
    drop(src);
    insert_range(&mut admin, 630_001, 635_000, 5_000).await;
    let resume = Checkpoint {
        gtid: None,
        ..checkpoint
    };
    let mut src = BinlogSource::connect(fast(srv.source(4_100_003)), Some(resume))
        .await
        .expect("resume by file:position");
    collect(&mut src, &mut seen, 635_000, deadline).await;

    assert_eq!(seen.len(), 635_000);
    assert_eq!(seen.first(), Some(&1));
    assert_eq!(seen.last(), Some(&635_000));
    // Nothing more arrives: the next item (if any within 2 s) is not a seq row.
    if let Ok(Ok(SourceItem::Change(ev))) =
        tokio::time::timeout(Duration::from_secs(2), src.next()).await
    {
        assert_ne!(
            ev.table.table, "seq",
            "unexpected extra rows at {}",
            ev.position
        );
    }
}
