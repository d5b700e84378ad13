//! The end-to-end scenario shared by the sink backends: a mixed workload written to the
//! test MariaDB while `sluice run` (with the canal-compat module) publishes it, the agent
//! killed with SIGKILL at random moments and restarted, then every published message
//! read back and checked against the database.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use sluice_sdk::canal::{canal_partition, java_hash_code};

use crate::agent::{Agent, Published};
use crate::live::{Server, exec};

/// Partitions per topic in the scenario.
pub const PARTITIONS: i32 = 4;

/// The module config the scenario uses. Its deadline is generous: these tests are about
/// delivery, and a debug build on two shared cores can take more than the default
/// 50 ms over a batch (deadlines have their own tests, in `module_isolation`).
pub fn module_toml(module: &Path) -> String {
    format!(
        r#"
[[modules]]
name = "canal"
file = "{}"
deadline_ms = 2000
topics = ["e2e.*"]
[modules.config]
"canal.mq.topic" = "e2e.default"
"canal.mq.dynamicTopic" = 'e2e\..*'
"canal.mq.partitionsNum" = "{PARTITIONS}"
"canal.mq.partitionHash" = '.*\..*:$pk$'
"#,
        module.display()
    )
}

/// Source section for the test server.
pub fn source_toml(srv: &Server, server_id: u32) -> String {
    format!(
        r#"
[source]
host = "127.0.0.1"
port = {}
user = "{}"
password_env = "SLUICE_E2E_PASSWORD"
server_id = {server_id}
start = "latest"
heartbeat_ms = 500
"#,
        srv.port, srv.repl.0
    )
}

/// Source section for the scenario: only the `e2e` database is captured, so tests
/// that run beside it in other databases never reach its messages.
pub fn scenario_source_toml(srv: &Server, server_id: u32) -> String {
    format!("{}include = ['e2e\\..*']\n", source_toml(srv, server_id))
}

/// Creates the scenario's tables.
pub async fn setup(conn: &mut mysql_async::Conn) {
    exec(conn, "DROP DATABASE IF EXISTS e2e").await;
    exec(conn, "CREATE DATABASE e2e").await;
    exec(
        conn,
        "CREATE TABLE e2e.t1 (id BIGINT PRIMARY KEY, v VARCHAR(40), d DECIMAL(12,2))",
    )
    .await;
    exec(
        conn,
        "CREATE TABLE e2e.t2 (k VARCHAR(20) PRIMARY KEY, n INT)",
    )
    .await;
}

/// The workload, in phases (each returns quickly enough to crash the agent between
/// or during them). Returns the number of row changes written.
pub async fn phase(conn: &mut mysql_async::Conn, n: usize) -> usize {
    match n {
        0 => {
            // 100k inserts in transactions of 1..5000 rows.
            let mut id = 1u64;
            let mut rows = 0;
            for size in [1u64, 10, 100, 5000].iter().cycle() {
                if id > 100_000 {
                    break;
                }
                let end = (id + size - 1).min(100_000);
                exec(
                    conn,
                    &format!(
                        "INSERT INTO e2e.t1 SELECT seq, CONCAT('v', seq), seq / 100 FROM e2e.seq_{id}_to_{end}"
                    ),
                )
                .await;
                rows += (end - id + 1) as usize;
                id = end + 1;
            }
            rows
        }
        1 => {
            exec(
                conn,
                "UPDATE e2e.t1 SET v = CONCAT(v, '-u') WHERE id % 10 = 0",
            )
            .await;
            10_000
        }
        2 => {
            // Primary-key changes: published as delete + insert.
            exec(
                conn,
                "UPDATE e2e.t1 SET id = id + 1000000 WHERE id % 97 = 0",
            )
            .await;
            1_030
        }
        3 => {
            exec(conn, "DELETE FROM e2e.t1 WHERE id % 13 = 0").await;
            7_700
        }
        4 => {
            for i in 0..200 {
                exec(conn, &format!("INSERT INTO e2e.t2 VALUES ('k{i}', {i})")).await;
            }
            exec(conn, "ALTER TABLE e2e.t2 ADD COLUMN x INT").await;
            exec(conn, "UPDATE e2e.t2 SET x = n * 2, n = n + 1").await;
            exec(
                conn,
                "INSERT INTO e2e.t2 SELECT CONCAT('z', seq), seq, seq FROM e2e.seq_1_to_3000",
            )
            .await;
            3_400
        }
        _ => 0,
    }
}

