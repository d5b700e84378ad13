//! `sluice run` publishing to a real three-node RabbitMQ cluster (`scripts/rabbitmq.sh`)
//! through quorum queues, read back with pika: the mixed >100k-row workload with five
//! SIGKILL restarts (every row's final state equal to the database, per-key order, the
//! deduplication recipe, partitions as canal-compat decided them, one queue per
//! partition), the node the agent publishes to stopped mid-stream, and what an
//! unroutable routing key or a missing exchange does.

use std::time::{Duration, Instant};

use sluice_tests::agent::Agent;
use sluice_tests::e2e::{
    PARTITIONS, kill9_scenario, module_toml, scenario_source_toml, setup, source_toml,
};
use sluice_tests::live::{exec, server};
use sluice_tests::rabbit::{Consumer, addresses_toml, cluster, require_cluster};

/// The tests here share the cluster (one stops a node): one at a time.
static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One quorum queue per topic and partition, named and bound `TOPIC.PARTITION`.
fn queues(topics: &[&str], partitions: i32) -> Vec<String> {
    topics
        .iter()
        .flat_map(|t| (0..partitions).map(move |p| format!("{t}.{p}")))
        .collect()
}

fn sink_toml(exchange: &str, extra: &str) -> String {
    format!(
        "\n[sink]\nkind = \"rabbitmq\"\n[sink.rabbitmq]\naddresses = [{}]\nexchange = \"{exchange}\"\nrouting_key = \"{{topic}}.{{partition}}\"\n{extra}\n",
        addresses_toml()
    )
}

/// A database `db` with one table `t (id BIGINT PRIMARY KEY, v VARCHAR(20))`, quorum
/// queues `db.t.0` and `db.t.1` bound to exchange `sluice.db`, a pika consumer of them,
/// and a config publishing `db.t` through canal-compat (two partitions) with `sink_extra`
/// added to `[sink]`. Returns (scratch dir, config, consumer, database connection).
async fn one_table(
    srv: &sluice_tests::live::Server,
    db_name: &str,
    server_id: u32,
    sink_extra: &str,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    Consumer,
    mysql_async::Conn,
) {
    let qs = queues(&[&format!("{db_name}.t")], 2);
    let exchange = format!("sluice.{db_name}");
    sluice_tests::rabbit::setup(&exchange, &qs);
    let mut db = srv.admin().await;
    exec(&mut db, &format!("DROP DATABASE IF EXISTS {db_name}")).await;
    exec(&mut db, &format!("CREATE DATABASE {db_name}")).await;
    exec(
        &mut db,
        &format!("CREATE TABLE {db_name}.t (id BIGINT PRIMARY KEY, v VARCHAR(20))"),
    )
    .await;
    let dir = sluice_tests::scratch_dir(&format!("rabbit-{db_name}"));
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "{}include = ['{db_name}\\..*']\n\
             [[modules]]\nname = \"canal\"\nfile = \"{}\"\ndeadline_ms = 2000\n[modules.config]\n\
             \"canal.mq.topic\" = \"{db_name}.t\"\n\"canal.mq.partitionsNum\" = \"2\"\n\"canal.mq.partitionHash\" = '.*\\..*:$pk$'\n\
             {}\n[checkpoint]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            source_toml(srv, server_id),
            env!("GUEST_CANAL_COMPAT"),
            sink_toml(&exchange, "").replace("[sink.rabbitmq]", &format!("{sink_extra}[sink.rabbitmq]")),
            dir.join("cp").display()
        ),
    )
    .expect("config");
    let consumer = Consumer::start(&dir.join("received.jsonl"), &qs);
    (dir, config, consumer, db)
}

