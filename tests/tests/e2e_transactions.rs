//! `message = "transaction"` end to end (file sink, canal-compat module): a mixed
//! transaction over two tables becomes exactly one message per destination, each a JSON
//! array of Canal FlatMessages whose rows all belong to that partition; a transaction
//! larger than `max_message_bytes` is split into numbered parts, each within the limit,
//! in binlog order; folding every message gives the database's final state.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use sluice_sdk::canal::{canal_partition, java_hash_code};
use sluice_tests::agent::{Agent, Published, read_file_sink};
use sluice_tests::e2e::source_toml;
use sluice_tests::live::{exec, server};

const PARTITIONS: i32 = 4;
const LIMIT: usize = 20_000;

fn rows_of(m: &Published) -> Vec<(String, String, String)> {
    // (table, type, pk) of every row in every element.
    let mut out = Vec::new();
    for el in m.value.as_array().cloned().unwrap_or_default() {
        let table = el["table"].as_str().unwrap_or_default().to_string();
        let kind = el["type"].as_str().unwrap_or_default().to_string();
        let pk = el["pkNames"][0].as_str().unwrap_or_default().to_string();
        for row in el["data"].as_array().cloned().unwrap_or_default() {
            out.push((
                table.clone(),
                kind.clone(),
                row[&pk].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_per_transaction_and_destination() {
    let srv = server();
    let mut db = srv.admin().await;
    exec(&mut db, "DROP DATABASE IF EXISTS txm").await;
    exec(&mut db, "CREATE DATABASE txm").await;
    exec(
        &mut db,
        "CREATE TABLE txm.a (id BIGINT PRIMARY KEY, v VARCHAR(40))",
    )
    .await;
    exec(
        &mut db,
        "CREATE TABLE txm.b (k VARCHAR(20) PRIMARY KEY, n INT)",
    )
    .await;
    let dir = sluice_tests::scratch_dir("e2e-txm");
    let out = dir.join("out.jsonl");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"{}
include = ['txm\..*']

[[modules]]
name = "canal"
file = "{}"
topics = ["txm.*"]
[modules.config]
"canal.mq.topic" = "txm.default"
"canal.mq.dynamicTopic" = 'txm\..*'
"canal.mq.partitionsNum" = "{PARTITIONS}"
"canal.mq.partitionHash" = '.*\..*:$pk$'

[sink]
kind = "file"
path = "{}"
message = "transaction"
max_message_bytes = {LIMIT}

[checkpoint]
path = "{}"

[admin]
listen = "127.0.0.1:0"
"#,
            source_toml(&srv, 4_300_020),
            env!("GUEST_CANAL_COMPAT"),
            out.display(),
            dir.join("cp").display()
        ),
    )
    .expect("config");
    let mut agent = Agent::start(
        &config,
        &dir.join("agent.log"),
        &[("SLUICE_E2E_PASSWORD", &srv.repl.1)],
    );
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));

    // Transaction A: 19 changes of four kinds over two tables.
    let mut tx = db
        .start_transaction(Default::default())
        .await
        .expect("begin");
    let a_rows: Vec<String> = (1..=10).map(|i| format!("({i}, 'a{i}')")).collect();
    tx.query_drop(format!("INSERT INTO txm.a VALUES {}", a_rows.join(",")))
        .await
        .expect("insert a");
    let b_rows: Vec<String> = (1..=5).map(|i| format!("('k{i}', {i})")).collect();
    tx.query_drop(format!("INSERT INTO txm.b VALUES {}", b_rows.join(",")))
        .await
        .expect("insert b");
    tx.query_drop("UPDATE txm.a SET v = CONCAT(v, '!') WHERE id <= 3")
        .await
        .expect("update");
    tx.query_drop("DELETE FROM txm.b WHERE k = 'k5'")
        .await
        .expect("delete");
    tx.commit().await.expect("commit");
    // Transaction B: 2000 rows, far over the message limit.
    let big: Vec<String> = (1000..3000)
        .map(|i| format!("({i}, 'padding-padding-padding-{i}')"))
        .collect();
    db.query_drop(format!("INSERT INTO txm.a VALUES {}", big.join(",")))
        .await
        .expect("insert big");

    let t = Instant::now();
    let msgs = loop {
        let msgs: Vec<Published> = read_file_sink(&out)
            .into_iter()
            .filter(|m| m.topic.starts_with("txm."))
            .collect();
        let n: usize = msgs.iter().map(|m| rows_of(m).len()).sum();
        if n >= 19 + 2000 {
            assert_eq!(n, 19 + 2000, "no duplicates without crashes");
            break msgs;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "only {n} rows published"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(agent.terminate(Duration::from_secs(30)), Some(0));

    let mut dest_a = BTreeSet::new();
    let mut a_kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut parts: BTreeMap<i32, Vec<u32>> = BTreeMap::new();
    let mut big_ids: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
    let mut state: BTreeMap<(String, String), bool> = BTreeMap::new();
    for m in &msgs {
        let arr = m
            .value
            .as_array()
            .expect("a transaction message is an array");
        assert_eq!(
            m.headers.get("sluice.events").map(String::as_str),
            Some(arr.len().to_string().as_str())
        );
        let part: u32 = m.headers["sluice.part"].parse().expect("part number");
        let rows = rows_of(m);
        for (table, kind, pk) in &rows {
            let want = canal_partition(java_hash_code("txm") ^ java_hash_code(pk), PARTITIONS);
            assert_eq!(m.partition, want, "{table} {pk}");
            assert_eq!(m.topic, format!("txm.{table}"));
            state.insert((table.clone(), pk.clone()), kind != "DELETE");
        }
        let is_big = rows
            .iter()
            .all(|(_, _, pk)| pk.parse::<u64>().is_ok_and(|id| id >= 1000));
        if is_big {
            // Serialized (topic, partition, key, headers, value) stays near the limit;
            // the value itself is within it.
            assert!(
                m.value.to_string().len() <= LIMIT,
                "part over the limit: {}",
                m.value.to_string().len()
            );
            parts.entry(m.partition).or_default().push(part);
            big_ids
                .entry(m.partition)
                .or_default()
                .extend(rows.iter().map(|(_, _, pk)| pk.parse::<u64>().unwrap_or(0)));
        } else {
            assert_eq!(part, 0, "transaction A fits in one message per destination");
            assert!(
                dest_a.insert((m.topic.clone(), m.partition)),
                "two messages for one destination in one transaction"
            );
            for (_, kind, _) in &rows {
                *a_kinds.entry(kind.clone()).or_default() += 1;
            }
        }
    }
    assert_eq!(
        a_kinds,
        BTreeMap::from([
            ("DELETE".to_string(), 1),
            ("INSERT".to_string(), 15),
            ("UPDATE".to_string(), 3)
        ])
    );
    eprintln!(
        "{} messages; transaction A destinations {}; parts per partition of B {:?}",
        msgs.len(),
        dest_a.len(),
        parts.iter().map(|(p, v)| (*p, v.len())).collect::<Vec<_>>()
    );
    assert!(
        parts.values().any(|p| p.len() > 1),
        "the big transaction was split: {parts:?}"
    );
    for (p, ps) in &parts {
        let want: Vec<u32> = (0..ps.len() as u32).collect();
        assert_eq!(ps, &want, "parts of partition {p} in order");
    }
    for (p, ids) in &big_ids {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "binlog order in partition {p}"
        );
    }
    let a: Vec<u64> = db.query("SELECT id FROM txm.a").await.expect("select");
    let b: Vec<String> = db.query("SELECT k FROM txm.b").await.expect("select");
    let live: BTreeSet<(String, String)> = a
        .iter()
        .map(|i| ("a".to_string(), i.to_string()))
        .chain(b.iter().map(|k| ("b".to_string(), k.clone())))
        .collect();
    let folded: BTreeSet<(String, String)> = state
        .into_iter()
        .filter(|(_, alive)| *alive)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(folded, live);
    std::fs::remove_dir_all(&dir).ok();
}

/// Formats chosen per module (`[[modules]] format`) and per decision (the
/// `sluice.format` header, here set by the `tags` module): Debezium envelopes and
/// FlatMessages side by side in one run; an unknown format value falls back to the
/// sink's with a warning naming the module, and the header itself is never published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formats_per_module_and_per_decision() {
    let srv = server();
    let mut db = srv.admin().await;
    exec(&mut db, "DROP DATABASE IF EXISTS fmt").await;
    exec(&mut db, "CREATE DATABASE fmt").await;
    for t in ["a", "b", "c", "skipped"] {
        exec(
            &mut db,
            &format!("CREATE TABLE fmt.{t} (id BIGINT PRIMARY KEY, v VARCHAR(20))"),
        )
        .await;
    }
    let dir = sluice_tests::scratch_dir("e2e-fmt");
    let out = dir.join("out.jsonl");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"{}
include = ['fmt\..*']
exclude = ['fmt\.skipped']

[[modules]]
name = "tags"
file = "{}"
topics = ["fmt.tagged"]
[modules.config]
topic = "fmt.tagged"
header = "sluice.format"
"tag.debezium" = 'fmt\.a'
"tag.canal" = 'fmt\.b'
"tag.xml" = 'fmt\.c'

[[modules]]
name = "canal"
file = "{}"
topics = ["fmt.*"]
format = "debezium"
[modules.config]
"canal.mq.topic" = "fmt.default"
"canal.mq.dynamicTopic" = 'fmt\..*'

[sink]
kind = "file"
path = "{}"

[checkpoint]
path = "{}"

[admin]
listen = "127.0.0.1:0"
"#,
            source_toml(&srv, 4_300_021),
            env!("GUEST_TAGS"),
            env!("GUEST_CANAL_COMPAT"),
            out.display(),
            dir.join("cp").display()
        ),
    )
    .expect("config");
    let log = dir.join("agent.log");
    let mut agent = Agent::start(&config, &log, &[("SLUICE_E2E_PASSWORD", &srv.repl.1)]);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    // `fmt.skipped` is excluded: its rows (written first) must not appear.
    for t in ["skipped", "a", "b", "c"] {
        db.query_drop(format!(
            "INSERT INTO fmt.{t} VALUES (1,'x'),(2,'y'),(3,'z')"
        ))
        .await
        .expect("insert");
    }
    let is_debezium = |v: &serde_json::Value| v.get("op").is_some() && v.get("after").is_some();
    let is_canal = |v: &serde_json::Value| v.get("type").is_some() && v["data"].is_array();
    let t = Instant::now();
    let msgs = loop {
        let msgs: Vec<Published> = read_file_sink(&out)
            .into_iter()
            .filter(|m| m.topic.starts_with("fmt."))
            .collect();
        // tags: a as 3 envelopes, b and c as one FlatMessage each; canal: 9 envelopes.
        if msgs.len() >= 3 + 2 + 9 {
            break msgs;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{} messages",
            msgs.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(agent.terminate(Duration::from_secs(30)), Some(0));
    assert_eq!(msgs.len(), 14, "{msgs:#?}");
    for m in &msgs {
        assert!(!m.headers.contains_key("sluice.format"), "{m:?}");
        let table = m.headers["sluice.table"].as_str();
        assert_ne!(table, "skipped", "an excluded table was published: {m:?}");
        let debezium = match (m.topic.as_str(), table) {
            ("fmt.tagged", "a") => true,
            ("fmt.tagged", _) => false,
            _ => true, // module `canal` is configured with format = "debezium"
        };
        if debezium {
            assert!(is_debezium(&m.value), "{} {table}: {}", m.topic, m.value);
        } else {
            assert!(is_canal(&m.value), "{} {table}: {}", m.topic, m.value);
        }
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        text.matches("Module asked for an unknown format").count(),
        1,
        "one warning for module tags: {text}"
    );
    assert!(text.contains("xml"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}
