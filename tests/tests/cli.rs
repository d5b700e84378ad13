//! The `sluice` command line, run as a user runs it: `replay` errors and exit codes, and
//! the module tooling (`module build|check|test|diff`).

use std::process::Command;

use sluice_tests::{corpora, repo_root};

fn sluice() -> Command {
    Command::new(sluice_tests::agent::binary())
}

#[test]
fn replay_reports_corrupt_files_and_fails() {
    let f = corpora().join("rust_mysql_common/test-data/binlogs/corrupt-relay-bin.000624");
    let out = sluice().arg("replay").arg(&f).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("corrupt-relay-bin.000624 at offset 91204"),
        "{err}"
    );
    // Events before the broken one were printed, nothing for the broken one.
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(lines > 0);
    let out = sluice()
        .args(["replay", "--format", "debezium"])
        .arg(corpora().join("binlog-parser/data/fixtures/mysql-bin.01"))
        .output()
        .expect("runs");
    assert!(out.status.success());
    let first: serde_json::Value =
        serde_json::from_slice(out.stdout.split(|&b| b == b'\n').next().expect("a line"))
            .expect("json");
    assert_eq!(first["op"], "c");
    assert_eq!(first["source"]["table"], "buildings");
    let out = sluice()
        .args(["replay", "/nonexistent"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    // The file and the cause, once each.
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("/nonexistent").count(), 1, "{err}");
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    assert!(
        sluice().args(["replay"]).status().expect("runs").code() == Some(2),
        "usage error"
    );
}

/// `replay --progress`: a summary (and, on long inputs, progress lines) on stderr
/// counting exactly the rows printed; stdout is the same with or without it, and off a
/// terminal the default prints none.
#[test]
fn replay_progress_counts_the_rows_it_prints() {
    let files = [
        corpora().join("mariadb-poc/mariadb-binlog/binlogs/domain_id_0/mariadb-repl-bin.000005"),
        corpora().join("binlog-parser/data/fixtures/mysql-bin.01"),
    ];
    let with = sluice()
        .args(["replay", "--progress", "always"])
        .args(&files)
        .output()
        .expect("runs");
    assert!(with.status.success(), "{with:?}");
    let without = sluice().arg("replay").args(&files).output().expect("runs");
    assert!(without.status.success());
    // The same messages but for `ts`, the time of the replay.
    let messages = |out: &[u8]| -> Vec<serde_json::Value> {
        String::from_utf8_lossy(out)
            .lines()
            .map(|l| {
                let mut m: serde_json::Value = serde_json::from_str(l).expect("json");
                m["ts"] = serde_json::Value::Null;
                m
            })
            .collect()
    };
    let printed = messages(&with.stdout);
    assert!(
        printed == messages(&without.stdout),
        "progress never touches stdout"
    );
    assert!(
        without.stderr.is_empty(),
        "no progress off a terminal by default"
    );
    let rows: usize = printed
        .iter()
        .map(|m| m["data"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(rows > 0);
    let err = String::from_utf8_lossy(&with.stderr);
    let mib: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).expect("size").len())
        .sum::<u64>()
        >> 20;
    assert!(
        err.contains(&format!("replay: {rows} rows from {mib} MiB in ")),
        "{err}"
    );
    let never = sluice()
        .args(["replay", "--progress", "never"])
        .args(&files)
        .output()
        .expect("runs");
    assert!(never.stderr.is_empty());
}

