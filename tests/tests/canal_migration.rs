//! The path from a Canal instance to a running agent, as a Canal user takes it with
//! only the Sluice binary: `sluice canal import` on Canal's `instance.properties` and
//! `canal.properties` (Kafka mode, dynamic topics, partition hash, table filters),
//! `sluice topics create` on an empty broker, `sluice check`, `sluice run` — rows land
//! in the topics and partitions Canal's rules give, the filter keeps other databases
//! out, and what the converter could not carry is listed by name. Every command runs
//! with no Rust toolchain reachable: canal-compat is the one built into the binary.
//! Canal's own example files (`tests/fixtures/canal`) go through the same path: every
//! server mode converts, and in Kafka mode `topics create --tables` makes the topics
//! its `dynamicTopic` regexes derive from the source's tables.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use sluice_tests::agent::Agent;
use sluice_tests::kafka::{BROKERS, Reader, fresh_broker};
use sluice_tests::live::{exec, server};

/// `sluice canal import INSTANCE CANAL --checkpoint CHECKPOINT`, bare as [`sluice`].
fn canal_import(
    instance: &std::path::Path,
    canal: &std::path::Path,
    checkpoint: &std::path::Path,
) -> (Option<i32>, String, String) {
    sluice(
        &[
            "canal",
            "import",
            instance.to_str().unwrap_or_default(),
            canal.to_str().unwrap_or_default(),
            "--checkpoint",
            checkpoint.to_str().unwrap_or_default(),
        ],
        &[],
    )
}

