//! Startup checks and fatal conditions, each with the clear error it must give: wrong
//! server settings, missing privileges, unreachable server, and a second replica using
//! the same server id.
//!
//! One test function: it changes global server settings and must not overlap others.

use std::time::Duration;

use sluice::binlog::DecodeError;
use sluice::event::{Cell, ChangeEvent, SourceItem};
use sluice::source::{BinlogSource, SourceError, StartPosition};
use sluice_tests::live::{Server, exec, server};

async fn expect_err(cfg: sluice::source::SourceConfig) -> SourceError {
    match BinlogSource::connect(cfg, None).await {
        Ok(_) => panic!("connect succeeded where it must fail"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_checks_and_conflicts() {
    sluice_tests::init_logs();
    let srv = server();
    let mut admin = srv.admin().await;

    // The server's own id.
    let e = expect_err(srv.source(1)).await;
    assert!(
        matches!(e, SourceError::ServerIdConflict { server_id: 1, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("unique server_id"), "{e}");

    // binlog_format and binlog_row_image.
    for (var, bad) in [
        ("binlog_format", "STATEMENT"),
        ("binlog_row_image", "MINIMAL"),
    ] {
        exec(&mut admin, &format!("SET GLOBAL {var} = '{bad}'")).await;
        let e = expect_err(srv.source(4_200_001)).await;
        let good = if var == "binlog_format" {
            "ROW"
        } else {
            "FULL"
        };
        exec(&mut admin, &format!("SET GLOBAL {var} = '{good}'")).await;
        match &e {
            SourceError::ServerSetting { name, value, .. } => {
                assert_eq!(*name, var);
                assert_eq!(value, bad);
            }
            other => panic!("expected a setting error for {var}, got {other}"),
        }
        assert!(e.to_string().contains(var), "{e}");
    }

    // A user without replication privileges.
    exec(&mut admin, "SET sql_log_bin = 0").await;
    exec(
        &mut admin,
        "CREATE USER IF NOT EXISTS 'sluice_noperm'@'127.0.0.1' IDENTIFIED BY 'np'",
    )
    .await;
    exec(
        &mut admin,
        "GRANT SELECT ON *.* TO 'sluice_noperm'@'127.0.0.1'",
    )
    .await;
    let mut cfg = srv.source(4_200_002);
    cfg.user = "sluice_noperm".into();
    cfg.password = sluice::secret::Secret::new("np");
    let e = expect_err(cfg).await;
    assert!(matches!(e, SourceError::Privileges { .. }), "{e}");
    assert!(e.to_string().contains("sluice_noperm"), "{e}");

    // Wrong password: a connect error naming the address, not a panic or a hang.
    let mut cfg = srv.source(4_200_003);
    cfg.password = sluice::secret::Secret::new("wrong");
    let e = expect_err(cfg).await;
    assert!(matches!(e, SourceError::Connect { .. }), "{e}");
    assert!(
        e.to_string().contains(&format!("127.0.0.1:{}", srv.port)),
        "{e}"
    );

    // Nothing listening.
    let mut cfg = srv.source(4_200_004);
    cfg.port = 1;
    cfg.connect_timeout = Duration::from_secs(2);
    let e = expect_err(cfg).await;
    assert!(matches!(e, SourceError::Connect { .. }), "{e}");

    // A purged or made-up position.
    let mut cfg = srv.source(4_200_005);
    cfg.start = "binlog.999999:4".parse().expect("position");
    let e = expect_err(cfg).await;
    assert!(matches!(e, SourceError::Position { .. }), "{e}");
    assert!(e.to_string().contains("binlog.999999"), "{e}");

    without_full_metadata(&srv).await;

    // Two replicas with one server id: the first one's stream is taken over; it must
    // stop with a server-id error instead of fighting back in a reconnect loop.
    let mut first = BinlogSource::connect(srv.source(4_200_010), None)
        .await
        .expect("first");
    let _second = BinlogSource::connect(srv.source(4_200_010), None)
        .await
        .expect("second");
    exec(&mut admin, "CREATE DATABASE IF NOT EXISTS sluice_live").await;
    exec(
        &mut admin,
        "CREATE TABLE IF NOT EXISTS sluice_live.ping (id INT PRIMARY KEY)",
    )
    .await;
    exec(&mut admin, "REPLACE INTO sluice_live.ping VALUES (1)").await;
    let res = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Err(e) = first.next().await {
                return e;
            }
        }
    })
    .await
    .expect("the displaced replica stops within 20 s");
    assert!(
        matches!(
            res,
            SourceError::ServerIdConflict {
                server_id: 4_200_010,
                ..
            }
        ),
        "{res}"
    );
}

async fn next_change(src: &mut BinlogSource, table: &str) -> Result<ChangeEvent, SourceError> {
    loop {
        let item = tokio::time::timeout(Duration::from_secs(30), src.next())
            .await
            .expect("an event within 30 s")?;
        if let SourceItem::Change(ev) = item
            && ev.table.table == table
            && ev.kind != sluice::event::ChangeKind::Ddl
        {
            return Ok(ev);
        }
    }
}

fn cell(ev: &ChangeEvent, col: usize) -> String {
    match ev.rows.image(0, 0).cell(col) {
        Cell::Value(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}

/// With `binlog_row_metadata=MINIMAL` names, signedness and keys come from
/// information_schema, refreshed after DDL; an event older than the current definition
/// halts decoding with a schema-mismatch error instead of shifting values.
async fn without_full_metadata(srv: &Server) {
    let mut admin = srv.admin().await;
    exec(&mut admin, "SET GLOBAL binlog_row_metadata = 'MINIMAL'").await;
    let srv = srv.clone();
    let result = async move {
        let mut conn = srv.admin().await;
        exec(&mut conn, "CREATE DATABASE IF NOT EXISTS sluice_live").await;
        exec(&mut conn, "DROP TABLE IF EXISTS sluice_live.minimal").await;
        exec(
            &mut conn,
            "CREATE TABLE sluice_live.minimal (k INT UNSIGNED PRIMARY KEY, name VARCHAR(10) CHARACTER SET latin1)",
        )
        .await;
        let mut cfg = srv.source(4_200_020);
        cfg.start = StartPosition::Latest;
        let mut src = BinlogSource::connect(cfg, None).await.expect("connect");
        let before: String = {
            use mysql_async::prelude::Queryable;
            let row: Option<(String, u64, String, String)> = conn
                .query_first("SHOW MASTER STATUS")
                .await
                .expect("status");
            let (f, p, _, _) = row.expect("binlog on");
            format!("{f}:{p}")
        };
        exec(
            &mut conn,
            "INSERT INTO sluice_live.minimal VALUES (4294967295, 'caf\u{e9}')",
        )
        .await;
        let ev = next_change(&mut src, "minimal").await.expect("decodes");
        assert!(ev.table.names_known, "names from information_schema");
        assert_eq!(ev.table.columns[0].name, "k");
        assert_eq!(ev.table.primary_key, [0]);
        assert_eq!(
            cell(&ev, 0),
            "4294967295",
            "unsigned from information_schema"
        );
        assert_eq!(
            cell(&ev, 1),
            "caf\u{e9}",
            "latin1 transcoded by the dictionary's collation"
        );

        // DDL refreshes the definition for later events.
        exec(
            &mut conn,
            "ALTER TABLE sluice_live.minimal ADD COLUMN extra INT",
        )
        .await;
        exec(
            &mut conn,
            "INSERT INTO sluice_live.minimal VALUES (1, 'x', 7)",
        )
        .await;
        let ev = next_change(&mut src, "minimal")
            .await
            .expect("decodes after DDL");
        assert_eq!(ev.table.columns.len(), 3);
        assert_eq!(ev.table.columns[2].name, "extra");
        assert_eq!(cell(&ev, 2), "7");
        drop(src);

        // Re-reading the first insert now meets a definition with one more column.
        let mut cfg = srv.source(4_200_021);
        cfg.start = before.parse().expect("position");
        let mut src = BinlogSource::connect(cfg, None).await.expect("connect");
        let err = next_change(&mut src, "minimal")
            .await
            .expect_err("must halt");
        match &err {
            SourceError::Decode(e) => {
                assert!(
                    matches!(e.decode_error(), Some(DecodeError::SchemaMismatch { .. })),
                    "{err}"
                );
                let msg = err.to_string();
                assert!(
                    msg.contains("sluice_live.minimal") && msg.contains("2 columns"),
                    "{msg}"
                );
            }
            other => panic!("expected a schema mismatch, got {other}"),
        }
    };
    // Restore FULL metadata whatever happened.
    let outcome = tokio::spawn(async move {
        result.await;
    })
    .await;
    exec(&mut admin, "SET GLOBAL binlog_row_metadata = 'FULL'").await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
