//! Broker faults injected with librdkafka's mock cluster (in addition to the real broker
//! tests): produce requests failing with retriable errors, and the broker down for a
//! while. Every message is acknowledged exactly once in the end, the checkpoint only
//! covers acknowledged transactions, and a message timeout is reported as a delivery
//! failure (the pipeline then restarts from its checkpoint) instead of being dropped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use sluice::event::Checkpoint;
use sluice::format::Format;
use sluice::sink::config::{MessageUnit, Oversize, SinkConfig};
use sluice::sink::kafka::{KafkaConfig, KafkaSink};
use sluice::sink::{OutMessage, Publisher, RefusalReason, SinkError};

/// The tests here that run `sluice run` against the live server check exact binlog
/// positions: one at a time, so no other one's transactions land in between.
static LIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn cfg(brokers: &str) -> SinkConfig {
    SinkConfig {
        publisher: std::sync::Arc::new(KafkaConfig {
            brokers: brokers.to_string(),
            properties: BTreeMap::new(),
        }),
        format: Format::Canal,
        unit: MessageUnit::Event,
        default_topic: "t".into(),
        max_message_bytes: 1_000_000,
        oversize: Oversize::Halt,
        max_in_flight: 500,
    }
}

fn cp(n: u64) -> Checkpoint {
    Checkpoint {
        file: Arc::from("binlog.000001"),
        position: n,
        gtid: None,
    }
}

fn msg(txn: u64, i: u64) -> OutMessage {
    OutMessage {
        topic: Arc::from("t"),
        partition: None,
        key: Some(format!("k{i}").into_bytes()),
        headers: vec![(
            "sluice.position".into(),
            format!("binlog.000001:{txn}:{i}").into_bytes().into(),
        )],
        payload: format!("{{\"n\":{i}}}").into_bytes(),
        txn,
    }
}

fn mock() -> MockCluster<'static, DefaultProducerContext> {
    let m = MockCluster::new(1).expect("mock cluster");
    m.create_topic("t", 4, 1).expect("topic");
    m
}

fn count_messages(brokers: &str) -> BTreeMap<String, usize> {
    let c: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "faults")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..4 {
        tpl.add_partition_offset("t", p, rdkafka::Offset::Beginning)
            .expect("partition");
    }
    c.assign(&tpl).expect("assign");
    let mut seen = BTreeMap::new();
    let mut idle = Instant::now();
    while idle.elapsed() < Duration::from_secs(2) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            idle = Instant::now();
            let p = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            *seen.entry(p).or_insert(0) += 1;
        }
    }
    seen
}

#[test]
fn retriable_produce_errors_lose_and_duplicate_nothing() {
    let m = mock();
    // The next produce requests fail with retriable errors; librdkafka retries them and
    // the idempotent producer keeps order and avoids duplicates.
    m.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
        ],
    );
    let brokers = m.bootstrap_servers();
    let mut sink = KafkaSink::new(&brokers, &BTreeMap::new(), &cfg(&brokers)).expect("sink");
    let mut i = 0;
    for txn in 1..=50u64 {
        for _ in 0..40 {
            sink.send(msg(txn, i)).expect("send");
            i += 1;
        }
        sink.commit(txn, cp(txn * 100), Instant::now())
            .expect("commit");
    }
    sink.drain(Duration::from_secs(60))
        .expect("all acknowledged");
    assert_eq!(
        sink.safe_checkpoint()
            .expect("no failure")
            .map(|c| c.position),
        Some(5000)
    );
    let seen = count_messages(&brokers);
    assert_eq!(seen.len(), 2000, "every message delivered");
    assert!(seen.values().all(|&n| n == 1), "no duplicates");
}

