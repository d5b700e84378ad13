//! Live capture against the throwaway MariaDB: every column type, decoded values equal
//! what `SELECT` prints; MariaDB compressed events; DDL events.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use sluice::event::{Cell, ChangeEvent, ChangeKind, SourceItem};
use sluice::source::{BinlogSource, StartPosition};
use sluice_tests::live::{exec, server};

const ALL_TYPES: &str = "CREATE TABLE sluice_live.all_types (
  id INT PRIMARY KEY,
  ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED,
  mi MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED,
  dec65 DECIMAL(65,30), d10 DECIMAL(10,2), f FLOAT, d DOUBLE,
  b1 BIT(1), b13 BIT(13), b64 BIT(64),
  dt DATE, tm TIME(6), tm0 TIME, dtm DATETIME(6), dtm0 DATETIME, ts TIMESTAMP(6) NULL, ts0 TIMESTAMP NULL, y YEAR,
  c CHAR(10), vc VARCHAR(300), l1 VARCHAR(50) CHARACTER SET latin1, g VARCHAR(20) CHARACTER SET gbk,
  bn BINARY(8), vb VARBINARY(20),
  tx TEXT, mt MEDIUMTEXT, bl BLOB, lb LONGBLOB,
  e ENUM('a','b','c d'), st SET('x','y','z'),
  j JSON, geo GEOMETRY, u UUID, ip INET6
) DEFAULT CHARSET=utf8mb4";

/// Select list that prints each column as the decoder should: BIT as its number.
const SELECT: &str = "SELECT id, ti, tu, si, su, mi, mu, i, iu, bi, bu, dec65, d10, f, d, \
  CAST(b1 AS UNSIGNED), CAST(b13 AS UNSIGNED), CAST(b64 AS UNSIGNED), dt, tm, tm0, dtm, dtm0, ts, ts0, y, \
  c, vc, l1, g, bn, vb, tx, mt, bl, lb, e, st, j, geo, u, ip FROM sluice_live.all_types ORDER BY id";

const ROWS: &[&str] = &[
    // Maximums.
    "(1, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807, 18446744073709551615,
      '99999999999999999999999999999999999.999999999999999999999999999999', 99999999.99, 3.40282e38, 1.7976931348623157e308,
      b'1', b'1111111111111', b'1111111111111111111111111111111111111111111111111111111111111111',
      '9999-12-31', '838:59:59.000000', '838:59:59', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59', '2038-01-19 03:14:07.999999', '2038-01-19 03:14:07', 2155,
      'ten chars!', REPEAT('é', 300), 'caf\u{e9} na\u{ef}ve', '你好世界',
      X'0102030400000000', X'00FF0000',
      REPEAT('t', 5000), REPEAT('m', 70000), X'00010203', REPEAT(X'00AB', 524288),
      'c d', 'x,y,z', '{\"k\": [1, 2.5, \"s\"], \"n\": null}', ST_GeomFromText('POINT(1 2)'),
      'ffffffff-ffff-1fff-bfff-ffffffffffff', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff')",
    // Minimums and negatives.
    "(2, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
      '-99999999999999999999999999999999999.999999999999999999999999999999', -99999999.99, -1.17549e-38, -2.2250738585072014e-308,
      b'0', b'0', b'0',
      '1000-01-01', '-838:59:59.000000', '-00:00:01', '1000-01-01 00:00:00.000000', '1000-01-01 00:00:00', '1970-01-01 00:00:01.000000', '1970-01-01 00:00:01', 1901,
      '', '', '', '',
      X'', X'',
      '', '', X'', X'',
      'a', '', '[]', ST_GeomFromText('LINESTRING(0 0, 1 1, 2 0)', 4326),
      '00000000-0000-0000-0000-000000000000', '::')",
    // NULLs everywhere.
    "(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
      NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
      NULL, NULL, NULL, NULL, NULL, NULL)",
    // Zero dates, negative fractions, emoji, trailing zeros and spaces, 1 MB text.
    "(4, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1,
      '0.000000000000000000000000000001', 0.01, 1.1, 0.1,
      b'1', b'101', b'1000000000000000000000000000000000000000000000000000000000000001',
      '0000-00-00', '-00:00:00.500000', '00:00:00', '0000-00-00 00:00:00.000000', '0000-00-00 00:00:00', '0000-00-00 00:00:00', '0000-00-00 00:00:00', 0,
      'trail  ', 'emoji 😀🎉 and tab\\t and quote '' and backslash \\\\', '\u{c0}\u{ff}', '中文',
      X'0100000000000000', X'00000000',
      REPEAT('😀', 262144), 'x', X'FF00', X'00',
      'b', 'y', '\"just a string\"', ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 10,0 0))'),
      '123e4567-e89b-12d3-a456-426655440000', '::ffff:10.0.0.1')",
];