/// Number of workload phases.
pub const PHASES: usize = 5;

/// The database's current rows, as (table, primary key) -> column values.
pub async fn db_state(
    conn: &mut mysql_async::Conn,
) -> BTreeMap<(String, String), BTreeMap<String, Option<String>>> {
    let mut out = BTreeMap::new();
    for (table, pk) in [("t1", "id"), ("t2", "k")] {
        let rows: Vec<mysql_async::Row> = conn
            .query(format!("SELECT * FROM e2e.{table}"))
            .await
            .expect("select");
        for r in rows {
            let cols: Vec<String> = r
                .columns_ref()
                .iter()
                .map(|c| c.name_str().to_string())
                .collect();
            let vals: Vec<Option<String>> = r
                .unwrap()
                .into_iter()
                .map(|v| match v {
                    mysql_async::Value::NULL => None,
                    mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                    other => Some(other.as_sql(true)),
                })
                .collect();
            let map: BTreeMap<String, Option<String>> = cols.into_iter().zip(vals).collect();
            let key = map.get(pk).cloned().flatten().unwrap_or_default();
            out.insert((table.to_string(), key), map);
        }
    }
    out
}

/// What the messages add up to.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Final rows.
    pub state: BTreeMap<(String, String), BTreeMap<String, Option<String>>>,
    /// Row changes (after dropping duplicates).
    pub changes: usize,
    /// Row changes seen more than once (redelivered after a crash).
    pub duplicates: usize,
    /// Final rows as a consumer following the README's deduplication recipe sees them:
    /// per (topic, partition), a message at or below the highest `sluice.position`
    /// applied there is dropped whole.
    pub recipe_state: BTreeMap<(String, String), BTreeMap<String, Option<String>>>,
    /// Messages the recipe dropped.
    pub recipe_dropped: usize,
}

/// A row's column values by name.
pub type RowValues = BTreeMap<String, Option<String>>;

/// A position as compared: (file number, offset, sub, N).
pub type PositionKey = (u64, u64, u32, u32);

/// `sluice.position` (`FILE:OFFSET[/SUB]:N`) as the README says to compare it:
/// (file number, offset, sub, N). `None` when it is not of that form.
pub fn parse_position(pos: &str) -> Option<PositionKey> {
    let (rest, n) = pos.rsplit_once(':')?;
    let (file, at) = rest.rsplit_once(':')?;
    let (offset, sub) = match at.split_once('/') {
        Some((o, s)) => (o, s.parse().ok()?),
        None => (at, 0),
    };
    let file_no = file.rsplit_once('.')?.1.parse().ok()?;
    Some((file_no, offset.parse().ok()?, sub, n.parse().ok()?))
}

/// A FlatMessage's rows as (primary key, column values), with its table and type.
fn rows_of(v: &serde_json::Value) -> (String, String, String, Vec<(String, RowValues)>) {
    let table = v["table"].as_str().unwrap_or_default().to_string();
    let db = v["database"].as_str().unwrap_or_default().to_string();
    let kind = v["type"].as_str().unwrap_or_default().to_string();
    let pk_name = v["pkNames"][0].as_str().unwrap_or_default().to_string();
    let rows = v["data"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    let obj = row.as_object().cloned().unwrap_or_default();
                    let pk = obj
                        .get(&pk_name)
                        .and_then(|x| x.as_str())
                        .unwrap_or_default()
                        .to_string();
                    let vals = obj
                        .into_iter()
                        .map(|(k, v)| (k, v.as_str().map(str::to_string)))
                        .collect();
                    (pk, vals)
                })
                .collect()
        })
        .unwrap_or_default();
    (db, table, kind, rows)
}

