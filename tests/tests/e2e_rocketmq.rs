//! `sluice run` publishing to a real RocketMQ (the Rust name server and broker,
//! `scripts/rocketmq.sh`), read back with `rocketmq-client-rust` pull consumers: the
//! mixed >100k-row workload through canal-compat with five SIGKILL restarts (every
//! row's final state equal to the database, per-queue order, each message in the queue
//! Canal's partition formula gives, the deduplication recipe), one topic with a tag per
//! business domain (a consumer's tag expression receives only its tags), the broker
//! stopped mid-stream, the name server restarted under a namespace with batches and
//! topics created through the admin API, and what a missing topic does.

use std::time::Duration;

use sluice_tests::agent::{Agent, ctl};
use sluice_tests::e2e::{
    PARTITIONS, PositionKey, kill9_scenario, module_toml, parse_position, scenario_source_toml,
    setup, source_toml,
};
use sluice_tests::live::{exec, server};
use sluice_tests::rocket::{Consumer, create_topic, namesrv, queues, require_broker};

/// The tests here share the broker (one stops it): one at a time.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn sink_toml(extra: &str) -> String {
    format!(
        "\n[sink]\nkind = \"rocketmq\"\n[sink.rocketmq]\nnamesrv = [\"{}\"]\ncluster = \"{}\"\n{extra}\n",
        namesrv(),
        sluice_tests::rocket::CLUSTER
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocketmq_sink_survives_kill9() {
    let _guard = BROKER.lock().await;
    require_broker();
    // Canal's names: the dynamic topics `e2e.t1`... publish as `e2e_t1`...
    let topics = ["e2e_t1", "e2e_t2", "e2e_default"];
    for t in topics {
        create_topic(t, PARTITIONS);
    }
    let srv = server();
    let mut admin = srv.admin().await;
    setup(&mut admin).await;
    let dir = sluice_tests::scratch_dir("e2e-rocket");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "{}{}{}\n[checkpoint]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            scenario_source_toml(&srv, 4_700_001),
            module_toml(std::path::Path::new(env!("GUEST_CANAL_COMPAT"))),
            sink_toml("tag = \"cdc\""),
            dir.join("cp").display()
        ),
    )
    .expect("config");
    let consumer = Consumer::start(&dir, &topics, "*");
    kill9_scenario(&srv, &config, &dir, "RocketMQ", || consumer.read()).await;
    // Every message as RocketMQ carries it: the static tag, the primary key as its key,
    // Sluice's headers as user properties.
    let raw = consumer.raw();
    assert!(!raw.is_empty());
    for m in raw.iter().take(200) {
        assert_eq!(m["tags"], "cdc", "{m}");
        assert!(m["properties"]["sluice.position"].is_string(), "{m}");
        assert!(m["properties"]["sluice.table"].is_string(), "{m}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// One topic for every table, a tag per business domain (the `tags` module): each
/// message carries its table's tag, and a consumer subscribed with a tag expression
/// receives exactly the messages of its tags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_topic_with_a_tag_per_domain_and_consumers_filter_by_tag() {
    let _guard = BROKER.lock().await;
    require_broker();
    // A topic of this run's own: the broker may hold an earlier run's messages.
    let domains = format!("domains_{}", std::process::id());
    create_topic(&domains, 4);
    let srv = server();
    let mut db = srv.admin().await;
    exec(&mut db, "DROP DATABASE IF EXISTS rtags").await;
    exec(&mut db, "CREATE DATABASE rtags").await;
    for t in ["orders", "payments", "users"] {
        exec(
            &mut db,
            &format!("CREATE TABLE rtags.{t} (id BIGINT PRIMARY KEY, v INT)"),
        )
        .await;
    }
    let dir = sluice_tests::scratch_dir("rocket-tags");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "{}include = ['rtags\\..*']\n\
             [[modules]]\nname = \"tags\"\nfile = \"{}\"\ndeadline_ms = 2000\n[modules.config]\ntopic = \"{domains}\"\n\
             \"tag.ES_UPDATE_EVENT\" = 'rtags\\.orders,rtags\\.payments'\n\"tag.USER_EVENT\" = 'rtags\\.users'\n\
             {}\n[checkpoint]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            source_toml(&srv, 4_700_002),
            env!("GUEST_TAGS"),
            sink_toml(""),
            dir.join("cp").display()
        ),
    )
    .expect("config");
    let all = Consumer::start(&dir, &[domains.as_str()], "*");
    let es = Consumer::start(&dir, &[domains.as_str()], "ES_UPDATE_EVENT");
    let env = [("SLUICE_E2E_PASSWORD", srv.repl.1.as_str())];
    let log = dir.join("agent.log");
    let mut agent = Agent::start(&config, &log, &env);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    for i in 0..50 {
        for t in ["orders", "payments", "users"] {
            exec(&mut db, &format!("INSERT INTO rtags.{t} VALUES ({i}, {i})")).await;
        }
    }
    let table = |m: &serde_json::Value| {
        serde_json::from_str::<serde_json::Value>(m["body"].as_str().unwrap_or_default())
            .ok()
            .and_then(|b| b["table"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let t = std::time::Instant::now();
    while all.raw().len() < 150 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{} of 150 messages after 60 s",
            all.raw().len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for m in all.raw() {
        let want = if table(&m) == "users" {
            "USER_EVENT"
        } else {
            "ES_UPDATE_EVENT"
        };
        assert_eq!(m["tags"], want, "{m}");
        assert!(
            m["properties"].get("tag").is_none(),
            "the tag header is the tag, not a property: {m}"
        );
    }
    // The tag-filtered consumer: every orders and payments message, nothing else.
    let t = std::time::Instant::now();
    while es.raw().len() < 100 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{} of 100 tagged messages after 30 s",
            es.raw().len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    let got = es.raw();
    assert_eq!(got.len(), 100, "only the two tables' messages");
    assert!(got.iter().all(|m| table(m) != "users"));
    assert_eq!(agent.terminate(Duration::from_secs(30)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}

/// `sluice check` and `sluice run` name a topic that does not exist (never created by
/// a send); a name server nobody listens on is a clear error too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_and_an_unreachable_name_server_are_clear_errors() {
    let _guard = BROKER.lock().await;
    require_broker();
    let srv = server();
    let dir = sluice_tests::scratch_dir("rocket-missing");
    let write = |sink: String| {
        let config = dir.join("sluice.toml");
        std::fs::write(
            &config,
            format!(
                "{}\n[sink]\ndefault_topic = \"no_such_topic_{}\"\n{}\n[checkpoint]\npath = \"{}\"\n",
                source_toml(&srv, 4_700_003),
                std::process::id(),
                sink.replace("\n[sink]\n", "\n"),
                dir.join("cp").display()
            ),
        )
        .expect("config");
        config
    };
    for (sink, words) in [
        (
            sink_toml(""),
            vec!["no_such_topic_", "sluice ctl create-topic"],
        ),
        (
            sink_toml("").replace(&namesrv(), "127.0.0.1:1"),
            vec!["127.0.0.1:1", "do not answer"],
        ),
    ] {
        let config = write(sink);
        let out = std::process::Command::new(sluice_tests::agent::binary())
            .args(["check", "-c"])
            .arg(&config)
            .env("SLUICE_E2E_PASSWORD", &srv.repl.1)
            .output()
            .expect("sluice check runs");
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}");
        for w in words {
            assert!(text.contains(w), "`{w}` not in: {text}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The broker is stopped mid-stream and started again 5 s later (its store kept): the
/// agent holds what was not stored, sends it again when the broker is back, and every
/// row arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_nothing() {
    use mysql_async::prelude::Queryable;
    let _guard = BROKER.lock().await;
    require_broker();
    // A topic of this run's own: the broker may hold an earlier run's messages.
    let topic = format!("restart_t{}", std::process::id());
    create_topic(&topic, 4);
    let srv = server();
    let mut db = srv.admin().await;
    exec(&mut db, "DROP DATABASE IF EXISTS rrestart").await;
    exec(&mut db, "CREATE DATABASE rrestart").await;
    exec(
        &mut db,
        "CREATE TABLE rrestart.t (id BIGINT PRIMARY KEY, v VARCHAR(20))",
    )
    .await;
    let dir = sluice_tests::scratch_dir("rocket-restart");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "{}include = ['rrestart\\..*']\n\
             [[modules]]\nname = \"canal\"\nfile = \"{}\"\ndeadline_ms = 2000\n[modules.config]\n\
             \"canal.mq.topic\" = \"{topic}\"\n\"canal.mq.partitionsNum\" = \"4\"\n\"canal.mq.partitionHash\" = '.*\\..*:$pk$'\n\
             {}\n[checkpoint]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            source_toml(&srv, 4_700_004),
            env!("GUEST_CANAL_COMPAT"),
            sink_toml(""),
            dir.join("cp").display()
        ),
    )
    .expect("config");
    let consumer = Consumer::start(&dir, &[topic.as_str()], "*");
    let env = [("SLUICE_E2E_PASSWORD", srv.repl.1.as_str())];
    let log = dir.join("agent.log");
    let mut agent = Agent::start(&config, &log, &env);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    let rows = 20_000u64;
    let mut next = 0u64;
    let mut write = async |n: u64| {
        for _ in 0..n / 500 {
            let values: Vec<String> = (next..next + 500)
                .map(|i| format!("({i}, 'v{i}')"))
                .collect();
            next += 500;
            db.query_drop(format!(
                "INSERT INTO rrestart.t VALUES {}",
                values.join(",")
            ))
            .await
            .expect("insert");
        }
    };
    // Some rows before, half while the broker is down (they wait in the window), the
    // rest after it is back.
    write(5_000).await;
    // The broker runs again when the test ends, whatever happens: the tests after it
    // need it.
    struct Restart;
    impl Drop for Restart {
        fn drop(&mut self) {
            // Not `script`: a panic here, while a failure unwinds, would abort.
            let _ = std::process::Command::new("bash")
                .arg(sluice_tests::repo_root().join("scripts/rocketmq.sh"))
                .arg("start-broker")
                .output();
        }
    }
    let _restart = Restart;
    sluice_tests::rocket::script(&["stop-broker"]);
    write(10_000).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    sluice_tests::rocket::script(&["start-broker"]);
    write(5_000).await;
    let ids = |c: &Consumer| -> std::collections::BTreeSet<u64> {
        c.read()
            .iter()
            .flat_map(|m| m.value["data"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r["id"].as_str().and_then(|s| s.parse().ok()))
            .collect()
    };
    let t = std::time::Instant::now();
    while ids(&consumer).len() < rows as usize {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{} of {rows} rows after the broker came back",
            ids(&consumer).len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(agent.terminate(Duration::from_secs(60)), Some(0));
    // The outage was felt: sends failed and were retried, not lost.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("RocketMQ send not stored; sending again"),
        "the broker outage never held a message: {text}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A namespace, batches, topics created through the admin API, and the name server
/// stopped mid-stream and started again (empty: the broker registers again within its
/// heartbeat period): topics are `NAMESPACE%TOPIC` on the broker, `sluice ctl
/// create-topic` creates one with the queues asked (a second time is a 409 naming it),
/// and every row written before, during and after the outage arrives, in order per
/// queue, with no restart of the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_server_restart_with_batches_in_a_namespace_loses_nothing() {
    use mysql_async::prelude::Queryable;
    let _guard = BROKER.lock().await;
    require_broker();
    let ns = "sluicens";
    // A topic of this run's own: the broker may hold an earlier run's messages.
    let nsr = format!("nsr_t{}", std::process::id());
    create_topic(&format!("{ns}%{nsr}"), 4);
    let srv = server();
    let mut db = srv.admin().await;
    exec(&mut db, "DROP DATABASE IF EXISTS rnsr").await;
    exec(&mut db, "CREATE DATABASE rnsr").await;
    exec(
        &mut db,
        "CREATE TABLE rnsr.t (id BIGINT PRIMARY KEY, v VARCHAR(20))",
    )
    .await;
    let dir = sluice_tests::scratch_dir("rocket-namesrv");
    let config = dir.join("sluice.toml");
    let port = sluice_tests::agent::free_port();
    std::fs::write(
        &config,
        format!(
            "{}include = ['rnsr\\..*']\n\
             [[modules]]\nname = \"canal\"\nfile = \"{}\"\ndeadline_ms = 2000\n[modules.config]\n\
             \"canal.mq.topic\" = \"{nsr}\"\n\"canal.mq.partitionsNum\" = \"4\"\n\"canal.mq.partitionHash\" = '.*\\..*:$pk$'\n\
             {}\n[checkpoint]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:{port}\"\n",
            source_toml(&srv, 4_700_005),
            env!("GUEST_CANAL_COMPAT"),
            sink_toml(&format!("namespace = \"{ns}\"\nbatch_max = 64")),
            dir.join("cp").display()
        ),
    )
    .expect("config");
    let consumer = Consumer::start(&dir, &[&format!("{ns}%{nsr}")], "*");
    let env = [("SLUICE_E2E_PASSWORD", srv.repl.1.as_str())];
    let log = dir.join("agent.log");
    let mut agent = Agent::start(&config, &log, &env);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));

    // Topic creation through the running agent lands inside the namespace.
    let created = format!("nsr.created{}", std::process::id());
    let (code, out) = ctl(port, &["create-topic", &created, "--partitions", "3"]);
    assert_eq!(code, Some(0), "{out}");
    let on_broker = format!("{ns}%{}", created.replace('.', "_"));
    let t = std::time::Instant::now();
    while queues(&on_broker) != Some(3) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{on_broker} has no route with 3 queues"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let (code, out) = ctl(port, &["create-topic", &created, "--partitions", "3"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("409") && out.contains(&on_broker), "{out}");

    let mut next = 0u64;
    let mut write = async |n: u64| {
        for _ in 0..n / 500 {
            let values: Vec<String> = (next..next + 500)
                .map(|i| format!("({i}, 'v{i}')"))
                .collect();
            next += 500;
            db.query_drop(format!("INSERT INTO rnsr.t VALUES {}", values.join(",")))
                .await
                .expect("insert");
        }
    };
    write(3_000).await;
    struct Restart(String);
    impl Drop for Restart {
        fn drop(&mut self) {
            let _ = std::process::Command::new("bash")
                .arg(sluice_tests::repo_root().join("scripts/rocketmq.sh"))
                .arg("start-namesrv")
                .output();
            // The tests after this one create topics: wait (at most 60 s) until the
            // broker registered again.
            let t = std::time::Instant::now();
            while queues(&self.0).is_none() && t.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    let _restart = Restart(format!("{ns}%{nsr}"));
    sluice_tests::rocket::script(&["stop-namesrv"]);
    write(3_000).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    sluice_tests::rocket::script(&["start-namesrv"]);
    // The empty name server learns the broker's topics at its next registration
    // (every 10 s, scripts/rocketmq.sh).
    let t = std::time::Instant::now();
    while queues(&format!("{ns}%{nsr}")).is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the broker did not register again within 60 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    write(3_000).await;
    let rows = 9_000usize;
    let t = std::time::Instant::now();
    loop {
        let got = consumer.read();
        let mut ids = std::collections::BTreeSet::new();
        for m in &got {
            for r in m.value["data"].as_array().into_iter().flatten() {
                if let Some(id) = r["id"].as_str().and_then(|s| s.parse::<u64>().ok()) {
                    ids.insert(id);
                }
            }
        }
        if ids.len() == rows {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(150),
            "{} of {rows} rows after the name server came back",
            ids.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Per queue, binlog order: positions only grow (a batch keeps its order).
    let mut last: std::collections::HashMap<i32, PositionKey> = Default::default();
    for m in consumer.read() {
        let text = m
            .headers
            .get("sluice.position")
            .cloned()
            .unwrap_or_default();
        let pos = parse_position(&text).unwrap_or_else(|| panic!("position `{text}`"));
        if let Some(prev) = last.insert(m.partition, pos) {
            assert!(prev < pos, "queue {}: {text} after {prev:?}", m.partition);
        }
    }
    assert_eq!(agent.terminate(Duration::from_secs(60)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}

/// A broker that stores messages but answers a replica status instead of `SEND_OK`
/// (a SYNC_MASTER with no slave, `scripts/rocketmq.sh`): by default that is not an
/// acknowledgement, so the message is sent again and the checkpoint stays before its
/// transaction, across a restart too; with the status in `accept`, the same backlog is
/// acknowledged and the checkpoint moves past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_status_is_not_an_acknowledgement_unless_accepted() {
    let _guard = BROKER.lock().await;
    require_broker();
    sluice_tests::rocket::create_topic_on(sluice_tests::rocket::SYNC_CLUSTER, "sync_t", 1);
    let srv = server();
    let mut db = srv.admin().await;
    exec(&mut db, "DROP DATABASE IF EXISTS rsync").await;
    exec(&mut db, "CREATE DATABASE rsync").await;
    exec(&mut db, "CREATE TABLE rsync.t (id BIGINT PRIMARY KEY)").await;
    let dir = sluice_tests::scratch_dir("rocket-sync");
    let config = dir.join("sluice.toml");
    let port = sluice_tests::agent::free_port();
    let write = |accept: &str| {
        std::fs::write(
            &config,
            format!(
                "{}include = ['rsync\\..*']\n\n[sink]\ndefault_topic = \"sync_t\"\n{}\n[checkpoint]\npath = \"{}\"\ninterval_ms = 100\n\n[admin]\nlisten = \"127.0.0.1:{port}\"\n",
                source_toml(&srv, 4_700_006),
                sink_toml(&format!("send_timeout_ms = 5000\naccept = [{accept}]"))
                    .replace("\n[sink]\n", "\n"),
                dir.join("cp").display()
            ),
        )
        .expect("config");
    };
    let checkpoint = || {
        let (_, body) = sluice_tests::agent::admin_get(port, "/v1/checkpoint");
        serde_json::from_str::<serde_json::Value>(&body)
            .map(|v| v["checkpoint"].clone())
            .unwrap_or_default()
    };
    let env = [("SLUICE_E2E_PASSWORD", srv.repl.1.as_str())];
    let log = dir.join("agent.log");

    write("");
    let mut agent = Agent::start(&config, &log, &env);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    exec(&mut db, "INSERT INTO rsync.t VALUES (1)").await;
    agent.wait_log(
        "RocketMQ send not stored; sending again",
        1,
        Duration::from_secs(60),
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("FLUSH_SLAVE_TIMEOUT") || text.contains("SLAVE_NOT_AVAILABLE"),
        "the warning names the status: {text}"
    );
    let held = checkpoint();
    // Time for a few more tries and checkpoint intervals: the checkpoint stays put.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        checkpoint(),
        held,
        "the checkpoint passed an unacknowledged row"
    );
    // The stop drains for at most 30 s (the row is never acknowledged), then exits
    // with the checkpoint before it.
    agent.terminate(Duration::from_secs(90));

    write("\"FLUSH_SLAVE_TIMEOUT\", \"SLAVE_NOT_AVAILABLE\"");
    let mut agent = Agent::start(&config, &log, &env);
    agent.wait_log("Replicating.", 2, Duration::from_secs(60));
    assert_eq!(checkpoint(), held, "resumed before the unacknowledged row");
    let t = std::time::Instant::now();
    while checkpoint() == held {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "accepted statuses did not move the checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(agent.terminate(Duration::from_secs(30)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}