fn text(cell: Cell<'_>) -> Option<Vec<u8>> {
    match cell {
        Cell::Value(b) => Some(b.to_vec()),
        Cell::Null => None,
        Cell::Absent => Some(b"<absent>".to_vec()),
    }
}

fn short(b: &Option<Vec<u8>>) -> String {
    match b {
        None => "NULL".into(),
        Some(b) => {
            let s = String::from_utf8_lossy(b);
            if s.len() > 80 {
                format!(
                    "{}... ({} bytes)",
                    &s.chars().take(60).collect::<String>(),
                    b.len()
                )
            } else {
                format!("{s:?}")
            }
        }
    }
}

/// The text protocol returns exactly what SELECT prints.
async fn select_rows(conn: &mut mysql_async::Conn) -> Vec<Vec<Option<Vec<u8>>>> {
    let rows: Vec<mysql_async::Row> = conn.query(SELECT).await.expect("select");
    rows.into_iter()
        .map(|r| {
            r.unwrap()
                .into_iter()
                .map(|v| match v {
                    mysql_async::Value::NULL => None,
                    mysql_async::Value::Bytes(b) => Some(b),
                    other => Some(other.as_sql(true).into_bytes()),
                })
                .collect()
        })
        .collect()
}

async fn next_change(src: &mut BinlogSource, table: &str) -> ChangeEvent {
    loop {
        let item = tokio::time::timeout(Duration::from_secs(30), src.next())
            .await
            .expect("a change within 30 s")
            .expect("source keeps running");
        if let SourceItem::Change(ev) = item
            && ev.table.table == table
        {
            return ev;
        }
    }
}

/// The changes of the next transaction, each row as (event, row index).
async fn next_txn(src: &mut BinlogSource, table: &str) -> Vec<(ChangeEvent, usize)> {
    let mut out = Vec::new();
    loop {
        let item = tokio::time::timeout(Duration::from_secs(30), src.next())
            .await
            .expect("an event within 30 s")
            .expect("source keeps running");
        match item {
            SourceItem::Change(ev) if ev.table.table == table => {
                for r in 0..ev.rows.len() {
                    out.push((ev.clone(), r));
                }
            }
            SourceItem::Commit { .. } if !out.is_empty() => return out,
            _ => {}
        }
    }
}

fn check_image(ev: &ChangeEvent, row: usize, image: usize, want: &[Option<Vec<u8>>]) {
    let img = ev.rows.image(row, image);
    assert_eq!(img.len(), want.len(), "column count");
    for (c, w) in want.iter().enumerate() {
        let got = text(img.cell(c));
        assert!(
            got == *w,
            "{:?} row {row} image {image} column `{}` ({}): decoded {} but SELECT prints {}",
            ev.kind,
            ev.table.columns[c].name,
            ev.table.columns[c].sql_type,
            short(&got),
            short(w)
        );
    }
}

