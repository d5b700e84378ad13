//! The path from a Canal instance to a running agent, as a Canal user takes it with
//! only the Sluice binary: `sluice canal import` on Canal's `instance.properties` and
//! `canal.properties` (Kafka mode, dynamic topics, partition hash, table filters),
//! `sluice topics create` on an empty broker, `sluice check`, `sluice run` — rows land
//! in the topics and partitions Canal's rules give, the filter keeps other databases
//! out, and what the converter could not carry is listed by name. Every command runs
//! with no Rust toolchain reachable: canal-compat is the one built into the binary.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use sluice_tests::agent::Agent;
use sluice_tests::kafka::{BROKERS, Reader, fresh_broker};
use sluice_tests::live::{exec, server};

/// Runs `sluice ARGS` as on a host with only the binary: no cargo, rustc or wasm target
/// reachable (an empty PATH and empty toolchain homes).
fn sluice(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let bare = std::env::temp_dir().join(format!("sluice-bare-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&bare);
    let mut cmd = Command::new(sluice_tests::agent::binary());
    cmd.args(args)
        .env("PATH", &bare)
        .env("CARGO_HOME", &bare)
        .env("RUSTUP_HOME", &bare);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("sluice runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canal_kafka_instance_runs_as_canal_routed_it() {
    fresh_broker(&[], 1);
    let srv = server();
    let mut db = srv.admin().await;
    for d in ["cmig", "cmig_other"] {
        exec(&mut db, &format!("DROP DATABASE IF EXISTS {d}")).await;
        exec(&mut db, &format!("CREATE DATABASE {d}")).await;
    }
    for t in ["cmig.orders", "cmig.users", "cmig.misc", "cmig_other.t"] {
        exec(
            &mut db,
            &format!("CREATE TABLE {t} (id BIGINT PRIMARY KEY, v VARCHAR(20))"),
        )
        .await;
    }
    let dir = sluice_tests::scratch_dir("canal-migration");
    let conf = dir.join("conf");
    std::fs::create_dir_all(conf.join("cmig")).expect("conf dir");
    // A Canal server's configuration as users write it (Java properties escapes).
    std::fs::write(
        conf.join("canal.properties"),
        format!(
            "# canal server\ncanal.port = 11111\ncanal.serverMode = kafka\ncanal.destinations = cmig\n\
             canal.instance.tsdb.enable = true\ncanal.instance.filter.query.ddl = true\n\
             canal.mq.flatMessage = true\ncanal.mq.canalBatchSize = 50\n\
             kafka.bootstrap.servers = {BROKERS}\nkafka.acks = all\nkafka.compression.type = none\n\
             kafka.linger.ms = 1\nrocketmq.namesrv.addr = 127.0.0.1:9876\n"
        ),
    )
    .expect("canal.properties");
    std::fs::write(
        conf.join("cmig/instance.properties"),
        format!(
            "canal.instance.mysql.slaveId=4900001\ncanal.instance.gtidon=false\n\
             canal.instance.master.address=127.0.0.1:{}\ncanal.instance.master.journal.name=\n\
             canal.instance.master.position=\ncanal.instance.dbUsername={}\ncanal.instance.dbPassword={}\n\
             canal.instance.connectionCharset = UTF-8\ncanal.instance.filter.regex=cmig\\\\..*\n\
             canal.instance.filter.black.regex=mysql\\\\.slave_.*\n\
             canal.instance.filter.field=cmig.orders:id\n\
             canal.mq.topic=cmig_default\ncanal.mq.dynamicTopic=cmig_orders:cmig\\\\.orders,cmig.users\n\
             canal.mq.partitionsNum=3\ncanal.mq.partitionHash=.*\\\\..*:$pk$\n",
            srv.port, srv.repl.0, srv.repl.1
        ),
    )
    .expect("instance.properties");

    let (code, toml, stderr) = sluice(
        &[
            "canal",
            "import",
            conf.join("cmig/instance.properties")
                .to_str()
                .unwrap_or_default(),
            conf.join("canal.properties").to_str().unwrap_or_default(),
            "--checkpoint",
            dir.join("cp").to_str().unwrap_or_default(),
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !toml.contains(&srv.repl.1),
        "the password was copied:\n{toml}"
    );
    // Canal's DDL filter is carried to canal-compat; the column filter is listed.
    assert!(
        toml.contains("\"canal.instance.filter.query.ddl\" = \"true\""),
        "{toml}"
    );
    assert!(
        stderr.contains("not translated: canal.instance.filter.field = cmig.orders:id"),
        "{stderr}"
    );
    assert!(stderr.contains("set SLUICE_SOURCE_PASSWORD"), "{stderr}");
    let config = dir.join("sluice.toml");
    std::fs::write(&config, &toml).expect("sluice.toml");
    let cfg = config.to_str().unwrap_or_default();
    let bare = std::env::temp_dir().join(format!("sluice-bare-{}", std::process::id()));
    let bare = bare.to_str().unwrap_or_default();
    // The agent too runs with no toolchain reachable.
    let env = [
        ("SLUICE_SOURCE_PASSWORD", srv.repl.1.as_str()),
        ("PATH", bare),
        ("CARGO_HOME", bare),
        ("RUSTUP_HOME", bare),
    ];

    let (code, out, err) = sluice(&["check", "-c", cfg], &env);
    assert_eq!(code, Some(1), "topics do not exist yet: {out}{err}");
    let (code, out, err) = sluice(&["topics", "create", "-c", cfg, "--partitions", "3"], &env);
    assert_eq!(code, Some(0), "{out}{err}");
    for t in ["cmig_default", "cmig_orders", "cmig.users"] {
        assert!(out.contains(&format!("topic {t}: created")), "{out}");
    }
    let (code, out, err) = sluice(&["check", "-c", cfg], &env);
    assert_eq!(code, Some(0), "{out}{err}");
    // A typo in the module's config: refused by `check`, naming the key meant.
    let typo = dir.join("typo.toml");
    std::fs::write(
        &typo,
        toml.replace("canal.mq.partitionHash", "canal.mq.partitonHash"),
    )
    .expect("typo config");
    let (code, out, err) = sluice(&["check", "-c", typo.to_str().unwrap_or_default()], &env);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("`canal.mq.partitonHash` (did you mean `canal.mq.partitionHash`?)"),
        "{out}{err}"
    );

    assert!(toml.contains("file = \"builtin:canal-compat\""), "{toml}");
    let mut agent = Agent::start(&config, &dir.join("agent.log"), &env);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    for (t, from) in [
        ("cmig.orders", 0),
        ("cmig.users", 100),
        ("cmig.misc", 200),
        ("cmig_other.t", 300),
    ] {
        for i in from..from + 20 {
            exec(&mut db, &format!("INSERT INTO {t} VALUES ({i}, 'v{i}')")).await;
        }
    }
    // DDL, which the instance's `filter.query.ddl = true` drops, as Canal does.
    exec(&mut db, "ALTER TABLE cmig.misc ADD COLUMN c INT NULL").await;
    exec(
        &mut db,
        "INSERT INTO cmig.misc VALUES (999, 'after-ddl', 1)",
    )
    .await;
    let reader = Reader::new(&["cmig_default", "cmig_orders", "cmig.users"], 3);
    let t0 = Instant::now();
    let mut got = Vec::new();
    while got.len() < 61 && t0.elapsed() < Duration::from_secs(60) {
        got = reader.read();
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    let got = reader.read();
    let mut by_table: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut partition_of: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for m in &got {
        assert_eq!(m.value["isDdl"], false, "the DDL filter let {m:?} through");
        let table = m.value["table"].as_str().unwrap_or_default().to_string();
        by_table
            .entry(table.clone())
            .or_default()
            .insert(m.topic.clone());
        for r in m.value["data"].as_array().into_iter().flatten() {
            let id = r["id"].as_str().unwrap_or_default().to_string();
            partition_of.entry(id).or_default().insert(m.partition);
        }
        assert!(
            m.value["database"] == "cmig",
            "the filter let {m:?} through"
        );
    }
    // Topics as Canal's rules give them.
    assert_eq!(
        by_table.get("orders"),
        Some(&BTreeSet::from(["cmig_orders".to_string()]))
    );
    assert_eq!(
        by_table.get("users"),
        Some(&BTreeSet::from(["cmig.users".to_string()]))
    );
    assert_eq!(
        by_table.get("misc"),
        Some(&BTreeSet::from(["cmig_default".to_string()]))
    );
    // Every row once, each key in one partition of three, keys spread over them.
    assert_eq!(partition_of.len(), 61, "{partition_of:?}");
    assert!(
        partition_of
            .values()
            .all(|p| p.len() == 1 && p.iter().all(|&x| (0..3).contains(&x)))
    );
    let used: BTreeSet<i32> = partition_of.values().flatten().copied().collect();
    assert!(used.len() > 1, "all keys in one partition: {used:?}");
    assert_eq!(agent.terminate(Duration::from_secs(60)), Some(0));
    // A log written to a file is plain text (colours are for terminals).
    let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
    assert!(
        log.contains("Replicating.") && !log.contains('\u{1b}'),
        "{log}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
