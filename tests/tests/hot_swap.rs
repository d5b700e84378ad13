//! Hot swap in a running `sluice run`: a new version dropped into the modules directory,
//! and a new file at the module's configured path followed by SIGHUP, each take over
//! (visible in the version header of later messages) without a restart.

use std::time::{Duration, Instant};

use sluice_tests::agent::{Agent, read_file_sink};
use sluice_tests::e2e::{module_toml, scenario_source_toml, setup};
use sluice_tests::events::new_version;
use sluice_tests::live::{exec, server};

fn hex_sha256(b: &[u8]) -> String {
    sluice::router::engine::hash_hex(b)
}

async fn versions_after_insert(
    admin: &mut mysql_async::Conn,
    out: &std::path::Path,
    id: u64,
    want: &str,
) {
    let t = Instant::now();
    loop {
        exec(
            admin,
            &format!(
                "INSERT INTO e2e.t2 VALUES ('swap{id}-{}', 1)",
                t.elapsed().as_millis()
            ),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let last = read_file_sink(out)
            .into_iter()
            .rev()
            .find(|m| m.value["table"] == "t2")
            .and_then(|m| m.headers.get("sluice.module.version").cloned());
        if last.as_deref() == Some(want) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "version {want} never took over (last {last:?})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_dir_and_sighup_swap_versions() {
    let srv = server();
    let mut admin = srv.admin().await;
    setup(&mut admin).await;
    let dir = std::env::temp_dir().join(format!("sluice-swap-{}", std::process::id()));
    let modules = dir.join("modules");
    std::fs::create_dir_all(&modules).expect("dir");
    let v1 = std::fs::read(env!("GUEST_CANAL_COMPAT")).expect("component");
    // The configured file lies outside the watched directory, so only SIGHUP reloads it.
    let module_file = dir.join("canal.wasm");
    std::fs::write(&module_file, &v1).expect("write");
    let out = dir.join("out.jsonl");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "{}{}\n[router]\nmodules_dir = \"{}\"\n\n[sink]\nkind = \"file\"\npath = \"{}\"\n\n[checkpoint]\npath = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            scenario_source_toml(&srv, 4_300_010),
            module_toml(&module_file),
            modules.display(),
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
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    versions_after_insert(&mut admin, &out, 1, &hex_sha256(&v1)).await;

    // A new version appears in the watched directory.
    let v2 = new_version(&v1, "v2");
    let tmp = modules.join("canal.wasm.tmp");
    std::fs::write(&tmp, &v2).expect("write");
    std::fs::rename(&tmp, modules.join("canal.wasm")).expect("rename");
    versions_after_insert(&mut admin, &out, 2, &hex_sha256(&v2)).await;

    // SIGHUP reloads the configured file (here rewritten in place).
    let v3 = new_version(&v1, "v3");
    std::fs::write(&module_file, &v3).expect("write");
    let _ = std::process::Command::new("pkill")
        .args(["-HUP", "-f", &config.display().to_string()])
        .status();
    versions_after_insert(&mut admin, &out, 3, &hex_sha256(&v3)).await;

    assert_eq!(agent.terminate(Duration::from_secs(30)), Some(0));
    let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
    assert!(log.contains("Module version swapped in."), "{log}");
    std::fs::remove_dir_all(&dir).ok();
}