async fn setup(conn: &mut mysql_async::Conn, db_table_sql: &str) {
    exec(conn, "CREATE DATABASE IF NOT EXISTS sluice_live").await;
    exec(conn, "DROP TABLE IF EXISTS sluice_live.all_types").await;
    exec(conn, db_table_sql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_column_type_matches_select() {
    let srv = server();
    let mut admin = srv.admin().await;
    exec(
        &mut admin,
        "SET SESSION sql_mode = '', time_zone = '+00:00'",
    )
    .await;
    setup(&mut admin, ALL_TYPES).await;
    let mut cfg = srv.source(4_000_001);
    cfg.start = StartPosition::Latest;
    let mut src = BinlogSource::connect(cfg, None).await.expect("connect");

    let insert = format!(
        "INSERT INTO sluice_live.all_types VALUES {}",
        ROWS.join(",")
    );
    exec(&mut admin, &insert).await;
    let after_insert = select_rows(&mut admin).await;
    let rows = next_txn(&mut src, "all_types").await;
    assert_eq!(rows.len(), ROWS.len());
    for (r, want) in after_insert.iter().enumerate() {
        let (ev, i) = &rows[r];
        assert_eq!(ev.kind, ChangeKind::Insert);
        assert_eq!(ev.table.table, "all_types");
        assert_eq!(ev.table.primary_key, [0]);
        assert!(ev.txn.gtid.is_some());
        check_image(ev, *i, 0, want);
    }

    exec(
        &mut admin,
        "UPDATE sluice_live.all_types SET ti = ti - 1, vc = CONCAT('upd ', id), dec65 = -dec65, \
         ts = '2001-02-03 04:05:06.7', bn = X'FF' WHERE id IN (1, 2, 4)",
    )
    .await;
    let after_update = select_rows(&mut admin).await;
    let rows = next_txn(&mut src, "all_types").await;
    assert_eq!(rows.len(), 3);
    for (r, id) in [0usize, 1, 3].iter().enumerate() {
        let (ev, i) = &rows[r];
        assert_eq!(ev.kind, ChangeKind::Update);
        check_image(ev, *i, 0, &after_insert[*id]);
        check_image(ev, *i, 1, &after_update[*id]);
    }

    exec(&mut admin, "DELETE FROM sluice_live.all_types").await;
    let rows = next_txn(&mut src, "all_types").await;
    assert_eq!(rows.len(), ROWS.len());
    for (r, want) in after_update.iter().enumerate() {
        let (ev, i) = &rows[r];
        assert_eq!(ev.kind, ChangeKind::Delete);
        check_image(ev, *i, 0, want);
    }
}

/// `log_bin_compress=ON` makes MariaDB write compressed QUERY and rows events; they
/// decode to the same values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_events_decode() {
    let srv = server();
    let mut admin = srv.admin().await;
    exec(&mut admin, "CREATE DATABASE IF NOT EXISTS sluice_live").await;
    exec(&mut admin, "DROP TABLE IF EXISTS sluice_live.compressed").await;
    exec(
        &mut admin,
        "CREATE TABLE sluice_live.compressed (id INT PRIMARY KEY, t TEXT, n INT)",
    )
    .await;
    let mut src = BinlogSource::connect(srv.source(4_000_002), None)
        .await
        .expect("connect");
    exec(&mut admin, "SET GLOBAL log_bin_compress_min_len = 10").await;
    exec(&mut admin, "SET GLOBAL log_bin_compress = ON").await;
    // Write from a task so a failure still reaches the line that switches compression off.
    let srv2 = srv.clone();
    let writes = tokio::spawn(async move {
        let mut conn = srv2.admin().await;
        exec(
            &mut conn,
            "INSERT INTO sluice_live.compressed VALUES (1, REPEAT('abc', 1000), 1), (2, 'short', NULL)",
        )
        .await;
        exec(&mut conn, "UPDATE sluice_live.compressed SET n = 7 WHERE id = 1").await;
        exec(&mut conn, "ALTER TABLE sluice_live.compressed ADD COLUMN extra INT").await;
    })
    .await;
    exec(&mut admin, "SET GLOBAL log_bin_compress = OFF").await;
    if let Err(e) = writes {
        std::panic::resume_unwind(e.into_panic());
    }
    let ins = next_change(&mut src, "compressed").await;
    assert_eq!(ins.kind, ChangeKind::Insert);
    assert_eq!(
        text(ins.rows.image(0, 0).cell(1)),
        Some("abc".repeat(1000).into_bytes())
    );
    assert_eq!(text(ins.rows.image(1, 0).cell(2)), None);
    let upd = next_change(&mut src, "compressed").await;
    assert_eq!(upd.kind, ChangeKind::Update);
    assert_eq!(text(upd.rows.image(0, 1).cell(2)), Some(b"7".to_vec()));
    let ddl = next_change(&mut src, "compressed").await;
    assert_eq!(ddl.kind, ChangeKind::Ddl);
    assert_eq!(ddl.table.table, "compressed");
    assert!(
        ddl.sql
            .as_deref()
            .unwrap_or("")
            .contains("ADD COLUMN extra")
    );
}