#[test]
fn module_tooling_end_to_end() {
    let dir = sluice_tests::scratch_dir("cli-modules");
    // build: the example copied out of the repository, as a team starts from it (no
    // workspace to inherit settings from; the SDK by absolute path; the workspace's
    // lock file so no newer dependency is picked).
    let krate = dir.join("my-tags");
    std::fs::create_dir_all(krate.join("src")).expect("crate dir");
    let manifest = std::fs::read_to_string(repo_root().join("guest-examples/tags/Cargo.toml"))
        .expect("manifest")
        .replace("../../sdk", &repo_root().join("sdk").display().to_string());
    std::fs::write(krate.join("Cargo.toml"), manifest).expect("manifest");
    std::fs::copy(
        repo_root().join("guest-examples/tags/src/lib.rs"),
        krate.join("src/lib.rs"),
    )
    .expect("source");
    std::fs::copy(repo_root().join("Cargo.lock"), krate.join("Cargo.lock")).expect("lock");
    let out = sluice()
        .args(["module", "build"])
        .arg(&krate)
        .arg("--out")
        .arg(repo_root().join("target/cli-modules"))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built = repo_root().join("target/cli-modules/tags.wasm");
    assert!(built.is_file());

    // check
    let out = sluice()
        .args(["module", "check"])
        .arg(&built)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("exports: configure, add-table, route"),
        "{text}"
    );
    let out = sluice()
        .args(["module", "check", env!("GUEST_WASI_IMPORTER")])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wasi:clocks/wall-clock"));

    // test, over binlog events and over the JSON that replay printed
    let config = dir.join("tags.toml");
    std::fs::write(
        &config,
        "topic = \"bus\"\n\"tag.rooms\" = 'test_db\\.rooms'\ndefault_tag = \"other\"\n",
    )
    .expect("write");
    let binlog = corpora().join("binlog-parser/data/fixtures/mysql-bin.01");
    let out = sluice()
        .args(["module", "test"])
        .arg(&built)
        .arg("--config")
        .arg(&config)
        .arg("--events")
        .arg(&binlog)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 10);
    for l in &lines {
        let tag = if l["table"] == "test_db.rooms" {
            "rooms"
        } else {
            "other"
        };
        assert_eq!(l["routes"][0]["topic"], "bus");
        assert_eq!(l["routes"][0]["headers"]["tag"], tag, "{l}");
    }
    let replayed = sluice().arg("replay").arg(&binlog).output().expect("runs");
    let jsonl = dir.join("events.jsonl");
    std::fs::write(&jsonl, &replayed.stdout).expect("write");
    let again = sluice()
        .args(["module", "test"])
        .arg(&built)
        .arg("--config")
        .arg(&config)
        .arg("--events")
        .arg(&jsonl)
        .output()
        .expect("runs");
    let routes = |o: &[u8]| -> Vec<serde_json::Value> {
        o.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                serde_json::from_slice::<serde_json::Value>(l).expect("json")["routes"].clone()
            })
            .collect()
    };
    assert_eq!(
        routes(&again.stdout),
        routes(&out.stdout),
        "same decisions from binlog and from JSON"
    );

    // diff: identical modules agree (exit 0); a different module disagrees (exit 1)
    let same = sluice()
        .args(["module", "diff"])
        .arg(&built)
        .arg(env!("GUEST_TAGS"))
        .arg("--config")
        .arg(&config)
        .arg("--events")
        .arg(&binlog)
        .output()
        .expect("runs");
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    // Two modules, each with its own config (a key one does not read is refused).
    std::fs::write(
        &config,
        "topic = \"bus\"\n\"tag.rooms\" = 'test_db\\.rooms'\ndefault_tag = \"other\"\n",
    )
    .expect("write");
    let candidate = dir.join("candidate.toml");
    std::fs::write(
        &candidate,
        "topic = \"bus\"\n\"filter.regex\" = 'test_db\\.rooms'\n",
    )
    .expect("write");
    let differ = sluice()
        .args(["module", "diff"])
        .arg(&built)
        .arg(env!("GUEST_TABLE_FILTER"))
        .arg("--config")
        .arg(&config)
        .arg("--new-config")
        .arg(&candidate)
        .arg("--events")
        .arg(&binlog)
        .output()
        .expect("runs");
    assert_eq!(differ.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&differ.stderr).contains("of 10 decisions differ"));
    std::fs::remove_dir_all(&dir).ok();
}