/// The `id`s of every row the messages carry.
fn ids(msgs: &[sluice_tests::agent::Published]) -> std::collections::BTreeSet<u64> {
    msgs.iter()
        .flat_map(|m| m.value["data"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["id"].as_str().and_then(|s| s.parse().ok()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_sink_survives_kill9() {
    let _guard = CLUSTER.lock().await;
    require_cluster();
    let topics = ["e2e.t1", "e2e.t2", "e2e.default"];
    let qs = queues(&topics, PARTITIONS);
    sluice_tests::rabbit::setup("sluice.e2e", &qs);
    let srv = server();
    let mut admin = srv.admin().await;
    setup(&mut admin).await;
    let dir = sluice_tests::scratch_dir("e2e-rabbit");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "{}{}{}\n[checkpoint]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            scenario_source_toml(&srv, 4_600_001),
            module_toml(std::path::Path::new(env!("GUEST_CANAL_COMPAT"))),
            sink_toml("sluice.e2e", ""),
            dir.join("cp").display()
        ),
    )
    .expect("config");
    let consumer = Consumer::start(&dir.join("received.jsonl"), &qs);
    kill9_scenario(&srv, &config, &dir, "RabbitMQ", || consumer.read()).await;
    // Every message as AMQP carries it: persistent, JSON, its position as message id,
    // Sluice's headers as AMQP headers.
    let raw = consumer.raw();
    assert!(!raw.is_empty());
    for m in raw.iter().take(200) {
        assert_eq!(m["delivery_mode"], 2, "{m}");
        assert_eq!(m["content_type"], "application/json", "{m}");
        assert_eq!(m["message_id"], m["headers"]["sluice.position"], "{m}");
        assert!(m["headers"]["sluice.table"].is_string(), "{m}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The node the agent publishes to (the first address) is stopped mid-stream and
/// started again later: the agent moves to another node, publishes what was not
/// confirmed again, and every row arrives (quorum queues keep them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_mid_stream_loses_nothing() {
    use mysql_async::prelude::Queryable;
    let _guard = CLUSTER.lock().await;
    require_cluster();
    let srv = server();
    let (dir, config, consumer, mut db) = one_table(&srv, "rfail", 4_600_002, "").await;
    let log = dir.join("agent.log");
    let mut agent = Agent::start(&config, &log, &[("SLUICE_E2E_PASSWORD", &srv.repl.1)]);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    const ROWS: u64 = 20_000;
    // Node 1 runs again when the test ends, whatever happens: the tests after it need
    // the whole cluster.
    struct Restart;
    impl Drop for Restart {
        fn drop(&mut self) {
            // Not `cluster`: a panic here, while a failure unwinds, would abort.
            let _ = std::process::Command::new("bash")
                .arg(sluice_tests::repo_root().join("scripts/rabbitmq.sh"))
                .args(["start-node", "1"])
                .output();
        }
    }
    let _restart = Restart;
    let mut stopped = false;
    for start in (0..ROWS).step_by(100) {
        let rows: Vec<String> = (start..start + 100)
            .map(|i| format!("({i}, 'v{i}')"))
            .collect();
        db.query_drop(format!("INSERT INTO rfail.t VALUES {}", rows.join(",")))
            .await
            .expect("insert");
        if start == 6_000 {
            // The first address is where the agent connected.
            cluster(&["stop-node", "1"]);
            stopped = true;
        }
    }
    assert!(stopped);
    let t = Instant::now();
    while ids(&consumer.read()).len() < ROWS as usize {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "{} of {ROWS} rows with node 1 down",
            ids(&consumer.read()).len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    cluster(&["start-node", "1"]);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("RabbitMQ connection lost; reconnecting"),
        "{text}"
    );
    let got = ids(&consumer.read());
    assert_eq!(got.len() as u64, ROWS);
    assert_eq!(got.iter().next_back().copied(), Some(ROWS - 1));
    let received = consumer.read().len();
    eprintln!("{ROWS} rows in {received} messages with node 1 stopped mid-stream");
    assert_eq!(agent.terminate(Duration::from_secs(30)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}

/// A routing key no queue is bound for: with the module's default policy (halt) the
/// agent stops with an error naming the exchange and the routing key, and nothing
/// after it is checkpointed; `sluice check` names a missing exchange, a refused user
/// and a vhost that does not exist, and (through the management API) warns about the
/// module's declared topic until a queue is bound for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unroutable_messages_and_a_missing_exchange_are_clear_errors() {
    let _guard = CLUSTER.lock().await;
    require_cluster();
    // No binding left by an earlier run: the queue bound at the end goes, and the
    // exchange with it.
    sluice_tests::rabbit::delete("queues", "nobody.listens.0");
    sluice_tests::rabbit::delete("exchanges", "sluice.unrouted");
    sluice_tests::rabbit::setup("sluice.unrouted", &[]);
    let srv = server();
    let mut db = srv.admin().await;
    exec(&mut db, "DROP DATABASE IF EXISTS unrouted").await;
    exec(&mut db, "CREATE DATABASE unrouted").await;
    exec(&mut db, "CREATE TABLE unrouted.t (id BIGINT PRIMARY KEY)").await;
    let dir = sluice_tests::scratch_dir("rabbit-unrouted");
    let write = |sink: String| {
        let config = dir.join("sluice.toml");
        std::fs::write(
            &config,
            format!(
                "{}include = ['unrouted\\..*']\n\
                 [[modules]]\nname = \"canal\"\nfile = \"{}\"\ndeadline_ms = 2000\n[modules.config]\n\"canal.mq.topic\" = \"nobody.listens\"\n\
                 {sink}\n[checkpoint]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
                source_toml(&srv, 4_600_003),
                env!("GUEST_CANAL_COMPAT"),
                dir.join("cp").display()
            ),
        )
        .expect("config");
        config
    };
    let env = [("SLUICE_E2E_PASSWORD", srv.repl.1.as_str())];
    let check = |config: &std::path::Path| {
        let out = std::process::Command::new(sluice_tests::agent::binary())
            .args(["check", "-c"])
            .arg(config)
            .env("SLUICE_E2E_PASSWORD", &srv.repl.1)
            .output()
            .expect("sluice check runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The module declares `nobody.listens`; nothing is bound for it: a warning, not a
    // refusal (bindings may come later).
    let managed = write(sink_toml(
        "sluice.unrouted",
        &format!(
            "management_url = \"{}\"",
            sluice_tests::rabbit::management_url()
        ),
    ));
    let (code, out, err) = check(&managed);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("warning: sink.rabbitmq: no binding of exchange `sluice.unrouted`")
            && out.contains("`nobody.listens.{partition}`"),
        "{out}"
    );
    // Bad settings: `sluice check` stops naming what is wrong.
    for (sink, words) in [
        (
            sink_toml("no.such.exchange", "declare_exchange = false"),
            &["no.such.exchange", "does not exist"][..],
        ),
        (
            sink_toml("sluice.unrouted", "user = \"nobody\""),
            &["user `nobody` was refused", "sink.rabbitmq.user"][..],
        ),
        (
            sink_toml("sluice.unrouted", "vhost = \"/nope\""),
            &["vhost `/nope`"][..],
        ),
    ] {
        let config = write(sink);
        let (code, _, text) = check(&config);
        assert_eq!(code, Some(1), "{text}");
        for w in words {
            assert!(text.contains(w), "`{w}` not in: {text}");
        }
    }

    // Unroutable, halt: exit 1 naming exchange and routing key.
    let config = write(sink_toml("sluice.unrouted", ""));
    let log = dir.join("agent.log");
    let mut agent = Agent::start(&config, &log, &env);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    exec(&mut db, "INSERT INTO unrouted.t VALUES (1)").await;
    let code = agent.wait_exit(Duration::from_secs(30));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("sluice.unrouted")
            && text.contains("nobody.listens")
            && text.contains("unroutable"),
        "{text}"
    );
    // Bound now (a queue per partition, as consumers of `{topic}.{partition}` keys
    // bind): `sluice check` has nothing to warn about.
    sluice_tests::rabbit::setup("sluice.unrouted", &["nobody.listens.0".to_string()]);
    let (code, out, err) = check(&managed);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!out.contains("warning:"), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

/// CPU seconds (user + system) process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Every node down for a while: the agent neither spins nor loses anything. Its
/// window fills and reading waits; once the nodes are back it publishes the
/// unconfirmed messages again and everything written meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_nodes_down_backpressure_then_resume() {
    use mysql_async::prelude::Queryable;
    let _guard = CLUSTER.lock().await;
    require_cluster();
    let srv = server();
    // A small window: the outage fills it and the reader waits.
    let (dir, config, consumer, mut db) =
        one_table(&srv, "rdown", 4_600_004, "max_in_flight = 100\n").await;
    let log = dir.join("agent.log");
    let mut agent = Agent::start(&config, &log, &[("SLUICE_E2E_PASSWORD", &srv.repl.1)]);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    let pid = agent.pid();
    let insert = async |db: &mut mysql_async::Conn, from: u64, to: u64| {
        for start in (from..to).step_by(10) {
            let rows: Vec<String> = (start..start + 10)
                .map(|i| format!("({i}, 'v{i}')"))
                .collect();
            db.query_drop(format!("INSERT INTO rdown.t VALUES {}", rows.join(",")))
                .await
                .expect("insert");
        }
    };
    let wait_rows = |n: usize, what: &str| {
        let t = Instant::now();
        while ids(&consumer.read()).len() < n {
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "{what}: {} of {n} rows",
                ids(&consumer.read()).len()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    insert(&mut db, 0, 1000).await;
    wait_rows(1000, "before the outage");
    cluster(&["stop"]);
    // 3,000 rows written while no node answers: 300 transactions, three times the
    // window of 100 messages.
    insert(&mut db, 1000, 4000).await;
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu = cpu_seconds(pid) - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    eprintln!("all nodes down: the agent used {cpu:.2} CPU s in {wall:.1} s");
    assert!(
        cpu < 0.1 * wall,
        "the agent spun while every node was down: {cpu:.2} CPU s in {wall:.1} s"
    );
    // The node that stopped last starts first (RabbitMQ's rule), then the others.
    for n in ["1", "2", "3"] {
        cluster(&["start-node", n]);
    }
    wait_rows(4000, "after the nodes came back");
    let got = ids(&consumer.read());
    assert_eq!(got.len(), 4000);
    assert_eq!(agent.terminate(Duration::from_secs(30)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}

/// Messages AMQP or the broker cannot take, each through the module's policy (here
/// `skip`) instead of a reconnect loop or an exit: a 200 kB key (AMQP carries headers,
/// and so the key, in one frame) is refused before it is sent; a 150 kB row while the
/// nodes' `max_message_size` is 100 kB makes every node close the connection, which
/// the publisher counts and then hands the message to its policy. Rows after each are
/// published and the checkpoint reaches the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_no_node_takes_go_through_the_module_policy() {
    use mysql_async::prelude::Queryable;
    let _guard = CLUSTER.lock().await;
    require_cluster();
    let set_max = |bytes: u64| {
        for n in ["1", "2", "3"] {
            cluster(&[
                "ctl",
                n,
                "eval",
                &format!("application:set_env(rabbit, max_message_size, {bytes})."),
            ]);
        }
    };
    // The hostile module's decisions carry no partition; canal-compat's say 0.
    let qs = vec!["ok.".to_string(), "maxsize.t.0".to_string()];
    sluice_tests::rabbit::setup("sluice.maxsize", &qs);
    let srv = server();
    let mut db = srv.admin().await;
    exec(&mut db, "DROP DATABASE IF EXISTS maxsize").await;
    exec(&mut db, "CREATE DATABASE maxsize").await;
    exec(
        &mut db,
        "CREATE TABLE maxsize.bigkey (id BIGINT PRIMARY KEY)",
    )
    .await;
    exec(
        &mut db,
        "CREATE TABLE maxsize.t (id BIGINT PRIMARY KEY, v LONGTEXT)",
    )
    .await;
    let dir = sluice_tests::scratch_dir("rabbit-maxsize");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "{}include = ['maxsize\\..*']\n\
             [[modules]]\nname = \"big\"\nfile = \"{}\"\ntopics = [\"ok\"]\non_error = \"skip\"\n\
             [modules.config]\nmode = \"bigkey\"\nsize = \"200000\"\ntrigger = \"7\"\n\n\
             [[modules]]\nname = \"canal\"\nfile = \"{}\"\ndeadline_ms = 2000\non_error = \"skip\"\n\
             [modules.config]\n\"canal.mq.topic\" = \"maxsize.t\"\n\
             {}\n[checkpoint]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            source_toml(&srv, 4_600_005),
            env!("GUEST_HOSTILE"),
            env!("GUEST_CANAL_COMPAT"),
            sink_toml("sluice.maxsize", ""),
            dir.join("cp").display()
        ),
    )
    .expect("config");
    let consumer = Consumer::start(&dir.join("received.jsonl"), &qs);
    // Nodes take the limit into connections opened after it is set.
    set_max(100_000);
    let log = dir.join("agent.log");
    let mut agent = Agent::start(&config, &log, &[("SLUICE_E2E_PASSWORD", &srv.repl.1)]);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    let end = async |db: &mut mysql_async::Conn| -> Option<u64> {
        let rows: Vec<mysql_async::Row> = db.query("SHOW MASTER STATUS").await.expect("status");
        rows.first().and_then(|r| r.get(1))
    };
    let cp = || -> Option<u64> {
        let t = std::fs::read_to_string(dir.join("cp")).ok()?;
        serde_json::from_str::<serde_json::Value>(&t).ok()?["position"].as_u64()
    };
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !done() {
            assert!(t.elapsed() < Duration::from_secs(60), "{what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // A 200 kB key (the hostile module's trigger, id 7), then an ordinary row.
    exec(&mut db, "INSERT INTO maxsize.bigkey VALUES (7)").await;
    exec(&mut db, "INSERT INTO maxsize.t VALUES (1, 'small')").await;
    wait("the row after the big key", &|| {
        ids(&consumer.read()).contains(&1)
    });
    // A 150 kB value while every node takes at most 100 kB, then an ordinary row.
    exec(
        &mut db,
        "INSERT INTO maxsize.t VALUES (2, REPEAT('x', 150000))",
    )
    .await;
    exec(&mut db, "INSERT INTO maxsize.t VALUES (3, 'small')").await;
    let last = end(&mut db).await;
    wait("the row after the one no node takes", &|| {
        ids(&consumer.read()).contains(&3)
    });
    wait("the checkpoint at the end", &|| cp() == last);
    set_max(134_217_728);
    let got = ids(&consumer.read());
    assert!(
        !got.contains(&2),
        "the 150 kB row was skipped, not published: {got:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("AMQP carries them in one frame"), "{text}");
    assert!(text.contains("every node closed the connection"), "{text}");
    // The big key once; the 150 kB row from each module (both route it).
    let skipped = text
        .matches("Message the broker refused skipped by its module's policy")
        .count();
    assert_eq!(skipped, 3, "{text}");
    assert!(
        !text.contains("NO_ROUTE"),
        "every routing key here has a queue:\n{text}"
    );
    assert_eq!(agent.terminate(Duration::from_secs(30)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}