/// Applies messages in order, dropping redeliveries by (position, row), and checks
/// partitions, unique positions and per-key order on the way; also applies them as the
/// README's deduplication recipe says (`recipe_state`). Panics on a violation.
pub fn replay(msgs: &[Published]) -> Replayed {
    let mut r = Replayed::default();
    let mut seen: BTreeSet<(String, usize)> = BTreeSet::new();
    let mut last_pos: BTreeMap<(String, String), (PositionKey, usize)> = BTreeMap::new();
    // The recipe: the highest position applied per (topic, partition).
    let mut highest: BTreeMap<(String, i32), PositionKey> = BTreeMap::new();
    // What one position carried the first time (type, table, rows, first key), to
    // prove that a repeat is the same message.
    let mut first_seen: BTreeMap<String, (String, String, usize, String)> = BTreeMap::new();
    for m in msgs {
        let v = &m.value;
        let pos = m
            .headers
            .get("sluice.position")
            .cloned()
            .unwrap_or_default();
        let key = parse_position(&pos).unwrap_or_else(|| panic!("bad sluice.position `{pos}`"));
        let (db, table, kind, rows) = rows_of(v);
        let signature = (
            kind.clone(),
            table.clone(),
            rows.len(),
            rows.first().map(|(pk, _)| pk.clone()).unwrap_or_default(),
        );
        match first_seen.get(&pos) {
            Some(prev) => assert_eq!(
                *prev, signature,
                "two different messages share sluice.position {pos}"
            ),
            None => {
                first_seen.insert(pos.clone(), signature);
            }
        }
        let fresh = highest
            .get(&(m.topic.clone(), m.partition))
            .is_none_or(|h| key > *h);
        if fresh {
            highest.insert((m.topic.clone(), m.partition), key);
        } else {
            r.recipe_dropped += 1;
        }
        if v["isDdl"].as_bool().unwrap_or(false) || v["data"].is_null() {
            continue;
        }
        assert_eq!(
            m.topic,
            format!("e2e.{table}"),
            "dynamic topic of {pos}: {v}"
        );
        for (i, (pk, vals)) in rows.into_iter().enumerate() {
            // Rows of one message share the partition Canal's hash gives each of them.
            let want = canal_partition(java_hash_code(&db) ^ java_hash_code(&pk), PARTITIONS);
            assert_eq!(m.partition, want, "partition of {table} row {pk} at {pos}");
            let row_key = (table.clone(), pk.clone());
            if fresh {
                match kind.as_str() {
                    "DELETE" => {
                        r.recipe_state.remove(&row_key);
                    }
                    _ => {
                        r.recipe_state.insert(row_key.clone(), vals.clone());
                    }
                }
            }
            if !seen.insert((pos.clone(), i)) {
                r.duplicates += 1;
                continue;
            }
            r.changes += 1;
            let here = (key, i);
            if let Some(prev) = last_pos.get(&row_key) {
                assert!(
                    *prev < here,
                    "row {row_key:?}: change at {here:?} delivered after one at {prev:?}"
                );
            }
            last_pos.insert(row_key.clone(), here);
            match kind.as_str() {
                "DELETE" => {
                    r.state.remove(&row_key);
                }
                _ => {
                    r.state.insert(row_key, vals);
                }
            }
        }
    }
    r
}

/// Runs the scenario: `start` launches an agent (fresh or resuming), `read` returns all
/// messages published so far. Returns (row changes written, duplicates seen).
/// [`scenario`] with five SIGKILLs against the agent configured by `config` (its log in
/// `dir`), reading back through `read`: asserts at least 100,000 row changes arrived
/// and returns how many.
pub async fn kill9_scenario(
    srv: &Server,
    config: &Path,
    dir: &Path,
    broker: &str,
    read: impl Fn() -> Vec<Published>,
) -> usize {
    let log = dir.join("agent.log");
    let pass = srv.repl.1.clone();
    let (changes, dups) = scenario(
        srv,
        || Agent::start(config, &log, &[("SLUICE_E2E_PASSWORD", &pass)]),
        read,
        5,
    )
    .await;
    eprintln!("{changes} row changes through {broker}, {dups} redelivered after crashes");
    assert!(changes >= 100_000, "{changes}");
    changes
}

