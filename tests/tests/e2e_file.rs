//! `sluice run` end to end with the local file sink: a mixed workload of >100k row
//! changes over two tables (inserts, updates, primary-key changes, deletes, DDL), the
//! agent killed with SIGKILL five times and restarted from its checkpoint. Every row's
//! final state equals the database, partitions are Canal's, per-key order holds, and
//! duplicates only come from the unacknowledged tail of each crash.

use sluice_tests::agent::{Agent, read_file_sink};
use sluice_tests::e2e::{module_toml, scenario, scenario_source_toml, setup, source_toml};
use sluice_tests::live::server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_survives_kill9() {
    let srv = server();
    let mut admin = srv.admin().await;
    setup(&mut admin).await;
    let dir = sluice_tests::scratch_dir("e2e-file");
    let out = dir.join("out.jsonl");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "{}{}\n[sink]\nkind = \"file\"\npath = \"{}\"\n\n[checkpoint]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            scenario_source_toml(&srv, 4_300_001),
            module_toml(std::path::Path::new(env!("GUEST_CANAL_COMPAT"))),
            out.display(),
            dir.join("cp").display()
        ),
    )
    .expect("config");
    let log = dir.join("agent.log");
    let pass = srv.repl.1.clone();
    let (changes, dups) = scenario(
        &srv,
        || Agent::start(&config, &log, &[("SLUICE_E2E_PASSWORD", &pass)]),
        || read_file_sink(&out),
        5,
    )
    .await;
    eprintln!("{changes} row changes published, {dups} redelivered after crashes");
    assert!(changes >= 100_000, "{changes}");
    // Redeliveries come only from what was acknowledged after the last checkpoint
    // (written every 200 ms) of each killed agent: at most a few tens of thousands of
    // row changes per crash at debug-build speed.
    assert!(dups <= 5 * 60_000, "duplicates bounded: {dups}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A second `sluice run` on the same config (same checkpoint, same server id) is refused
/// before it connects, naming the first agent's pid, and the first agent keeps
/// publishing: without the lock, the second's replica connection displaced the first's
/// (MariaDB error 4052) and both wrote one checkpoint file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_on_one_checkpoint_is_refused_and_the_first_keeps_publishing() {
    use sluice_tests::live::exec;
    use std::time::{Duration, Instant};
    let srv = server();
    let mut admin = srv.admin().await;
    exec(&mut admin, "DROP DATABASE IF EXISTS lock_t").await;
    exec(&mut admin, "CREATE DATABASE lock_t").await;
    exec(&mut admin, "CREATE TABLE lock_t.t (id INT PRIMARY KEY)").await;
    let dir = sluice_tests::scratch_dir("e2e-lock");
    let out = dir.join("out.jsonl");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "{}include = ['lock_t\\..*']\n[sink]\nkind = \"file\"\npath = \"{}\"\n\n[checkpoint]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            source_toml(&srv, 4_300_101),
            out.display(),
            dir.join("cp").display()
        ),
    )
    .expect("config");
    let pass = srv.repl.1.clone();
    let mut first = Agent::start(
        &config,
        &dir.join("first.log"),
        &[("SLUICE_E2E_PASSWORD", &pass)],
    );
    first.wait_log("Replicating.", 1, Duration::from_secs(60));

    let second = std::process::Command::new(sluice_tests::agent::binary())
        .args(["run", "-c"])
        .arg(&config)
        .env("SLUICE_E2E_PASSWORD", &pass)
        .output()
        .expect("sluice run starts");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("in use by another agent (pid {})", first.pid())),
        "{stderr}"
    );

    // The first agent still replicates and publishes.
    exec(&mut admin, "INSERT INTO lock_t.t VALUES (1), (2), (3)").await;
    let t = Instant::now();
    loop {
        let rows: usize = read_file_sink(&out)
            .iter()
            .filter(|m| m.value["database"] == "lock_t" && m.value["type"] == "INSERT")
            .map(|m| m.value["data"].as_array().map_or(0, Vec::len))
            .sum();
        if rows == 3 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the first agent published {rows} of 3 rows after the second was refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(first.terminate(Duration::from_secs(30)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}

/// A module's oversized key (the broker stores key and headers too) goes through the
/// deciding module's policy: skipped, or a reference on its dead-letter topic; nothing
/// over the limit is written, and the agent keeps running and restarts cleanly. When
/// both the module and the sink say halt, the agent stops naming the module and the
/// two settings that let it through; switching the module to skip (no module change)
/// lets it start again from the same checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_key_goes_through_the_module_policy_and_never_crash_loops() {
    use sluice_tests::live::exec;
    use std::time::{Duration, Instant};
    const LIMIT: usize = 100_000;
    let srv = server();
    let mut admin = srv.admin().await;
    exec(&mut admin, "DROP DATABASE IF EXISTS big_t").await;
    exec(&mut admin, "CREATE DATABASE big_t").await;
    exec(&mut admin, "CREATE TABLE big_t.t (id INT PRIMARY KEY)").await;
    let dir = sluice_tests::scratch_dir("e2e-bigkey");
    let out = dir.join("out.jsonl");
    let config = dir.join("sluice.toml");
    let hostile = std::path::Path::new(env!("GUEST_HOSTILE"))
        .display()
        .to_string();
    let write_config = |big_policy: &str| {
        let module = |name: &str, trigger: &str, policy: &str| {
            format!(
                "[[modules]]\nname = \"{name}\"\nfile = \"{hostile}\"\ntopics = [\"ok\"]\n{policy}\n\
                 [modules.config]\nmode = \"bigkey\"\ntrigger = \"{trigger}\"\nsize = \"200000\"\n\n"
            )
        };
        std::fs::write(
            &config,
            format!(
                "{}include = ['big_t\\..*']\n{}{}[sink]\nkind = \"file\"\npath = \"{}\"\nmax_message_bytes = {LIMIT}\n\n[checkpoint]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
                source_toml(&srv, 4_300_201),
                module("big", "7", big_policy),
                module("skipper", "8", "on_error = \"skip\""),
                out.display(),
                dir.join("cp").display()
            ),
        )
        .expect("config");
    };
    write_config("on_error = \"dead-letter\"\ndead_letter_topic = \"big.dlq\"");
    let pass = srv.repl.1.clone();
    let env = [("SLUICE_E2E_PASSWORD", pass.as_str())];
    let mut agent = Agent::start(&config, &dir.join("1.log"), &env);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    for id in 1..=10 {
        exec(&mut admin, &format!("INSERT INTO big_t.t VALUES ({id})")).await;
    }
    let ids = |module: &str, topic: &str| -> Vec<i64> {
        read_file_sink(&out)
            .iter()
            .filter(|m| {
                m.topic == topic
                    && m.headers.get("sluice.module").map(String::as_str) == Some(module)
            })
            .filter_map(|m| m.value["data"][0]["id"].as_str()?.parse().ok())
            .collect()
    };
    let t = Instant::now();
    while ids("big", "ok").len() + ids("skipper", "ok").len() < 18 {
        assert!(t.elapsed() < Duration::from_secs(30), "rows did not arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ids("big", "ok"), [1, 2, 3, 4, 5, 6, 8, 9, 10]);
    assert_eq!(ids("skipper", "ok"), [1, 2, 3, 4, 5, 6, 7, 9, 10]);
    let text = std::fs::read_to_string(&out).expect("sink file");
    let longest = text.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < LIMIT, "a line of {longest} bytes was written");
    let refs: Vec<_> = read_file_sink(&out)
        .into_iter()
        .filter(|m| m.topic == "big.dlq")
        .collect();
    assert_eq!(refs.len(), 1, "one reference for row 7");
    assert_eq!(refs[0].value["oversize"], true);
    assert_eq!(refs[0].value["key_bytes"], 200_000);
    assert_eq!(refs[0].value["module"], "big");
    // The agent restarts cleanly from its checkpoint.
    assert_eq!(agent.terminate(Duration::from_secs(30)), Some(0));
    let mut agent = Agent::start(&config, &dir.join("2.log"), &env);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    assert_eq!(agent.terminate(Duration::from_secs(30)), Some(0));

    // Module and sink both halt: the agent stops, naming the module and the way out.
    write_config("on_error = \"halt\"");
    // The row with id 7 again, deleted: its before-image strikes the trigger.
    exec(&mut admin, "DELETE FROM big_t.t WHERE id = 7").await;
    let log = dir.join("halt.log");
    let mut halted = std::process::Command::new(sluice_tests::agent::binary())
        .args(["run", "-c"])
        .arg(&config)
        .env("SLUICE_E2E_PASSWORD", &pass)
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("sluice run");
    let t = Instant::now();
    let status = loop {
        if let Some(s) = halted.try_wait().expect("wait") {
            break s;
        }
        if t.elapsed() > Duration::from_secs(60) {
            let _ = halted.kill();
            panic!(
                "the agent did not halt on the oversized key:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("module `big`") && stderr.contains("on_oversize"),
        "{stderr}"
    );
    // The operator's way out is a setting, not a module rebuild.
    write_config("on_error = \"skip\"");
    let mut agent = Agent::start(&config, &dir.join("3.log"), &env);
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    exec(&mut admin, "INSERT INTO big_t.t VALUES (11)").await;
    let t = Instant::now();
    while !ids("big", "ok").contains(&11) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "row 11 did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(agent.terminate(Duration::from_secs(30)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}

/// A module whose `configure` never returns, with `skip`: the agent starts anyway
/// (bounded by the module's deadline), says so, and the other module publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_whose_configure_hangs_does_not_stop_the_agent() {
    use sluice_tests::live::exec;
    use std::time::{Duration, Instant};
    let srv = server();
    let mut admin = srv.admin().await;
    exec(&mut admin, "DROP DATABASE IF EXISTS hang_t").await;
    exec(&mut admin, "CREATE DATABASE hang_t").await;
    exec(&mut admin, "CREATE TABLE hang_t.t (id INT PRIMARY KEY)").await;
    let dir = sluice_tests::scratch_dir("e2e-hang");
    let out = dir.join("out.jsonl");
    let config = dir.join("sluice.toml");
    let hostile = std::path::Path::new(env!("GUEST_HOSTILE"))
        .display()
        .to_string();
    std::fs::write(
        &config,
        format!(
            "{}include = ['hang_t\\..*']\n\
             [[modules]]\nname = \"hangs\"\nfile = \"{hostile}\"\non_error = \"skip\"\n[modules.config]\nmode = \"config-loop\"\n\n\
             [[modules]]\nname = \"fine\"\nfile = \"{hostile}\"\non_error = \"skip\"\n[modules.config]\nmode = \"none\"\n\n\
             [sink]\nkind = \"file\"\npath = \"{}\"\n\n[checkpoint]\npath = \"{}\"\n\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n",
            source_toml(&srv, 4_300_301),
            out.display(),
            dir.join("cp").display()
        ),
    )
    .expect("config");
    let pass = srv.repl.1.clone();
    let mut agent = Agent::start(
        &config,
        &dir.join("agent.log"),
        &[("SLUICE_E2E_PASSWORD", &pass)],
    );
    agent.wait_log(
        "Module failed to load; running without it",
        1,
        Duration::from_secs(60),
    );
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    exec(&mut admin, "INSERT INTO hang_t.t VALUES (1), (2)").await;
    let t = Instant::now();
    loop {
        let fine: usize = read_file_sink(&out)
            .iter()
            .filter(|m| m.headers.get("sluice.module").map(String::as_str) == Some("fine"))
            .map(|m| m.value["data"].as_array().map_or(0, Vec::len))
            .sum();
        if fine == 2 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{fine} of 2 rows published"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !read_file_sink(&out)
            .iter()
            .any(|m| m.headers.get("sluice.module").map(String::as_str) == Some("hangs"))
    );
    assert_eq!(agent.terminate(Duration::from_secs(30)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}

/// What the configuration reference says of several modules: two modules writing one
/// topic both land there (a table both subscribe to arrives twice, told apart by
/// `sluice.module`), and changes no module subscribes to are published nowhere while
/// the checkpoint still moves past their transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_fan_out_to_one_topic_and_unsubscribed_changes_pass_by() {
    use mysql_async::prelude::Queryable;
    let srv = server();
    let mut db = srv.admin().await;
    sluice_tests::live::exec(&mut db, "DROP DATABASE IF EXISTS fan").await;
    sluice_tests::live::exec(&mut db, "CREATE DATABASE fan").await;
    for t in ["t1", "t2", "t3"] {
        sluice_tests::live::exec(
            &mut db,
            &format!("CREATE TABLE fan.{t} (id BIGINT PRIMARY KEY)"),
        )
        .await;
    }
    let dir = sluice_tests::scratch_dir("e2e-fan-out");
    let out = dir.join("out.jsonl");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"{}include = ['fan\..*']
[[modules]]
name = "a"
file = "builtin:table-filter"
[modules.config]
"filter.regex" = 'fan\.t1,fan\.t2'
topic = "shared"

[[modules]]
name = "b"
file = "builtin:table-filter"
[modules.config]
"filter.regex" = 'fan\.t2'
topic = "shared"

[sink]
kind = "file"
path = "{}"

[checkpoint]
path = "{}"
interval_ms = 50

[admin]
listen = "off"
"#,
            source_toml(&srv, 4_300_009),
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
    agent.wait_log("Replicating.", 1, std::time::Duration::from_secs(60));
    for (t, from) in [("t1", 0), ("t2", 100), ("t3", 200)] {
        for i in from..from + 5 {
            sluice_tests::live::exec(&mut db, &format!("INSERT INTO fan.{t} VALUES ({i})")).await;
        }
    }
    // The server's position after the last (unsubscribed) transaction.
    let (file, pos): (String, u64) = db
        .query_first("SHOW MASTER STATUS")
        .await
        .ok()
        .flatten()
        .map(|r: mysql_async::Row| (r.get(0).unwrap_or_default(), r.get(1).unwrap_or_default()))
        .expect("master status");
    let t0 = std::time::Instant::now();
    let checkpoint = || -> Option<(String, u64)> {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("cp")).ok()?).ok()?;
        Some((v["file"].as_str()?.to_string(), v["position"].as_u64()?))
    };
    while checkpoint() != Some((file.clone(), pos)) {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "the checkpoint did not move past the unsubscribed changes: {:?} vs {file}:{pos}",
            checkpoint()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(agent.terminate(std::time::Duration::from_secs(30)), Some(0));
    let mut by: std::collections::BTreeMap<(String, String), Vec<String>> = Default::default();
    for m in read_file_sink(&out) {
        assert_eq!(m.topic, "shared");
        let module = m.headers.get("sluice.module").cloned().unwrap_or_default();
        for r in m.value["data"].as_array().into_iter().flatten() {
            by.entry((
                m.value["table"].as_str().unwrap_or("?").to_string(),
                module.clone(),
            ))
            .or_default()
            .push(r["id"].as_str().unwrap_or("?").to_string());
        }
    }
    let ids = |from: u64| (from..from + 5).map(|i| i.to_string()).collect::<Vec<_>>();
    let want: std::collections::BTreeMap<(String, String), Vec<String>> = [
        (("t1".to_string(), "a".to_string()), ids(0)),
        (("t2".to_string(), "a".to_string()), ids(100)),
        (("t2".to_string(), "b".to_string()), ids(100)),
    ]
    .into_iter()
    .collect();
    assert_eq!(by, want, "t2 once per module, t3 nowhere");
    std::fs::remove_dir_all(&dir).ok();
}