#[test]
fn broker_down_then_up_delivers_everything() {
    let m = mock();
    let brokers = m.bootstrap_servers();
    let mut sink = KafkaSink::new(&brokers, &BTreeMap::new(), &cfg(&brokers)).expect("sink");
    for i in 0..100 {
        sink.send(msg(1, i)).expect("send");
    }
    sink.commit(1, cp(100), Instant::now()).expect("commit");
    sink.drain(Duration::from_secs(30))
        .expect("first batch acknowledged");
    m.broker_down(1).expect("down");
    for i in 100..300 {
        sink.send(msg(2, i))
            .expect("queued while the broker is down");
    }
    sink.commit(2, cp(200), Instant::now()).expect("commit");
    std::thread::sleep(Duration::from_secs(2));
    // Nothing sent while down counts as acknowledged: the checkpoint stays put.
    assert_eq!(
        sink.safe_checkpoint()
            .expect("no failure yet")
            .map(|c| c.position),
        Some(100)
    );
    m.broker_up(1).expect("up");
    sink.drain(Duration::from_secs(60))
        .expect("delivered after the broker returns");
    assert_eq!(
        sink.safe_checkpoint().expect("ok").map(|c| c.position),
        Some(200)
    );
    let seen = count_messages(&brokers);
    assert_eq!(seen.len(), 300);
    assert!(seen.values().all(|&n| n == 1));
}

#[test]
fn message_timeout_is_a_delivery_failure_not_a_loss() {
    let m = mock();
    let brokers = m.bootstrap_servers();
    let mut props = BTreeMap::new();
    props.insert("message.timeout.ms".to_string(), "1500".to_string());
    let mut sink = KafkaSink::new(&brokers, &props, &cfg(&brokers)).expect("sink");
    // The topic is known (looked up on first use) before the broker goes.
    sink.send(msg(0, 0)).expect("send");
    sink.commit(0, cp(50), Instant::now()).expect("commit");
    sink.drain(Duration::from_secs(20)).expect("delivered");
    m.broker_down(1).expect("down");
    for i in 0..10 {
        sink.send(msg(1, i)).expect("send");
    }
    sink.commit(1, cp(100), Instant::now()).expect("commit");
    let err = sink
        .drain(Duration::from_secs(20))
        .expect_err("must fail, not drop");
    assert!(matches!(err, SinkError::Delivery { .. }), "{err}");
    assert_eq!(
        sink.safe_checkpoint().ok().flatten(),
        Some(cp(50)),
        "nothing after the acknowledged transaction checkpointed"
    );
}

/// A message the broker refuses as too large (its limit below `max_message_bytes`) is
/// handed back at once, naming the topic and the binlog position: not retried for ever
/// (Canal #3533), not counted as delivered, and it holds its transaction's checkpoint
/// back until the pipeline has applied its policy and settled it.
#[test]
fn a_message_the_broker_finds_too_large_is_handed_back_for_its_policy() {
    let m = mock();
    m.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let brokers = m.bootstrap_servers();
    let mut sink = KafkaSink::new(&brokers, &BTreeMap::new(), &cfg(&brokers)).expect("sink");
    sink.send(msg(1, 0)).expect("queued");
    sink.commit(1, cp(100), Instant::now()).expect("commit");
    // The drain ends once the broker's answer is in: nothing waits on the refused
    // message but its policy.
    let t = Instant::now();
    sink.drain(Duration::from_secs(30)).expect("drained");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    sink.check().expect("no failure");
    let refused = sink.take_refused();
    assert_eq!(refused.len(), 1);
    let r = &refused[0];
    assert_eq!(r.reason, RefusalReason::TooLarge);
    assert_eq!((r.txn, r.topic.as_str()), (1, "t"));
    assert_eq!(r.position, "binlog.000001:1:0");
    assert!(
        r.detail.to_lowercase().contains("too large"),
        "{}",
        r.detail
    );
    // The checkpoint stays before it until its policy was applied.
    assert_eq!(sink.safe_checkpoint().ok().flatten(), None);
    sink.settle(r);
    assert_eq!(
        sink.safe_checkpoint().ok().flatten().map(|c| c.position),
        Some(100)
    );
}