pub async fn scenario(
    srv: &Server,
    mut start: impl FnMut() -> Agent,
    read: impl Fn() -> Vec<Published>,
    kills: usize,
) -> (usize, usize) {
    let mut admin = srv.admin().await;
    let mut agent = Some(start());
    let mut starts = 1;
    if let Some(a) = agent.as_mut() {
        a.wait_log("Replicating.", starts, Duration::from_secs(60));
    }
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    eprintln!("crash seed {seed}");
    let mut next_delay = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        Duration::from_millis(50 + (seed >> 33) % 700)
    };
    let mut kills_left = kills;
    // SIGKILL the running agent, start a new one (it resumes from its checkpoint) and
    // wait until it replicates, so every kill hits a working agent.
    let mut crash_and_restart = |agent: &mut Option<Agent>| {
        if let Some(a) = agent.take() {
            a.kill9();
        }
        let mut a = start();
        starts += 1;
        a.wait_log("Replicating.", starts, Duration::from_secs(60));
        *agent = Some(a);
    };
    for p in 0..PHASES {
        // Kill the agent at a random moment while this phase is being written, then
        // start it again (from its checkpoint) while the writes go on.
        let writer = phase(&mut admin, p);
        tokio::pin!(writer);
        let delay = tokio::time::sleep(next_delay());
        tokio::pin!(delay);
        let mut armed = kills_left > 0;
        loop {
            tokio::select! {
                _ = &mut writer => break,
                _ = &mut delay, if armed => {
                    armed = false;
                    kills_left -= 1;
                    crash_and_restart(&mut agent);
                }
            }
        }
    }
    // Remaining kills while the agent catches up.
    while kills_left > 0 {
        tokio::time::sleep(next_delay()).await;
        kills_left -= 1;
        crash_and_restart(&mut agent);
    }
    let agent = agent.expect("an agent runs");
    let want = db_state(&mut admin).await;
    let t = Instant::now();
    let replayed = loop {
        let r = replay(&read());
        if r.state == want {
            break r;
        }
        if t.elapsed() > Duration::from_secs(240) {
            let missing: Vec<_> = want
                .keys()
                .filter(|k| !r.state.contains_key(*k))
                .take(5)
                .collect();
            let extra: Vec<_> = r
                .state
                .keys()
                .filter(|k| !want.contains_key(*k))
                .take(5)
                .collect();
            let differ: Vec<_> = want
                .iter()
                .filter(|(k, v)| r.state.get(*k).is_some_and(|x| x != *v))
                .take(3)
                .collect();
            panic!(
                "published state differs from the database after 240 s: {} rows vs {}; missing {missing:?}, extra {extra:?}, differ {differ:?}",
                r.state.len(),
                want.len()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    // The README's recipe, executed: per partition, drop what is at or below the
    // highest position applied. It must end at the database's state too.
    if replayed.recipe_state != want {
        let missing: Vec<_> = want
            .keys()
            .filter(|k| !replayed.recipe_state.contains_key(*k))
            .take(5)
            .collect();
        panic!(
            "the deduplication recipe lost rows: {} rows vs {} in the database (dropped {} messages); missing {missing:?}",
            replayed.recipe_state.len(),
            want.len(),
            replayed.recipe_dropped
        );
    }
    eprintln!(
        "deduplication recipe: {} redelivered messages dropped, state equal to the database",
        replayed.recipe_dropped
    );
    let code = agent.terminate(Duration::from_secs(60));
    assert_eq!(code, Some(0), "SIGTERM is a clean exit");
    (replayed.changes, replayed.duplicates)
}
