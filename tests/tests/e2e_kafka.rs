//! `sluice run` end to end against a real Kafka-protocol broker (tansu on loopback),
//! read back with an rdkafka consumer: the mixed >100k-row workload, five SIGKILL
//! restarts, every row's final state equal to the database, partitions as the
//! canal-compat module decided them (delivered to exactly those partitions), per-key
//! order, and duplicates only from unacknowledged tails.

use sluice_tests::agent::Agent;
use sluice_tests::e2e::{PARTITIONS, module_toml, scenario, setup, source_toml};
use sluice_tests::kafka::{BROKERS, Reader, fresh_broker};
use sluice_tests::live::server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sink_survives_kill9() {
    let topics = ["e2e.t1", "e2e.t2", "e2e.default"];
    fresh_broker(&topics, PARTITIONS as u32);
    let srv = server();
    let mut admin = srv.admin().await;
    setup(&mut admin).await;
    let dir = std::env::temp_dir().join(format!("sluice-e2e-kafka-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "{}{}\n[sink]\nkind = \"kafka\"\nbrokers = \"{BROKERS}\"\n\n[checkpoint]\npath = \"{}\"\n",
            source_toml(&srv, 4_300_002),
            module_toml(std::path::Path::new(env!("GUEST_CANAL_COMPAT"))),
            dir.join("cp").display()
        ),
    )
    .expect("config");
    let log = dir.join("agent.log");
    let pass = srv.repl.1.clone();
    let reader = Reader::new(&topics, PARTITIONS);
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
    sluice_tests::kafka::broker();
    let srv = server();
    let topic = format!("nope-{}", std::process::id());
    let dir = std::env::temp_dir().join(format!("sluice-e2e-missing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[sink]\nkind = \"kafka\"\nbrokers = \"{BROKERS}\"\ndefault_topic = \"{topic}\"\n\n[checkpoint]\npath = \"{}\"\n",
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