/// A module that names a topic the cluster lacks must not create it: librdkafka's
/// producer asks the broker to auto-create topics unless told otherwise, and the mock
/// cluster, like a Kafka broker with its default settings, obliges. Its message, and
/// everything after it, is held and reported until the topic exists.
#[test]
fn a_missing_topic_is_not_created_by_publishing() {
    let m = mock();
    let brokers = m.bootstrap_servers();
    let mut sink = KafkaSink::new(&brokers, &BTreeMap::new(), &cfg(&brokers)).expect("sink");
    let mut stray = msg(1, 0);
    stray.topic = Arc::from("typo.orders");
    sink.send(stray).expect("held");
    sink.send(msg(1, 1)).expect("held behind it");
    sink.commit(1, cp(100), Instant::now()).expect("commit");
    // The hold is reported once the lookup answers.
    let t = Instant::now();
    let why = loop {
        sink.release_held().expect("holding is not a failure");
        if let Some(why) = sink.waiting_for() {
            break why;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the hold is never reported"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        why.to_string().contains("`typo.orders` does not exist")
            && why.to_string().contains("binlog.000001:1:0"),
        "{why}"
    );
    assert!(!sink.has_room(), "nothing is taken while messages are held");
    assert!(sink.holding());
    std::thread::sleep(Duration::from_secs(1));
    let err = sink
        .check_topics(&["typo.orders".to_string()])
        .expect_err("the topic must still be missing");
    assert!(
        err.to_string().contains("`typo.orders` does not exist"),
        "{err}"
    );
    assert_eq!(
        count_messages(&brokers).len(),
        0,
        "nothing behind the hold was sent"
    );
    assert_eq!(sink.safe_checkpoint().ok().flatten(), None);
    // Created by an operator: the held messages go, in order, and the checkpoint moves.
    m.create_topic("typo.orders", 1, 1).expect("topic");
    let t = Instant::now();
    while !sink.has_room() {
        sink.release_held().expect("released");
        assert!(t.elapsed() < Duration::from_secs(10), "never released");
        std::thread::sleep(Duration::from_millis(10));
    }
    sink.drain(Duration::from_secs(20))
        .expect("delivered once the topic exists");
    assert_eq!(sink.safe_checkpoint().ok().flatten(), Some(cp(100)));
    assert!(sink.waiting_for().is_none() && !sink.holding());
    assert_eq!(
        count_messages(&brokers).len(),
        1,
        "the message behind it, once"
    );
}

/// A fatal idempotent-producer error (out-of-order sequence, injected by the mock
/// cluster) under a live `sluice run`: the checkpoint stays at what was acknowledged,
/// the pipeline rebuilds the producer and resumes from the checkpoint, and every row
/// arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fatal_producer_error_rebuilds_and_resumes() {
    let _live = LIVE.lock().await;
    use mysql_async::prelude::Queryable;
    use sluice_tests::agent::Agent;
    use sluice_tests::live::{exec, server};
    let m = MockCluster::new(1).expect("mock cluster");
    m.create_topic("fatal.all", 4, 1).expect("topic");
    let brokers = m.bootstrap_servers();
    let srv = server();
    let mut db = srv.admin().await;
    exec(&mut db, "DROP DATABASE IF EXISTS fatal").await;
    exec(&mut db, "CREATE DATABASE fatal").await;
    exec(
        &mut db,
        "CREATE TABLE fatal.t (id BIGINT PRIMARY KEY, v VARCHAR(20))",
    )
    .await;
    let source = format!(
        "{}include = ['fatal\\..*']\n",
        sluice_tests::e2e::source_toml(&srv, 4_500_001)
    );
    let dir = sluice_tests::scratch_dir("fatal");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[sink]\nkind = \"kafka\"\nbrokers = \"{brokers}\"\ndefault_topic = \"fatal.all\"\n\n[checkpoint]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            source,
            dir.join("cp").display()
        ),
    )
    .expect("config");
    let log = dir.join("agent.log");
    let mut agent = Agent::start(&config, &log, &[("SLUICE_E2E_PASSWORD", &srv.repl.1)]);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    let insert = async |db: &mut mysql_async::Conn, from: u64, to: u64| {
        for t in (from..to).step_by(10) {
            let rows: Vec<String> = (t..t + 10).map(|i| format!("({i}, 'v{i}')")).collect();
            db.query_drop(format!("INSERT INTO fatal.t VALUES {}", rows.join(",")))
                .await
                .expect("insert");
        }
    };
    insert(&mut db, 0, 500).await;
    let ids = |brokers: &str| -> BTreeMap<u64, usize> {
        let c: BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "fatal")
            .create()
            .expect("consumer");
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..4 {
            tpl.add_partition_offset("fatal.all", p, rdkafka::Offset::Beginning)
                .expect("partition");
        }
        c.assign(&tpl).expect("assign");
        let mut seen = BTreeMap::new();
        let mut idle = Instant::now();
        while idle.elapsed() < Duration::from_secs(2) {
            if let Some(Ok(msg)) = c.poll(Duration::from_millis(100)) {
                idle = Instant::now();
                let v: serde_json::Value =
                    serde_json::from_slice(msg.payload().unwrap_or_default()).unwrap_or_default();
                for row in v["data"].as_array().cloned().unwrap_or_default() {
                    if let Some(id) = row["id"].as_str().and_then(|s| s.parse().ok()) {
                        *seen.entry(id).or_insert(0) += 1;
                    }
                }
            }
        }
        seen
    };
    let t = Instant::now();
    while ids(&brokers).len() < 500 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "first rows never arrived"
        );
    }
    // The next produce requests fail with a sequence error: fatal for the producer.
    m.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER; 3],
    );
    insert(&mut db, 500, 2000).await;
    agent.wait_log(
        "Sink failed; restarting from the last checkpoint.",
        1,
        Duration::from_secs(60),
    );
    let t = Instant::now();
    let seen = loop {
        let seen = ids(&brokers);
        if seen.len() == 2000 {
            break seen;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "{} of 2000 rows after the producer was rebuilt",
            seen.len()
        );
    };
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (0..2000).collect::<Vec<_>>()
    );
    let dups: usize = seen.values().map(|n| n - 1).sum();
    eprintln!("2000 rows after a fatal producer error; {dups} sent twice");
    assert_eq!(agent.terminate(Duration::from_secs(30)), Some(0));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("OutOfOrderSequenceNumber"), "{text}");
    let cp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cp")).expect("checkpoint"))
            .expect("json");
    let end: Vec<mysql_async::Row> = db.query("SHOW MASTER STATUS").await.expect("status");
    let end_pos: Option<u64> = end.first().and_then(|r| r.get(1));
    assert_eq!(cp["position"].as_u64(), end_pos, "checkpoint at the end");
    std::fs::remove_dir_all(&dir).ok();
}

