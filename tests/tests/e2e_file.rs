//! `sluice run` end to end with the local file sink: a mixed workload of >100k row
//! changes over two tables (inserts, updates, primary-key changes, deletes, DDL), the
//! agent killed with SIGKILL five times and restarted from its checkpoint. Every row's
//! final state equals the database, partitions are Canal's, per-key order holds, and
//! duplicates only come from the unacknowledged tail of each crash.

use sluice_tests::agent::{Agent, read_file_sink};
use sluice_tests::e2e::{module_toml, scenario, setup, source_toml};
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
            source_toml(&srv, 4_300_001),
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