/// The builtin modules: listed, exported as components another agent loads, an unknown
/// name refused with the list; `--version` names the commit and the WIT package.
#[test]
fn builtin_modules_export_and_the_version_names_the_build() {
    let out = sluice().arg("--version").output().expect("runs");
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(
        v.contains("commit ") && v.contains("WIT sluice:router@"),
        "{v}"
    );
    let out = sluice()
        .args(["module", "export", "--list"])
        .output()
        .expect("runs");
    let list = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
        ["canal-compat", "tags", "table-filter"]
    );
    let dir = sluice_tests::scratch_dir("cli-export");
    let file = dir.join("cc.wasm");
    let out = sluice()
        .args(["module", "export", "canal-compat", "--out"])
        .arg(&file)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The exported file and the builtin name check alike.
    let config = dir.join("c.toml");
    std::fs::write(&config, "\"canal.mq.topic\" = \"t\"\n").expect("config");
    for module in [file.to_str().unwrap_or_default(), "builtin:canal-compat"] {
        let out = sluice()
            .args(["module", "check", module, "--config"])
            .arg(&config)
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{module}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The subscription as JSON a person can read, not a debug dump.
        let text = String::from_utf8_lossy(&out.stdout);
        let sub = text
            .split_once("subscription: ")
            .map(|(_, j)| j)
            .unwrap_or_default();
        let sub: serde_json::Value = serde_json::from_str(sub).expect("subscription JSON");
        assert_eq!(sub["topics"][0], "t", "{text}");
        assert_eq!(sub["columns"][0], "$pk$", "{text}");
    }
    // `--admin` after the ctl subcommand is the same flag.
    let out = sluice()
        .args(["ctl", "status", "--admin", "http://127.0.0.1:1"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:1/readyz"));
    let out = sluice()
        .args(["module", "export", "nosuch"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "`builtin:nosuch` is not a builtin module (builtin: canal-compat, tags, table-filter)"
        ),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The systemd unit shipped for DB hosts passes `systemd-analyze verify` (with its
/// ExecStart pointed at this build), so a typo in a sandboxing option is caught here.
#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(repo_root().join("scripts/packaging/sluice.service"))
        .expect("unit file");
    let dir = sluice_tests::scratch_dir("cli-unit");
    let path = dir.join("sluice.service");
    std::fs::write(
        &path,
        unit.replace(
            "/usr/local/bin/sluice",
            &sluice_tests::agent::binary().display().to_string(),
        ),
    )
    .expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs (scripts/test.sh installs systemd)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Unknown keys and bad values print as "Unknown key name", "Failed to parse", ...
    let complaints: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("sluice.service"))
        .collect();
    assert!(complaints.is_empty(), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `sluice config reference|schema`: the reference README carries, and a JSON Schema an
/// editor can load, both listing every publisher's keys.
#[test]
fn config_reference_and_schema_print() {
    let out = sluice()
        .args(["config", "reference"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.starts_with("#### `[source]`"), "{md}");
    for t in [
        "`[sink.rabbitmq]`",
        "`[sink.rocketmq]`",
        "`[sink.canal_server]`",
    ] {
        assert!(md.contains(t), "{t}");
    }
    let readme =
        std::fs::read_to_string(sluice_tests::repo_root().join("README.md")).expect("README");
    assert!(
        readme.contains(md.trim()),
        "README's reference is not what the binary prints"
    );
    let out = sluice().args(["config", "schema"]).output().expect("runs");
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let sink = &schema["$defs"]["RawSink"]["properties"];
    for k in [
        "kind",
        "brokers",
        "librdkafka",
        "rabbitmq",
        "rocketmq",
        "canal_server",
    ] {
        assert!(sink.get(k).is_some(), "sink.{k} missing");
    }
    assert_eq!(schema["additionalProperties"], false);
}