/// The in-flight window full of messages that cannot be delivered (their partitions'
/// leader is down) stops reading, not the pipeline: what was acknowledged before them
/// is still checkpointed while they wait, and once the broker is back everything is
/// delivered and checkpointed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_window_still_checkpoints_what_was_acknowledged() {
    let _live = LIVE.lock().await;
    use mysql_async::prelude::Queryable;
    use sluice_tests::agent::Agent;
    use sluice_tests::live::{exec, server};
    const PARTS: i32 = 2;
    // Two brokers: `window.fast` is led by broker 1, `window.stuck` by broker 2, which
    // is down.
    let m = MockCluster::new(2).expect("mock cluster");
    for (topic, leader) in [("window.fast", 1), ("window.stuck", 2)] {
        m.create_topic(topic, PARTS, 1).expect("topic");
        for p in 0..PARTS {
            m.partition_leader(topic, p, Some(leader)).expect("leader");
        }
    }
    m.broker_down(2).expect("down");
    let brokers = m.bootstrap_servers();
    let srv = server();
    let mut db = srv.admin().await;
    exec(&mut db, "DROP DATABASE IF EXISTS window").await;
    exec(&mut db, "CREATE DATABASE window").await;
    for t in ["fast", "stuck"] {
        exec(
            &mut db,
            &format!("CREATE TABLE window.{t} (id BIGINT PRIMARY KEY, v VARCHAR(20))"),
        )
        .await;
    }
    let status = async |db: &mut mysql_async::Conn| -> (String, u64) {
        let rows: Vec<mysql_async::Row> = db.query("SHOW MASTER STATUS").await.expect("status");
        let row = rows.first().expect("binary logging is on");
        (row.get(0).expect("file"), row.get(1).expect("position"))
    };
    // The backlog the agent starts on: 30 transactions it can publish, then 60 it
    // cannot, three times its window of 20 messages.
    let (file, start) = status(&mut db).await;
    for i in 0..30 {
        exec(
            &mut db,
            &format!("INSERT INTO window.fast VALUES ({i}, 'f{i}')"),
        )
        .await;
    }
    let (_, fast_end) = status(&mut db).await;
    for i in 0..60 {
        exec(
            &mut db,
            &format!("INSERT INTO window.stuck VALUES ({i}, 's{i}')"),
        )
        .await;
    }
    let (_, end) = status(&mut db).await;

    let dir = sluice_tests::scratch_dir("window");
    let config = dir.join("sluice.toml");
    let admin = sluice_tests::agent::free_port();
    let source = format!(
        "{}include = ['window\\..*']\n",
        sluice_tests::e2e::source_toml(&srv, 4_500_002)
    )
    .replace("start = \"latest\"", &format!("start = \"{file}:{start}\""));
    std::fs::write(
        &config,
        format!(
            r#"{source}
[[modules]]
name = "canal"
file = "{}"
[modules.config]
"canal.mq.dynamicTopic" = 'window\..*'
"canal.mq.partitionsNum" = "{PARTS}"
"canal.mq.partitionHash" = '.*\..*:$pk$'

[sink]
kind = "kafka"
brokers = "{brokers}"
max_in_flight = 20

[checkpoint]
path = "{}"

[admin]
listen = "127.0.0.1:{admin}"
"#,
            env!("GUEST_CANAL_COMPAT"),
            dir.join("cp").display()
        ),
    )
    .expect("config");
    let position = || -> Option<u64> {
        let text = std::fs::read_to_string(dir.join("cp")).ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()?["position"].as_u64()
    };
    let wait_for = |want: u64, what: &str| {
        let t = Instant::now();
        while position() != Some(want) {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{what}: checkpoint at {:?}, expected {want}",
                position()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let log = dir.join("agent.log");
    let mut agent = Agent::start(&config, &log, &[("SLUICE_E2E_PASSWORD", &srv.repl.1)]);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    wait_for(fast_end, "acknowledged transactions before a full window");
    // It stays there: nothing of `window.stuck` is acknowledged.
    let full = "sluice_pipeline_window_full_seconds_total";
    let before = sluice_tests::agent::metric(admin, full).expect("window metric exported");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(position(), Some(fast_end));
    // ...and the operator can see why: the time goes to the full window.
    let after = sluice_tests::agent::metric(admin, full).expect("window metric exported");
    assert!(
        after - before >= 0.3,
        "{full} rose by {} s in 0.5 s of a full window",
        after - before
    );
    m.broker_up(2).expect("up");
    wait_for(end, "after the broker came back");
    // Caught up: the pipeline now waits on the source, and says so.
    let idle = "sluice_pipeline_source_wait_seconds_total";
    let before = sluice_tests::agent::metric(admin, idle).expect("source metric exported");
    std::thread::sleep(Duration::from_millis(500));
    let after = sluice_tests::agent::metric(admin, idle).expect("source metric exported");
    assert!(
        after - before >= 0.3,
        "{idle} rose by {} s in 0.5 s with nothing to read",
        after - before
    );
    agent.kill9();
    std::fs::remove_dir_all(&dir).ok();
}

/// A message the broker refuses as too large (its topic's limit below
/// `sink.max_message_bytes`; injected by the mock cluster) goes through the deciding
/// module's policy under a live `sluice run`: with `dead-letter`, a reference lands in
/// the dead-letter topic, the agent keeps publishing, the checkpoint moves past it, and
/// a restart from that checkpoint does not meet it again (no crash loop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_broker_refuses_as_too_large_takes_the_module_policy() {
    let _live = LIVE.lock().await;
    use mysql_async::prelude::Queryable;
    use sluice_tests::agent::Agent;
    use sluice_tests::live::{exec, server};
    let m = MockCluster::new(1).expect("mock cluster");
    for t in ["refuse.t", "refuse.dlq"] {
        m.create_topic(t, 1, 1).expect("topic");
    }
    let brokers = m.bootstrap_servers();
    let srv = server();
    let mut db = srv.admin().await;
    exec(&mut db, "DROP DATABASE IF EXISTS refuse").await;
    exec(&mut db, "CREATE DATABASE refuse").await;
    exec(
        &mut db,
        "CREATE TABLE refuse.t (id BIGINT PRIMARY KEY, v VARCHAR(20))",
    )
    .await;
    let source = format!(
        "{}include = ['refuse\\..*']\n",
        sluice_tests::e2e::source_toml(&srv, 4_500_003)
    );
    let dir = sluice_tests::scratch_dir("refuse");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"{}
[[modules]]
name = "canal"
file = "{}"
topics = ["refuse.*"]
on_error = "dead-letter"
dead_letter_topic = "refuse.dlq"
[modules.config]
"canal.mq.topic" = "refuse.t"

[sink]
kind = "kafka"
brokers = "{brokers}"

[checkpoint]
path = "{}"

[admin]
listen = "127.0.0.1:0"
"#,
            source,
            env!("GUEST_CANAL_COMPAT"),
            dir.join("cp").display()
        ),
    )
    .expect("config");
    // Every message of a topic, as (sluice.position, payload).
    let read = |topic: &str| -> Vec<(String, serde_json::Value)> {
        let c: BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "refuse")
            .create()
            .expect("consumer");
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
            .expect("partition");
        c.assign(&tpl).expect("assign");
        let mut out = Vec::new();
        let mut idle = Instant::now();
        while idle.elapsed() < Duration::from_millis(1500) {
            if let Some(Ok(msg)) = c.poll(Duration::from_millis(100)) {
                use rdkafka::message::Headers;
                idle = Instant::now();
                let pos = msg
                    .headers()
                    .and_then(|h| {
                        h.iter()
                            .find(|x| x.key == "sluice.position")
                            .and_then(|x| x.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    })
                    .unwrap_or_default();
                let v =
                    serde_json::from_slice(msg.payload().unwrap_or_default()).unwrap_or_default();
                out.push((pos, v));
            }
        }
        out
    };
    let ids = |msgs: &[(String, serde_json::Value)]| -> Vec<String> {
        msgs.iter()
            .flat_map(|(_, v)| v["data"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect()
    };
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let t = Instant::now();
        while !done() {
            assert!(t.elapsed() < Duration::from_secs(60), "{what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let log = dir.join("agent.log");
    let env = [("SLUICE_E2E_PASSWORD", srv.repl.1.as_str())];
    let mut agent = Agent::start(&config, &log, &env);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    exec(&mut db, "INSERT INTO refuse.t VALUES (1, 'a')").await;
    wait("row 1 arrives", &|| ids(&read("refuse.t")) == ["1"]);
    // The next produce request is refused as too large: row 2's.
    m.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    exec(&mut db, "INSERT INTO refuse.t VALUES (2, 'b')").await;
    wait("a reference to row 2 in the dead-letter topic", &|| {
        !read("refuse.dlq").is_empty()
    });
    exec(&mut db, "INSERT INTO refuse.t VALUES (3, 'c')").await;
    wait("row 3 arrives after the refused one", &|| {
        ids(&read("refuse.t")).contains(&"3".to_string())
    });
    let dlq = read("refuse.dlq");
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let (pos, reference) = &dlq[0];
    assert_eq!(reference["oversize"], true, "{reference}");
    assert_eq!(reference["topic"], "refuse.t");
    assert_eq!(reference["table"], "t");
    assert_eq!(reference["module"], "canal");
    assert_eq!(reference["position"].as_str(), Some(pos.as_str()));
    assert!(
        reference["refused_by_broker"]
            .as_str()
            .is_some_and(|d| d.contains("too large") || d.contains("TooLarge")),
        "{reference}"
    );
    assert_eq!(
        ids(&read("refuse.t")),
        ["1", "3"],
        "row 2 was dead-lettered, not published"
    );
    // The checkpoint passes the refused transaction once the reference is acknowledged.
    let end: Vec<mysql_async::Row> = db.query("SHOW MASTER STATUS").await.expect("status");
    let end_pos: Option<u64> = end.first().and_then(|r| r.get(1));
    let cp = || -> Option<u64> {
        let t = std::fs::read_to_string(dir.join("cp")).ok()?;
        serde_json::from_str::<serde_json::Value>(&t).ok()?["position"].as_u64()
    };
    wait("the checkpoint reaches the end", &|| cp() == end_pos);
    assert_eq!(agent.terminate(Duration::from_secs(30)), Some(0));
    // A restart from that checkpoint publishes nothing again and keeps running.
    let mut again = Agent::start(&config, &log, &env);
    again.wait_log("Replicating.", 2, Duration::from_secs(60));
    exec(&mut db, "INSERT INTO refuse.t VALUES (4, 'd')").await;
    wait("row 4 after the restart", &|| {
        ids(&read("refuse.t")).contains(&"4".to_string())
    });
    assert_eq!(ids(&read("refuse.t")), ["1", "3", "4"]);
    assert_eq!(read("refuse.dlq").len(), 1);
    assert_eq!(again.terminate(Duration::from_secs(30)), Some(0));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("Message the broker refused sent to the dead-letter topic"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
