//! `sluice run` end to end against a real Kafka-protocol broker (tansu on loopback),
//! read back with an rdkafka consumer: the mixed >100k-row workload, five SIGKILL
//! restarts, every row's final state equal to the database, partitions as the
//! canal-compat module decided them (delivered to exactly those partitions), per-key
//! order, and duplicates only from unacknowledged tails.

use std::time::{Duration, Instant};

use sluice_tests::agent::{Agent, admin_get, ctl, free_port};
use sluice_tests::e2e::{
    PARTITIONS, db_state, module_toml, phase, replay, scenario, scenario_source_toml, setup,
    source_toml,
};
use sluice_tests::kafka::{BROKERS, Reader, fresh_broker};
use sluice_tests::live::server;

/// Writes a `sluice.toml` in `dir` publishing to the test broker with the scenario's
/// module; `sink_extra` adds `[sink]` keys, `admin_extra` `[admin]` keys. Returns the
/// file and the admin port.
fn kafka_config(
    dir: &std::path::Path,
    srv: &sluice_tests::live::Server,
    server_id: u32,
    sink_extra: &str,
    admin_extra: &str,
) -> (std::path::PathBuf, u16) {
    std::fs::create_dir_all(dir).expect("dir");
    let config = dir.join("sluice.toml");
    let port = free_port();
    std::fs::write(
        &config,
        format!(
            "{}{}\n[sink]\nkind = \"kafka\"\nbrokers = \"{BROKERS}\"\n{sink_extra}\n[checkpoint]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:{port}\"\n{admin_extra}\n",
            scenario_source_toml(srv, server_id),
            module_toml(std::path::Path::new(env!("GUEST_CANAL_COMPAT"))),
            dir.join("cp").display()
        ),
    )
    .expect("config");
    (config, port)
}

/// Sends `signal` (`-STOP`, `-CONT`) to the test broker.
fn broker_signal(signal: &str) {
    let pid = std::process::Command::new("bash")
        .arg(sluice_tests::repo_root().join("scripts/tansu.sh"))
        .arg("pid")
        .output()
        .expect("pid");
    let pid = String::from_utf8_lossy(&pid.stdout).trim().to_string();
    assert!(!pid.is_empty(), "broker pid");
    let ok = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .map(|x| x.success());
    assert_eq!(ok.ok(), Some(true), "kill {signal} {pid}");
}

/// Waits until what the broker holds replays to the database's current state.
async fn caught_up(
    reader: &Reader,
    admin: &mut mysql_async::Conn,
    within: Duration,
) -> sluice_tests::e2e::Replayed {
    let want = db_state(admin).await;
    let t = Instant::now();
    loop {
        let r = replay(&reader.read());
        if r.state == want {
            return r;
        }
        assert!(
            t.elapsed() < within,
            "not caught up: {} of {} rows",
            r.state.len(),
            want.len()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

const TOPICS: [&str; 3] = ["e2e.t1", "e2e.t2", "e2e.default"];

/// An empty broker with the scenario's topics and freshly created tables.
async fn fresh_scenario() -> (sluice_tests::live::Server, mysql_async::Conn) {
    fresh_broker(&TOPICS, PARTITIONS as u32);
    let srv = server();
    let mut admin = srv.admin().await;
    setup(&mut admin).await;
    (srv, admin)
}

/// The tests of this binary share one broker (and restart it): one at a time.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sink_survives_kill9() {
    let _guard = BROKER.lock().await;
    let (srv, _admin) = fresh_scenario().await;
    let dir = std::env::temp_dir().join(format!("sluice-e2e-kafka-{}", std::process::id()));
    let (config, _) = kafka_config(&dir, &srv, 4_300_002, "", "");
    let log = dir.join("agent.log");
    let pass = srv.repl.1.clone();
    let reader = Reader::new(&TOPICS, PARTITIONS);
    let (changes, dups) = scenario(
        &srv,
        || Agent::start(&config, &log, &[("SLUICE_E2E_PASSWORD", &pass)]),
        || reader.read(),
        5,
    )
    .await;
    eprintln!("{changes} row changes published, {dups} redelivered after crashes");
    if let Ok(l) = std::fs::read_to_string(&log) {
        for line in l
            .lines()
            .filter(|l| l.contains("Replicating") || l.contains("Stopped"))
        {
            eprintln!("{line}");
        }
    }
    assert!(changes >= 100_000, "{changes}");
    assert!(dups <= 5 * 60_000, "duplicates bounded: {dups}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A topic that does not exist is a clear error at `sluice check` and at startup, and
/// nothing is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_topic_is_a_clear_error() {
    let _guard = BROKER.lock().await;
    sluice_tests::kafka::broker();
    let srv = server();
    let topic = format!("nope-{}", std::process::id());
    let dir = sluice_tests::scratch_dir("e2e-missing");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[sink]\nkind = \"kafka\"\nbrokers = \"{BROKERS}\"\ndefault_topic = \"{topic}\"\n\n[checkpoint]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            source_toml(&srv, 4_300_003),
            dir.join("cp").display()
        ),
    )
    .expect("config");
    for cmd in ["check", "run"] {
        let out = std::process::Command::new(sluice_tests::agent::binary())
            .args([cmd, "-c"])
            .arg(&config)
            .env("SLUICE_E2E_PASSWORD", &srv.repl.1)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("topic `{topic}` does not exist")),
            "{cmd}: {err}"
        );
    }
    assert!(!dir.join("cp").exists(), "nothing was checkpointed");
    std::fs::remove_dir_all(&dir).ok();
}

