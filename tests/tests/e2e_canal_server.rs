//! `sluice run` serving Canal's TCP protocol (`kind = "canal-server"`) to canal-python
//! 0.4 (a Canal client Sluice did not write) and to a raw client on the protocol:
//! rows as the database has them, the classic asynchronous-ack flow with a rollback,
//! a client killed mid-batch, the agent killed with rows unacknowledged, two
//! destinations fed by two modules, and hostile clients (wrong passwords, garbage,
//! oversized frames and fetches, out-of-order acks) while another client's stream goes
//! on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use prost::Message;
use sluice::format::canal_entry::{Entry, RowChange, entry_type};
use sluice_tests::agent::{Agent, free_port};
use sluice_tests::canal::{Answer, PyClient, Raw};
use sluice_tests::e2e::source_toml;
use sluice_tests::live::{Server, exec, server};

/// The tests share the database's binlog but not their tables; one at a time keeps
/// their timing honest on two cores.
static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a test's agent serves: destinations on loopback `port`, for the tables of
/// database `db`; `modules` goes before `[sink]`, `extra` into `[sink.canal_server]`.
struct Serve<'a> {
    server_id: u32,
    db: &'a str,
    port: u16,
    destinations: &'a [&'a str],
    modules: &'a str,
    extra: &'a str,
}

fn config(dir: &Path, srv: &Server, s: &Serve<'_>) -> PathBuf {
    let path = dir.join("sluice.toml");
    let list: Vec<String> = s.destinations.iter().map(|d| format!("\"{d}\"")).collect();
    std::fs::write(
        &path,
        format!(
            "{}include = ['{}\\..*']\n{}\n[sink]\nkind = \"canal-server\"\ndefault_topic = \"{}\"\n[sink.canal_server]\nlisten = \"127.0.0.1:{}\"\ndestinations = [{}]\ncursor_dir = \"{}\"\n{}\n[checkpoint]\npath = \"{}\"\ninterval_ms = 200\n",
            source_toml(srv, s.server_id),
            s.db,
            s.modules,
            s.destinations[0],
            s.port,
            list.join(", "),
            dir.join("cursors").display(),
            s.extra,
            dir.join("cp").display()
        ),
    )
    .expect("config");
    path
}

fn start(config: &Path, dir: &Path, srv: &Server) -> Agent {
    let mut agent = Agent::start(
        config,
        &dir.join("agent.log"),
        &[("SLUICE_E2E_PASSWORD", srv.repl.1.as_str())],
    );
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    agent
}

/// Waits until `f` holds (at most `limit`), failing with `what`.
fn until(limit: Duration, what: &dyn Fn() -> String, f: &dyn Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "after {limit:?}: {}", what());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn col<'a>(cols: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    cols.as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

fn ids(rows: &[serde_json::Value]) -> Vec<u64> {
    rows.iter()
        .filter_map(|r| {
            let img = if r["after"].as_array().is_some_and(|a| !a.is_empty()) {
                &r["after"]
            } else {
                &r["before"]
            };
            col(img, "id")["value"]
                .as_str()
                .and_then(|v| v.parse().ok())
        })
        .collect()
}

