//! Startup checks and fatal conditions, each with the clear error it must give: wrong
//! server settings, missing privileges, unreachable server, and a second replica using
//! the same server id.
//!
//! One test function: it changes global server settings and must not overlap others.

use std::time::Duration;

use sluice::source::{BinlogSource, SourceError};
use sluice_tests::live::{exec, server};

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
    cfg.password = "np".into();
    let e = expect_err(cfg).await;
    assert!(matches!(e, SourceError::Privileges { .. }), "{e}");
    assert!(e.to_string().contains("sluice_noperm"), "{e}");

    // Wrong password: a connect error naming the address, not a panic or a hang.
    let mut cfg = srv.source(4_200_003);
    cfg.password = "wrong".into();
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