/// The tests that restart the broker take turns.
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    let _turn = BROKER.lock().await;
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

    let (code, toml, stderr) = canal_import(
        &conf.join("cmig/instance.properties"),
        &conf.join("canal.properties"),
        &dir.join("cp"),
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

/// Canal's own example files (`tests/fixtures/canal`, unchanged copies of what Canal's
/// deployer ships).
fn upstream(name: &str) -> String {
    let p = sluice_tests::repo_root()
        .join("tests/fixtures/canal")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// `text` with property `key`'s line set to `key = value` (commented out or not).
fn set_property(text: &str, key: &str, value: &str) -> String {
    let mut found = false;
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let bare = l.trim_start_matches('#').trim_start();
            let is_key = bare
                .split(['=', ':'])
                .next()
                .is_some_and(|k| k.trim() == key);
            if is_key && !found {
                found = true;
                format!("{key}={value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(found, "{key} is not in the file");
    out.join("\n") + "\n"
}

/// Canal's shipped `canal.properties` and `example/instance.properties`, unchanged but
/// for the server's address and user: every key in them is known to the converter (none
/// "unknown"), the default `tcp` mode becomes a Canal server with destination `example`
/// that passes `sluice check`, and each other server mode converts; the RDS example's
/// OSS keys are named as not supported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canals_own_example_files_convert_and_check() {
    let srv = server();
    let dir = sluice_tests::scratch_dir("canal-upstream");
    let conf = dir.join("conf");
    std::fs::create_dir_all(conf.join("example")).expect("conf dir");
    let canal = upstream("canal.properties");
    let mut instance = upstream("example/instance.properties");
    instance = set_property(
        &instance,
        "canal.instance.master.address",
        &format!("127.0.0.1:{}", srv.port),
    );
    instance = set_property(&instance, "canal.instance.dbUsername", &srv.repl.0);
    std::fs::write(conf.join("canal.properties"), &canal).expect("write");
    std::fs::write(conf.join("example/instance.properties"), &instance).expect("write");
    let import = |canal_text: &str| {
        let c = conf.join("canal-variant.properties");
        std::fs::write(&c, canal_text).expect("write");
        canal_import(
            &conf.join("example/instance.properties"),
            &c,
            &dir.join("cp"),
        )
    };
    let (code, toml, stderr) = import(&canal);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("unknown to the converter"), "{stderr}");
    for want in [
        "kind = \"canal-server\"",
        "destinations = [\"example\"]",
        "exclude = [\"mysql\\\\.slave_.*\"]",
        "password_env = \"SLUICE_SOURCE_PASSWORD\"",
        "start = \"latest\"",
    ] {
        assert!(toml.contains(want), "no `{want}` in:\n{toml}");
    }
    // `canal.instance.dbPassword=canal`: never copied.
    assert!(!toml.contains("password ="), "{toml}");
    let config = dir.join("sluice.toml");
    std::fs::write(&config, &toml).expect("sluice.toml");
    let env = [("SLUICE_SOURCE_PASSWORD", srv.repl.1.as_str())];
    let (code, out, err) = sluice(&["check", "-c", config.to_str().unwrap_or_default()], &env);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("source: ok"), "{out}");

    // The other server modes, from the same file with `canal.serverMode` switched.
    for (mode, kind) in [
        ("kafka", "kind = \"kafka\""),
        ("rocketMQ", "kind = \"rocketmq\""),
        ("rabbitMQ", "kind = \"rabbitmq\""),
    ] {
        let mut text = set_property(&canal, "canal.serverMode", mode);
        if mode == "rabbitMQ" {
            text = set_property(&text, "rabbitmq.host", "127.0.0.1:5672");
            text = set_property(&text, "rabbitmq.exchange", "canal");
        }
        let (code, toml, stderr) = import(&text);
        assert_eq!(code, Some(0), "{mode}: {stderr}");
        assert!(toml.contains(kind), "{mode}:\n{toml}");
        assert!(
            toml.contains("file = \"builtin:canal-compat\""),
            "{mode}:\n{toml}"
        );
        assert!(
            !stderr.contains("unknown to the converter"),
            "{mode}: {stderr}"
        );
        // Canal's example routes everything to topic `example`.
        assert!(
            toml.contains("\"canal.mq.topic\" = \"example\""),
            "{mode}:\n{toml}"
        );
    }

    let rds = dir.join("rds_instance.properties");
    // As an RDS user fills it in: the OpenAPI keys set.
    let mut rds_text = upstream("example/rds_instance.properties");
    rds_text = set_property(&rds_text, "canal.instance.rds.instanceId", "rm-2ze1234");
    rds_text = set_property(&rds_text, "canal.instance.rds.open.accesskey", "LTAI5t00");
    std::fs::write(&rds, rds_text).expect("write");
    let (code, toml, stderr) = canal_import(&rds, &conf.join("canal.properties"), &dir.join("cp"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(toml.contains("include = [\"test\\\\..*\"]"), "{toml}");
    assert!(
        stderr.contains("canal.instance.rds.open.accesskey = ***: downloading RDS binlog backups through Aliyun's OpenAPI is not supported")
            && stderr.contains("canal.instance.rds.instanceId = rm-2ze1234: reading RDS binlog backups from OSS is not supported"),
        "{stderr}"
    );
    assert!(!stderr.contains("unknown to the converter"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Canal's example instance in Kafka mode with its commented MQ lines switched on
/// (`dynamicTopic=mytest1.user,mytest2\..*,.*\..*`, `partitionsNum=3`,
/// `partitionHash=test.table:id^name,.*\..*`, `dynamicTopicPartitionNum=test.*:4,...`)
/// and a table filter for this test's databases: the converter's next-step line gives
/// the partitions and `--tables`, which creates the topics the regexes derive from the
/// source's tables; then every row lands where Canal's rules send it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canals_example_in_kafka_mode_with_regex_topics_runs() {
    let _turn = BROKER.lock().await;
    fresh_broker(&[], 1);
    let srv = server();
    let mut db = srv.admin().await;
    for d in ["mytest1", "mytest2", "test", "cup_other"] {
        exec(&mut db, &format!("DROP DATABASE IF EXISTS {d}")).await;
        exec(&mut db, &format!("CREATE DATABASE {d}")).await;
    }
    for t in [
        "mytest1.user",
        "mytest2.a",
        "mytest2.b",
        "test.`table`",
        "cup_other.t",
    ] {
        exec(
            &mut db,
            &format!("CREATE TABLE {t} (id BIGINT PRIMARY KEY, name VARCHAR(20))"),
        )
        .await;
    }
    let dir = sluice_tests::scratch_dir("canal-upstream-kafka");
    let conf = dir.join("conf");
    std::fs::create_dir_all(conf.join("example")).expect("conf dir");
    let mut canal = upstream("canal.properties");
    canal = set_property(&canal, "canal.serverMode", "kafka");
    canal = set_property(&canal, "kafka.bootstrap.servers", BROKERS);
    let mut instance = upstream("example/instance.properties");
    for (k, v) in [
        (
            "canal.instance.master.address",
            format!("127.0.0.1:{}", srv.port),
        ),
        ("canal.instance.dbUsername", srv.repl.0.clone()),
        (
            "canal.instance.filter.regex",
            "mytest1\\\\..*,mytest2\\\\..*,test\\\\..*".into(),
        ),
        (
            "canal.mq.dynamicTopic",
            "mytest1.user,mytest2\\\\..*,.*\\\\..*".into(),
        ),
        ("canal.mq.partitionsNum", "3".into()),
        (
            "canal.mq.partitionHash",
            "test.table:id^name,.*\\\\..*".into(),
        ),
        (
            "canal.mq.dynamicTopicPartitionNum",
            "test.*:4,mycanal:6".into(),
        ),
    ] {
        instance = set_property(&instance, k, &v);
    }
    std::fs::write(conf.join("canal.properties"), &canal).expect("write");
    std::fs::write(conf.join("example/instance.properties"), &instance).expect("write");
    let (code, toml, stderr) = canal_import(
        &conf.join("example/instance.properties"),
        &conf.join("canal.properties"),
        &dir.join("cp"),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("unknown to the converter"), "{stderr}");
    // The next steps, with the most partitions a rule uses and --tables for the regexes.
    let next = toml
        .lines()
        .find(|l| l.starts_with("# Next: "))
        .unwrap_or_else(|| panic!("no next-step line in:\n{toml}"));
    assert!(
        next.contains("sluice topics create -c sluice.toml --partitions 6 --tables"),
        "{next}"
    );
    let config = dir.join("sluice.toml");
    std::fs::write(&config, &toml).expect("sluice.toml");
    let cfg = config.to_str().unwrap_or_default();
    let env = [("SLUICE_SOURCE_PASSWORD", srv.repl.1.as_str())];
    // Without --tables: the topics the rules name outright only; `check` then names
    // the ones the regexes derive from the source's tables.
    let (code, out, err) = sluice(&["topics", "create", "-c", cfg, "--partitions", "6"], &env);
    assert_eq!(code, Some(0), "{out}{err}");
    for t in ["example", "mytest1.user"] {
        assert!(out.contains(&format!("topic {t}: created")), "{t}: {out}");
    }
    assert!(!out.contains("mytest2"), "{out}");
    let (code, out, err) = sluice(&["check", "-c", cfg], &env);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("warning: the source's tables route to 3 topics that do not exist (mytest2.a, mytest2.b, test.table)"),
        "{out}"
    );
    let (code, out, err) = sluice(
        &[
            "topics",
            "create",
            "-c",
            cfg,
            "--partitions",
            "6",
            "--tables",
        ],
        &env,
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("4 captured tables on the source route to 4 topics"),
        "{out}"
    );
    let topics = [
        "example",
        "mytest1.user",
        "mytest2.a",
        "mytest2.b",
        "test.table",
    ];
    for t in ["mytest2.a", "mytest2.b", "test.table"] {
        assert!(out.contains(&format!("topic {t}: created")), "{t}: {out}");
    }
    for t in ["example", "mytest1.user"] {
        assert!(out.contains(&format!("topic {t}: exists")), "{t}: {out}");
    }
    assert!(!out.contains("cup_other"), "{out}");
    let (code, out, err) = sluice(&["check", "-c", cfg], &env);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!out.contains("warning: the source's tables"), "{out}");

    let mut agent = Agent::start(&config, &dir.join("agent.log"), &env);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    for (t, from) in [
        ("mytest1.user", 0),
        ("mytest2.a", 100),
        ("mytest2.b", 200),
        ("test.`table`", 300),
        ("cup_other.t", 400),
    ] {
        // Names not derived from the id: `id^name` of `i` and `n{i}` hash alike mod 4.
        let names = ["ann", "bob", "carol", "dave", "eve", "frank", "grace"];
        let values: Vec<String> = (from..from + 30)
            .map(|i| format!("({i}, '{}')", names[(i % 7) as usize]))
            .collect();
        exec(
            &mut db,
            &format!("INSERT INTO {t} VALUES {}", values.join(",")),
        )
        .await;
    }
    let reader = Reader::new(&topics, 6);
    let rows = |got: &[sluice_tests::agent::Published]| {
        got.iter()
            .map(|m| m.value["data"].as_array().map_or(0, Vec::len))
            .sum::<usize>()
    };
    let t0 = Instant::now();
    while rows(&reader.read()) < 120 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    let got = reader.read();
    assert_eq!(
        rows(&got),
        120,
        "rows of the four captured tables, once each"
    );
    let mut placed: BTreeMap<String, BTreeSet<(String, i32)>> = BTreeMap::new();
    for m in &got {
        let table = format!(
            "{}.{}",
            m.value["database"].as_str().unwrap_or("?"),
            m.value["table"].as_str().unwrap_or("?")
        );
        placed
            .entry(table)
            .or_default()
            .insert((m.topic.clone(), m.partition));
    }
    // `.*\..*` without columns hashes the table name: one partition per table.
    for t in ["mytest1.user", "mytest2.a", "mytest2.b"] {
        let at = &placed[t];
        assert_eq!(at.len(), 1, "{t}: {at:?}");
        let (topic, partition) = at.iter().next().cloned().unwrap_or_default();
        assert_eq!(topic, t);
        assert!((0..3).contains(&partition), "{t}: {partition}");
    }
    // `test.table:id^name` over `test.*:4` partitions: spread, all below 4.
    let at = &placed["test.table"];
    assert!(
        at.iter()
            .all(|(topic, p)| topic == "test.table" && (0..4).contains(p)),
        "{at:?}"
    );
    assert!(
        at.len() > 1,
        "test.table's rows all in one partition: {at:?}"
    );
    assert!(
        !placed.contains_key("cup_other.t"),
        "the filter let cup_other through"
    );
    assert_eq!(agent.terminate(Duration::from_secs(60)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}

/// The hostile case of `--tables`: beside canal-compat, a module that never returns
/// from a call. `topics create --tables` still creates canal-compat's table topics and
/// then fails naming the other module (its deadline ends the call); `check` passes with
/// a warning naming it. Neither hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_module_does_not_stop_the_others_table_topics() {
    let _turn = BROKER.lock().await;
    sluice_tests::kafka::broker();
    let srv = server();
    let mut db = srv.admin().await;
    exec(&mut db, "DROP DATABASE IF EXISTS cmig_loop").await;
    exec(&mut db, "CREATE DATABASE cmig_loop").await;
    exec(&mut db, "CREATE TABLE cmig_loop.t (id BIGINT PRIMARY KEY)").await;
    let dir = sluice_tests::scratch_dir("canal-migration-loop");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"[source]
host = "127.0.0.1"
port = {}
user = "{}"
password_env = "SLUICE_SOURCE_PASSWORD"
server_id = 4900009
include = ['cmig_loop\..*']

[[modules]]
name = "good"
file = "builtin:canal-compat"
[modules.config]
"canal.mq.topic" = "cmig_loop.default"
"canal.mq.dynamicTopic" = 'cmig_loop\..*'

[[modules]]
name = "bad"
file = "{}"
deadline_ms = 50
[modules.config]
mode = "loop"

[sink]
kind = "kafka"
brokers = "{BROKERS}"

[checkpoint]
path = "{}"
"#,
            srv.port,
            srv.repl.0,
            env!("GUEST_HOSTILE"),
            dir.join("cp").display()
        ),
    )
    .expect("config");
    let cfg = config.to_str().unwrap_or_default();
    let env = [("SLUICE_SOURCE_PASSWORD", srv.repl.1.as_str())];
    let t = Instant::now();
    let (code, out, err) = sluice(&["topics", "create", "-c", cfg, "--tables"], &env);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("topic cmig_loop.t: created") || out.contains("topic cmig_loop.t: exists"),
        "the good module's table topic: {out}{err}"
    );
    assert!(err.contains("module `bad`"), "{err}");
    assert!(!err.contains("module `good`"), "{err}");
    let (code, out, err) = sluice(&["check", "-c", cfg], &env);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("warning: could not work out the topics of the source's tables: module `bad`"),
        "{out}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(120),
        "took {:?}",
        t.elapsed()
    );
    std::fs::remove_dir_all(&dir).ok();
}