/// Inserts, an update, a primary-key change and a delete arrive through canal-python
/// with their schema, table, event type, key flags, changed-column flags and values
/// equal to what the database returns, each with a binlog file and an offset that
/// grows from entry to entry, inside begin and end entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canal_python_sees_rows_as_the_database_has_them() {
    let _one = ONE.lock().await;
    let srv = server();
    let mut db = srv.admin().await;
    exec(&mut db, "DROP DATABASE IF EXISTS cdb1").await;
    exec(&mut db, "CREATE DATABASE cdb1").await;
    exec(
        &mut db,
        "CREATE TABLE cdb1.items (id INT PRIMARY KEY, name VARCHAR(32), price DECIMAL(8,2), note TEXT NULL, at DATETIME)",
    )
    .await;
    let dir = sluice_tests::scratch_dir("canal-rows");
    let port = free_port();
    let cfg = config(
        &dir,
        &srv,
        &Serve {
            server_id: 4_800_001,
            db: "cdb1",
            port,
            destinations: &["example"],
            modules: "",
            extra: "",
        },
    );
    let agent = start(&cfg, &dir, &srv);
    let client = PyClient::start(&dir, port, "example", "ack", None);
    exec(
        &mut db,
        "INSERT INTO cdb1.items VALUES (1, 'Zoë', 9.50, NULL, '2024-01-02 03:04:05'), (2, '王芳', 250.00, 'x', '2024-05-06 07:08:09'), (3, 'c', 0.01, '', '2000-01-01 00:00:00')",
    )
    .await;
    exec(&mut db, "UPDATE cdb1.items SET name = 'Zoe' WHERE id = 1").await;
    exec(&mut db, "UPDATE cdb1.items SET id = 20 WHERE id = 2").await;
    exec(&mut db, "DELETE FROM cdb1.items WHERE id = 3").await;
    until(
        Duration::from_secs(60),
        &|| format!("{} of 6 rows", client.rows().len()),
        &|| client.rows().len() >= 6,
    );
    let rows = client.rows();
    assert_eq!(rows.len(), 6, "{:?}", ids(&rows));
    let types: Vec<i64> = rows
        .iter()
        .map(|r| r["eventType"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(
        types,
        [1, 1, 1, 2, 2, 3],
        "INSERT×3, UPDATE, UPDATE (key change), DELETE"
    );
    for r in &rows {
        assert_eq!(
            (r["schema"].as_str(), r["table"].as_str()),
            (Some("cdb1"), Some("items"))
        );
        assert!(r["file"].as_str().is_some_and(|f| !f.is_empty()), "{r}");
        assert_eq!(r["isDdl"], false);
    }
    // Values as the database renders them; NULL is a flag, not a value.
    let first = &rows[0]["after"];
    assert_eq!(col(first, "id")["isKey"], true);
    assert_eq!(col(first, "name")["isKey"], false);
    assert_eq!(col(first, "price")["value"], "9.50");
    assert_eq!(col(first, "note")["isNull"], true);
    assert_eq!(col(first, "at")["value"], "2024-01-02 03:04:05");
    assert_eq!(col(first, "price")["mysqlType"], "decimal(8,2)");
    assert_eq!(col(first, "id")["sqlType"], 4, "java.sql.Types.INTEGER");
    // The update: only `name` changed.
    let upd = &rows[3];
    assert_eq!(col(&upd["before"], "name")["value"], "Zoë");
    assert_eq!(col(&upd["after"], "name")["value"], "Zoe");
    let changed: Vec<&str> = upd["after"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["updated"] == true)
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(changed, ["name"]);
    // The key change: before has id 2, after id 20, and `id` is marked changed.
    let pk = &rows[4];
    assert_eq!(col(&pk["before"], "id")["value"], "2");
    assert_eq!(col(&pk["after"], "id")["value"], "20");
    assert_eq!(col(&pk["after"], "id")["updated"], true);
    assert_eq!(col(&pk["after"], "name")["updated"], false);
    // The delete carries the deleted row as its before image.
    assert_eq!(col(&rows[5]["before"], "id")["value"], "3");
    assert!(rows[5]["after"].as_array().is_some_and(|a| a.is_empty()));
    // The final images equal what SELECT returns.
    let selected: Vec<(i32, String, String, Option<String>, String)> = db
        .query("SELECT id, name, CAST(price AS CHAR), note, CAST(at AS CHAR) FROM cdb1.items ORDER BY id")
        .await
        .expect("select");
    let last = |id: i32| {
        rows.iter()
            .rev()
            .find(|r| col(&r["after"], "id")["value"].as_str() == Some(id.to_string().as_str()))
            .map(|r| r["after"].clone())
            .unwrap_or_default()
    };
    for (id, name, price, note, at) in selected {
        let img = last(id);
        assert_eq!(col(&img, "name")["value"], name.as_str(), "{id}");
        assert_eq!(col(&img, "price")["value"], price.as_str(), "{id}");
        assert_eq!(col(&img, "at")["value"], at.as_str(), "{id}");
        match note {
            None => assert_eq!(col(&img, "note")["isNull"], true),
            Some(n) => assert_eq!(col(&img, "note")["value"], n.as_str()),
        }
    }
    // Positions grow from entry to entry, begin/end included.
    let lines = client.lines();
    let keys: Vec<(u64, i64)> = lines
        .iter()
        .filter(|l| l["row"].as_i64().is_none_or(|r| r <= 0))
        .map(|l| {
            let f = l["file"].as_str().unwrap_or_default();
            let n = f
                .rsplit_once('.')
                .and_then(|(_, n)| n.parse().ok())
                .unwrap_or(0);
            (n, l["offset"].as_i64().unwrap_or(0))
        })
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "positions not increasing: {keys:?}"
    );
    let kinds: Vec<i64> = lines
        .iter()
        .map(|l| l["entryType"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(
        kinds.first(),
        Some(&1),
        "a transaction begins first: {kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|&&k| k == 1).count(),
        4,
        "four transactions: {kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|&&k| k == 3).count(),
        4,
        "four ends: {kinds:?}"
    );
    drop(client);
    assert_eq!(agent.terminate(Duration::from_secs(60)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}

async fn insert_rows(db: &mut mysql_async::Conn, table: &str, from: u64, n: u64, per_txn: u64) {
    let mut i = from;
    while i < from + n {
        let end = (i + per_txn).min(from + n);
        let values: Vec<String> = (i..end).map(|k| format!("({k}, 'v{k}')")).collect();
        db.query_drop(format!("INSERT INTO {table} VALUES {}", values.join(",")))
            .await
            .expect("insert");
        i = end;
    }
}

/// The classic asynchronous-ack flow: `getWithoutAck` in one thread, `ack` from another
/// 0.3 s later, and a `rollback` after the third batch. Batches come again, and the
/// client's deduplication by binlog file and offset processes every row exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_acks_with_a_rollback_process_every_row_exactly_once() {
    let _one = ONE.lock().await;
    let srv = server();
    let mut db = srv.admin().await;
    exec(&mut db, "DROP DATABASE IF EXISTS cdb2").await;
    exec(&mut db, "CREATE DATABASE cdb2").await;
    exec(
        &mut db,
        "CREATE TABLE cdb2.t (id BIGINT PRIMARY KEY, v VARCHAR(20))",
    )
    .await;
    let dir = sluice_tests::scratch_dir("canal-async");
    let port = free_port();
    let cfg = config(
        &dir,
        &srv,
        &Serve {
            server_id: 4_800_002,
            db: "cdb2",
            port,
            destinations: &["example"],
            modules: "",
            extra: "",
        },
    );
    let agent = start(&cfg, &dir, &srv);
    insert_rows(&mut db, "cdb2.t", 0, 600, 20).await;
    let mut client = PyClient::start(&dir, port, "example", "async", Some(600));
    let (code, log) = client.wait(Duration::from_secs(120));
    assert_eq!(code, Some(0), "client: {log}");
    let lines = client.lines();
    let redelivered = lines
        .last()
        .and_then(|l| l["redelivered"].as_u64())
        .unwrap_or(0);
    assert!(
        redelivered > 0,
        "the rollback redelivered nothing ({} lines; last {:?})",
        lines.len(),
        lines.last()
    );
    let got = ids(&client.rows());
    let unique: BTreeSet<u64> = got.iter().copied().collect();
    assert_eq!(got.len(), 600, "every row once after deduplication");
    assert_eq!(unique, (0..600).collect(), "every row, none twice");
    assert_eq!(agent.terminate(Duration::from_secs(60)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}

/// A client killed holding a batch it never acknowledged: the next client gets that
/// batch again. The agent killed with -9 while rows wait for a client: after the
/// restart the client gets exactly the rows it had not acknowledged (the destination's
/// cursor keeps the ones it had from coming again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_client_and_a_killed_agent_lose_nothing() {
    let _one = ONE.lock().await;
    let srv = server();
    let mut db = srv.admin().await;
    exec(&mut db, "DROP DATABASE IF EXISTS cdb3").await;
    exec(&mut db, "CREATE DATABASE cdb3").await;
    exec(
        &mut db,
        "CREATE TABLE cdb3.t (id BIGINT PRIMARY KEY, v VARCHAR(20))",
    )
    .await;
    let dir = sluice_tests::scratch_dir("canal-kill");
    let port = free_port();
    let cfg = config(
        &dir,
        &srv,
        &Serve {
            server_id: 4_800_003,
            db: "cdb3",
            port,
            destinations: &["example"],
            modules: "",
            extra: "",
        },
    );
    let agent = start(&cfg, &dir, &srv);
    insert_rows(&mut db, "cdb3.t", 0, 300, 10).await;

    // Fetches one batch, never acknowledges it, and dies.
    let mut holder = PyClient::start(&dir, port, "example", "noack", None);
    until(
        Duration::from_secs(60),
        &|| "the first client fetched nothing".into(),
        &|| !holder.rows().is_empty(),
    );
    let held = ids(&holder.rows());
    holder.kill();

    let mut reader = PyClient::start(&dir, port, "example", "ack", Some(300));
    let (code, log) = reader.wait(Duration::from_secs(120));
    assert_eq!(code, Some(0), "{log}");
    let got: BTreeSet<u64> = ids(&reader.rows()).into_iter().collect();
    assert_eq!(
        got,
        (0..300).collect(),
        "every row, the killed client's batch included"
    );
    assert!(held.iter().all(|id| got.contains(id)));

    // Rows no client acknowledges yet; the agent dies.
    insert_rows(&mut db, "cdb3.t", 300, 200, 10).await;
    std::thread::sleep(Duration::from_secs(1));
    agent.kill9();
    let agent = start(&cfg, &dir, &srv);
    let mut after = PyClient::start(&dir, port, "example", "ack", Some(200));
    let (code, log) = after.wait(Duration::from_secs(120));
    assert_eq!(code, Some(0), "{log}");
    std::thread::sleep(Duration::from_millis(500));
    let got = ids(&after.rows());
    assert_eq!(
        got.iter().copied().collect::<BTreeSet<u64>>(),
        (300..500).collect(),
        "exactly the unacknowledged rows come after the restart"
    );
    assert_eq!(got.len(), 200, "none twice: {got:?}");
    assert_eq!(agent.terminate(Duration::from_secs(60)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}

/// Two destinations fed by two modules (canal-compat with a table filter each): each
/// client sees only its module's table. A destination that is not served is refused
/// by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_destinations_see_only_their_modules_events() {
    let _one = ONE.lock().await;
    let srv = server();
    let mut db = srv.admin().await;
    exec(&mut db, "DROP DATABASE IF EXISTS cdb4").await;
    exec(&mut db, "CREATE DATABASE cdb4").await;
    for t in ["orders", "users"] {
        exec(
            &mut db,
            &format!("CREATE TABLE cdb4.{t} (id BIGINT PRIMARY KEY, v VARCHAR(20))"),
        )
        .await;
    }
    let dir = sluice_tests::scratch_dir("canal-two");
    let port = free_port();
    let module = |name: &str, table: &str| {
        format!(
            "[[modules]]\nname = \"{name}\"\nfile = \"{}\"\ndeadline_ms = 2000\n[modules.config]\n\"canal.mq.topic\" = \"{name}\"\n\"canal.instance.filter.regex\" = 'cdb4\\.{table}'\n",
            env!("GUEST_CANAL_COMPAT")
        )
    };
    let modules = format!("{}{}", module("orders", "orders"), module("users", "users"));
    let cfg = config(
        &dir,
        &srv,
        &Serve {
            server_id: 4_800_004,
            db: "cdb4",
            port,
            destinations: &["orders", "users"],
            modules: &modules,
            extra: "",
        },
    );
    let agent = start(&cfg, &dir, &srv);
    let orders = PyClient::start(&dir, port, "orders", "ack", None);
    let users = PyClient::start(&dir, port, "users", "ack", None);
    insert_rows(&mut db, "cdb4.orders", 0, 50, 5).await;
    insert_rows(&mut db, "cdb4.users", 1000, 30, 5).await;
    until(
        Duration::from_secs(60),
        &|| {
            format!(
                "orders {} of 50, users {} of 30",
                orders.rows().len(),
                users.rows().len()
            )
        },
        &|| orders.rows().len() >= 50 && users.rows().len() >= 30,
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(orders.rows().iter().all(|r| r["table"] == "orders"));
    assert!(users.rows().iter().all(|r| r["table"] == "users"));
    assert_eq!(
        ids(&orders.rows()).into_iter().collect::<BTreeSet<_>>(),
        (0..50).collect()
    );
    assert_eq!(
        ids(&users.rows()).into_iter().collect::<BTreeSet<_>>(),
        (1000..1030).collect()
    );
    // An unknown destination: canal-python's subscribe fails with the server's words.
    let mut stray = PyClient::start(&dir, port, "nosuch", "ack", None);
    let (code, log) = stray.wait(Duration::from_secs(30));
    assert_ne!(code, Some(0));
    assert!(
        log.contains("destination `nosuch` is not served here"),
        "{log}"
    );
    drop((orders, users));
    assert_eq!(agent.terminate(Duration::from_secs(60)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}

/// With a user and password configured: a wrong password, garbage, an oversized frame,
/// an oversized fetch and an out-of-order ack each get an error ACK with Canal's code
/// and a closed connection; a silent connection holds nothing up. Meanwhile a client of
/// another destination, logged in with the scrambled password as Canal's Java
/// connector does, receives every row written during the barrage, and the agent stops
/// cleanly afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_get_error_codes_and_the_others_carry_on() {
    let _one = ONE.lock().await;
    let srv = server();
    let mut db = srv.admin().await;
    exec(&mut db, "DROP DATABASE IF EXISTS cdb5").await;
    exec(&mut db, "CREATE DATABASE cdb5").await;
    for t in ["a", "b"] {
        exec(
            &mut db,
            &format!("CREATE TABLE cdb5.{t} (id BIGINT PRIMARY KEY, v VARCHAR(20))"),
        )
        .await;
    }
    let dir = sluice_tests::scratch_dir("canal-hostile");
    let port = free_port();
    let module = |name: &str| {
        format!(
            "[[modules]]\nname = \"{name}\"\nfile = \"{}\"\ndeadline_ms = 2000\n[modules.config]\n\"canal.mq.topic\" = \"{name}\"\n\"canal.instance.filter.regex\" = 'cdb5\\.{name}'\n",
            env!("GUEST_CANAL_COMPAT")
        )
    };
    let modules = format!("{}{}", module("a"), module("b"));
    let admin = free_port();
    let extra = format!(
        "user = \"canal\"\npasswd_env = \"SLUICE_CANAL_PASSWD\"\n[admin]\nlisten = \"127.0.0.1:{admin}\""
    );
    let cfg = config(
        &dir,
        &srv,
        &Serve {
            server_id: 4_800_005,
            db: "cdb5",
            port,
            destinations: &["a", "b"],
            modules: &modules,
            extra: &extra,
        },
    );
    // Canal's example canal.passwd: MySQL's PASSWORD('canal') without the `*`.
    let mut agent = Agent::start(
        &cfg,
        &dir.join("agent.log"),
        &[
            ("SLUICE_E2E_PASSWORD", srv.repl.1.as_str()),
            (
                "SLUICE_CANAL_PASSWD",
                "E3619321C1A937C46A0D8BD1DAC39F93B27D4458",
            ),
        ],
    );
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));

    // The other tenant: a proper client of destination `b`, reading throughout.
    let mut good = Raw::connect(port).await;
    assert_eq!(
        good.auth("canal", Some("canal"), Some("b")).await,
        Answer::Ack(0, String::new())
    );
    let writer = {
        let srv_pool = srv.admin().await;
        tokio::spawn(async move {
            let mut db = srv_pool;
            insert_rows(&mut db, "cdb5.b", 0, 400, 4).await;
        })
    };
    let reader = tokio::spawn(async move {
        let mut seen = BTreeSet::new();
        let t = Instant::now();
        while seen.len() < 400 && t.elapsed() < Duration::from_secs(90) {
            match good.get("b", 100, 200).await {
                Answer::Messages(id, entries) => {
                    for e in entries {
                        let e = Entry::decode(&e[..]).expect("entry");
                        if e.entry_type != Some(entry_type::ROW_DATA) {
                            continue;
                        }
                        let c = RowChange::decode(&e.store_value[..]).expect("row change");
                        for r in c.row_datas {
                            if let Some(id) = r.after_columns.iter().find(|c| c.name == "id") {
                                seen.insert(id.value.parse::<u64>().unwrap_or(u64::MAX));
                            }
                        }
                    }
                    if id > 0 {
                        good.ack("b", id).await;
                    }
                }
                other => panic!("the good client got {other:?}"),
            }
        }
        seen
    });

    // A wrong password, a wrong user, the plain password (as canal-python sends it).
    for (user, pass) in [
        ("canal", Some("nope")),
        ("root", Some("canal")),
        ("canal", None),
    ] {
        let mut c = Raw::connect(port).await;
        assert_eq!(
            c.auth(user, pass, None).await,
            Answer::Ack(400, format!("auth failed for user:{user}"))
        );
        assert_eq!(c.answer().await, Answer::Closed);
    }
    // A silent connection (never authenticates) is left alone and holds nothing up.
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // Garbage where a packet should be.
    let mut c = Raw::connect(port).await;
    c.send_bytes(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff])
        .await;
    assert!(matches!(c.answer().await, Answer::Ack(400, m) if m.contains("not a Canal packet")));
    assert_eq!(c.answer().await, Answer::Closed);
    // A 2 GiB frame: refused at its length.
    let mut c = Raw::connect(port).await;
    c.send_bytes(&[0x7f, 0xff, 0xff, 0xff]).await;
    assert!(matches!(c.answer().await, Answer::Ack(400, m) if m.contains("over the")));
    assert_eq!(c.answer().await, Answer::Closed);
    // Logged in, then an oversized fetch.
    let mut c = Raw::connect(port).await;
    assert_eq!(
        c.auth("canal", Some("canal"), None).await,
        Answer::Ack(0, String::new())
    );
    assert_eq!(c.subscribe("a").await, Answer::Ack(0, String::new()));
    assert!(
        matches!(c.get("a", 10_000_000, -1).await, Answer::Ack(400, m) if m.contains("fetch_size"))
    );
    assert_eq!(c.answer().await, Answer::Closed);
    // Out-of-order acknowledgement: two batches, the second acked first.
    insert_rows(&mut db, "cdb5.a", 0, 4, 1).await;
    let mut c = Raw::connect(port).await;
    assert_eq!(
        c.auth("canal", Some("canal"), Some("a")).await,
        Answer::Ack(0, String::new())
    );
    let Answer::Messages(first, one) = c.get("a", 3, 10_000).await else {
        panic!("no first batch")
    };
    let Answer::Messages(second, _) = c.get("a", 3, 10_000).await else {
        panic!("no second batch")
    };
    assert!(first > 0 && second > first, "{first} {second}");
    c.ack("a", second).await;
    assert!(matches!(c.answer().await, Answer::Ack(400, m) if m.contains("is not the firstly")));
    assert_eq!(c.answer().await, Answer::Closed);
    // The next client gets the first batch again: nothing was lost by the bad ack.
    let mut c = Raw::connect(port).await;
    assert_eq!(
        c.auth("canal", Some("canal"), Some("a")).await,
        Answer::Ack(0, String::new())
    );
    let Answer::Messages(_, again) = c.get("a", 3, 10_000).await else {
        panic!("no batch")
    };
    assert_eq!(again, one, "the unacknowledged batch comes again, the same");
    // A flood of connections: past the cap, each is told so and closed; once they go,
    // clients connect again.
    let mut flood = Vec::new();
    let refused = loop {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let p = sluice::sink::canal_server::packet::read(&mut s)
            .await
            .expect("a packet");
        if p.r#type == sluice::sink::canal_server::packet::kind::ACK {
            let a = sluice::sink::canal_server::packet::Ack::decode(&p.body[..]).expect("ack");
            break a.error_message;
        }
        flood.push(s);
        assert!(flood.len() <= 300, "no connection cap");
    };
    assert!(refused.contains("too many connections"), "{refused}");
    drop(flood);
    let t = Instant::now();
    loop {
        let mut again = Raw::connect_any(port).await;
        if again.handshake_ok() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "the cap never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A second client on a destination that has one is refused.
    let mut dup = Raw::connect(port).await;
    assert!(
        matches!(dup.auth("canal", Some("canal"), Some("a")).await, Answer::Ack(400, m) if m.contains("has a client already"))
    );

    writer.await.expect("writer");
    let seen = reader.await.expect("reader");
    assert_eq!(
        seen,
        (0..400).collect(),
        "the other destination's client got every row"
    );
    // What operators see: the refusals by reason, the client of `b`, `a`'s batch
    // outstanding again with the client holding it.
    let (_, metrics) = sluice_tests::agent::admin_get(admin, "/metrics");
    for line in [
        "sluice_canal_errors_total{reason=\"auth\"} 3",
        "sluice_canal_errors_total{reason=\"ack\"} 1",
        "sluice_canal_errors_total{reason=\"fetch\"} 1",
        "sluice_canal_errors_total{reason=\"protocol\"} 2",
        "sluice_canal_outstanding_batches{destination=\"a\"} 1",
    ] {
        assert!(metrics.contains(line), "no `{line}` in:\n{metrics}");
    }
    // The admin API lists each destination's client and cursor (`sluice ctl publisher`),
    // as of the last checkpoint step: `a` held by its client, `b`'s client gone (the
    // reader finished) and its cursor where that client acknowledged.
    let t = Instant::now();
    let report = loop {
        let (code, out) = sluice_tests::agent::ctl(admin, &["publisher", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let ds = v["publisher"]["destinations"].clone();
        let a = ds
            .as_array()
            .and_then(|d| d.iter().find(|d| d["destination"] == "a"))
            .cloned();
        let b = ds
            .as_array()
            .and_then(|d| d.iter().find(|d| d["destination"] == "b"))
            .cloned();
        if let (Some(a), Some(b)) = (a, b)
            && a["outstanding_batches"] == 1
            && b["cursor"].is_object()
            && b["client"].is_null()
        {
            assert_eq!(code, Some(0), "{out}");
            break (a, b);
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(report.0["client"]["client_id"], "1001", "{report:?}");
    assert!(
        report.0["client"]["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{report:?}"
    );
    assert!(
        report.1["cursor"]["offset"].as_u64().is_some_and(|o| o > 0),
        "{report:?}"
    );
    drop(c);
    let text = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
    assert!(
        !text.contains("nope") && !text.contains("E3619321"),
        "a secret in the log: {text}"
    );
    assert_eq!(agent.terminate(Duration::from_secs(60)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}
