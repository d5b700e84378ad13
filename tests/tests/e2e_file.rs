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