/// The broker stalls (SIGSTOP) for five seconds while rows are written, then resumes
/// (SIGCONT): the agent waits with bounded in-flight messages and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_broker_loses_nothing() {
    let _guard = BROKER.lock().await;
    let (srv, mut admin) = fresh_scenario().await;
    let dir = std::env::temp_dir().join(format!("sluice-e2e-stall-{}", std::process::id()));
    let (config, port) = kafka_config(
        &dir,
        &srv,
        4_300_004,
        "max_in_flight = 2000\n",
        "stall_after_secs = 2\n",
    );
    let log = dir.join("agent.log");
    let mut agent = Agent::start(&config, &log, &[("SLUICE_E2E_PASSWORD", &srv.repl.1)]);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    broker_signal("-STOP");
    let writes = async {
        for p in 0..3 {
            phase(&mut admin, p).await;
        }
    };
    // Meanwhile /readyz reports the stalled checkpoint.
    let watcher = std::thread::spawn(move || {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            let (s, body) = admin_get(port, "/readyz");
            if s == 503 && body.contains("checkpoint has not advanced") {
                return Some(body);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    });
    let stall = async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        broker_signal("-CONT");
    };
    tokio::join!(writes, stall);
    let seen = watcher.join().expect("watcher");
    assert!(
        seen.is_some(),
        "/readyz never reported the stalled checkpoint"
    );
    let reader = Reader::new(&TOPICS, PARTITIONS);
    let r = caught_up(&reader, &mut admin, Duration::from_secs(180)).await;
    eprintln!(
        "{} row changes after a 5 s broker stall, {} duplicates",
        r.changes, r.duplicates
    );
    let t = Instant::now();
    while admin_get(port, "/readyz").0 != 200 {
        assert!(t.elapsed() < Duration::from_secs(30), "never ready again");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(agent.terminate(Duration::from_secs(60)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}

/// Topics created through the admin API (`sluice ctl create-topic`) exist on the broker
/// with the requested partitions; creating one twice is a 409 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_creates_topics() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let _guard = BROKER.lock().await;
    fresh_broker(&["ops.base"], 1);
    let srv = server();
    let dir = sluice_tests::scratch_dir("e2e-topics");
    let port = free_port();
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[sink]\nkind = \"kafka\"\nbrokers = \"{BROKERS}\"\ndefault_topic = \"ops.base\"\n\n[checkpoint]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:{port}\"\ntopic_partitions = 2\n",
            source_toml(&srv, 4_300_005),
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
    let (code, out) = ctl(port, &["create-topic", "ops.created", "--partitions", "3"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = ctl(port, &["create-topic", "ops.defaulted"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = ctl(port, &["create-topic", "ops.created", "--partitions", "3"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("409") && out.contains("`ops.created` already exists"),
        "{out}"
    );
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", BROKERS)
        .create()
        .expect("client");
    for (topic, want) in [("ops.created", 3), ("ops.defaulted", 2)] {
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let parts = md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len());
        assert_eq!(parts, Some(want), "{topic}");
    }
    assert_eq!(agent.terminate(Duration::from_secs(30)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}

/// A module routes rows to a topic that does not exist (its allowed topics are a
/// prefix, so startup cannot know the name): the messages are held, in order, the
/// checkpoint stays before them, `/readyz` names the topic, SIGTERM still stops the agent
/// cleanly; once the topic is created through the admin API everything is published,
/// nothing lost, nothing duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_holds_messages_until_it_is_created() {
    let _guard = BROKER.lock().await;
    fresh_broker(&["e2e.t1", "e2e.default"], PARTITIONS as u32);
    let srv = server();
    let mut admin = srv.admin().await;
    setup(&mut admin).await;
    let dir = sluice_tests::scratch_dir("e2e-late-topic");
    let (config, port) = kafka_config(&dir, &srv, 4_300_006, "", "");
    let log = dir.join("agent.log");
    let mut agent = Agent::start(&config, &log, &[("SLUICE_E2E_PASSWORD", &srv.repl.1)]);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    for sql in [
        "INSERT INTO e2e.t1 (id, v, d) VALUES (1, 'before', 1.00)",
        "INSERT INTO e2e.t2 (k, n) VALUES ('held', 1)",
        "INSERT INTO e2e.t1 (id, v, d) VALUES (2, 'after', 2.00)",
    ] {
        sluice_tests::live::exec(&mut admin, sql).await;
    }
    agent.wait_log(
        "Holding messages until their topic can be published to.",
        1,
        Duration::from_secs(30),
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let (code, body) = loop {
        let (code, body) = admin_get(port, "/readyz");
        if body.contains("e2e.t2") || Instant::now() > deadline {
            break (code, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("topic `e2e.t2` does not exist") && body.contains("module `canal`"),
        "{body}"
    );
    let reader = Reader::new(&["e2e.t1"], PARTITIONS);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut before = reader.read();
    while before.is_empty() && Instant::now() < deadline {
        before = reader.read();
    }
    // Anything published after the hold would be here too by now.
    std::thread::sleep(Duration::from_secs(1));
    let before = reader.read();
    let ids: Vec<&str> = before
        .iter()
        .filter_map(|m| m.value["data"][0]["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        ["1"],
        "only what precedes the held message is published: {before:?}"
    );
    let checkpoint = || {
        let (_, body) = admin_get(port, "/v1/checkpoint");
        serde_json::from_str::<serde_json::Value>(&body).map(|v| v["checkpoint"].clone())
    };
    let cp = checkpoint().expect("checkpoint JSON");

    // A stop while messages are held is a clean one: the checkpoint is before them, and
    // the next start reads them again and holds them again.
    let t = Instant::now();
    assert_eq!(agent.terminate(Duration::from_secs(30)), Some(0));
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "stopped in {:?}",
        t.elapsed()
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("Stopping with messages held."), "{text}");
    let mut agent = Agent::start(&config, &log, &[("SLUICE_E2E_PASSWORD", &srv.repl.1)]);
    agent.wait_log(
        "Holding messages until their topic can be published to.",
        2,
        Duration::from_secs(60),
    );
    assert_eq!(
        checkpoint().expect("checkpoint JSON"),
        cp,
        "resumed where it stopped"
    );

    let partitions = PARTITIONS.to_string();
    let (code, out) = ctl(
        port,
        &["create-topic", "e2e.t2", "--partitions", &partitions],
    );
    assert_eq!(code, Some(0), "{out}");
    agent.wait_log(
        "Topic found; publishing held messages.",
        1,
        Duration::from_secs(30),
    );

    let reader = Reader::new(&["e2e.t1", "e2e.t2"], PARTITIONS);
    let deadline = Instant::now() + Duration::from_secs(30);
    let all = loop {
        let all = reader.read();
        if all.len() >= 3 || Instant::now() > deadline {
            break all;
        }
    };
    let got: Vec<(String, String)> = all
        .iter()
        .map(|m| {
            (
                m.topic.clone(),
                (m.value["data"][0]["id"].as_str())
                    .or(m.value["data"][0]["k"].as_str())
                    .unwrap_or("?")
                    .to_string(),
            )
        })
        .collect();
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            ("e2e.t1".to_string(), "1".to_string()),
            ("e2e.t1".to_string(), "2".to_string()),
            ("e2e.t2".to_string(), "held".to_string()),
        ],
        "every row once"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while admin_get(port, "/readyz").0 != 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(admin_get(port, "/readyz").0, 200, "ready again");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut cp_after = checkpoint().expect("checkpoint JSON");
    while cp_after == cp && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        cp_after = checkpoint().expect("checkpoint JSON");
    }
    assert_ne!(
        cp, cp_after,
        "the checkpoint moved past the held transaction"
    );
    assert_eq!(agent.terminate(Duration::from_secs(30)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}

/// SIGTERM while the broker does not answer starts a drain that cannot finish; a second
/// SIGTERM exits 130 at once, and the checkpoint on disk is still a safe one: restarted
/// after the broker is back, the agent publishes every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_at_once_and_loses_nothing() {
    let _guard = BROKER.lock().await;
    let (srv, mut admin) = fresh_scenario().await;
    let dir = sluice_tests::scratch_dir("e2e-second-signal");
    let (config, _) = kafka_config(&dir, &srv, 4_300_007, "", "");
    let log = dir.join("agent.log");
    let env = [("SLUICE_E2E_PASSWORD", srv.repl.1.as_str())];
    let mut agent = Agent::start(&config, &log, &env);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    sluice_tests::live::exec(
        &mut admin,
        "INSERT INTO e2e.t1 SELECT seq, CONCAT('v', seq), seq / 100 FROM e2e.seq_1_to_2000",
    )
    .await;
    // Published and acknowledged, then a stalled broker with rows in flight.
    let reader = Reader::new(&TOPICS, PARTITIONS);
    let t = Instant::now();
    while replay(&reader.read()).state.len() < 2000 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "first rows never arrived"
        );
    }
    broker_signal("-STOP");
    sluice_tests::live::exec(
        &mut admin,
        "INSERT INTO e2e.t1 SELECT seq, CONCAT('v', seq), seq / 100 FROM e2e.seq_2001_to_4000",
    )
    .await;
    std::thread::sleep(Duration::from_secs(1));
    let first = std::process::Command::new("kill")
        .args(["-TERM", &agent.pid().to_string()])
        .status()
        .map(|s| s.success());
    assert_eq!(first.ok(), Some(true));
    agent.wait_log("Shutting down: draining", 1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    // The second SIGTERM.
    let code = agent.terminate(Duration::from_secs(10));
    let stopped_in = t.elapsed();
    broker_signal("-CONT");
    assert_eq!(code, Some(130), "a second signal exits 130");
    assert!(
        stopped_in < Duration::from_secs(3),
        "stopped in {stopped_in:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("Second signal: stopping without draining"),
        "{text}"
    );

    // The checkpoint left behind is readable and resumes without loss.
    let cp = std::fs::read_to_string(dir.join("cp")).expect("checkpoint file");
    serde_json::from_str::<serde_json::Value>(&cp).expect("a whole checkpoint");
    let agent = Agent::start(&config, &log, &env);
    caught_up(&reader, &mut admin, Duration::from_secs(120)).await;
    assert_eq!(agent.terminate(Duration::from_secs(60)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}

/// The topic bootstrap from an empty broker with no agent running: `sluice check`
/// names the missing topic and the offline command that creates it; `sluice topics
/// create` creates every topic the config and the module declare (with the partitions
/// asked), a second run leaves them as they are, and `sluice check` then passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_offline_from_the_config() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let _guard = BROKER.lock().await;
    fresh_broker(&[], 1);
    let srv = server();
    let dir = sluice_tests::scratch_dir("e2e-topics-offline");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[[modules]]\nname = \"canal\"\nfile = \"{}\"\n[modules.config]\n\"canal.mq.topic\" = \"boot.orders\"\n\n[sink]\nkind = \"kafka\"\nbrokers = \"{BROKERS}\"\ndefault_topic = \"boot.default\"\n\n[checkpoint]\npath = \"{}\"\n",
            source_toml(&srv, 4_300_009),
            env!("GUEST_CANAL_COMPAT"),
            dir.join("cp").display()
        ),
    )
    .expect("config");
    let sluice = |args: &[&str]| {
        let out = std::process::Command::new(sluice_tests::agent::binary())
            .args(args)
            .arg("-c")
            .arg(&config)
            .env("SLUICE_E2E_PASSWORD", &srv.repl.1)
            .output()
            .expect("sluice runs");
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (code, out) = sluice(&["check"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("sluice topics create -c CONFIG"), "{out}");
    let (code, out) = sluice(&["topics", "create", "--partitions", "3"]);
    assert_eq!(code, Some(0), "{out}");
    // The module's topic; `default_topic` serves only configs without modules.
    assert!(
        out.contains("topic boot.orders: created (3 partitions"),
        "{out}"
    );
    assert!(!out.contains("boot.default"), "{out}");
    let (code, out) = sluice(&["topics", "create"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("topic boot.orders: exists"), "{out}");
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", BROKERS)
        .create()
        .expect("client");
    {
        let topic = "boot.orders";
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let parts = md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len());
        assert_eq!(parts, Some(3), "{topic}");
    }
    let (code, out) = sluice(&["check"]);
    assert_eq!(code, Some(0), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}
