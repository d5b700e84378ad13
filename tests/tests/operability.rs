//! Operating a running `sluice run` remotely: `/healthz`, `/readyz`, `/metrics` scraped
//! by a real Prometheus server, the bearer-token rules, malformed requests that change
//! nothing, module candidates loaded, promoted, rolled back and rejected through
//! `sluice ctl`, pause and resume, the checkpoint endpoint, JSON logs without secrets,
//! and a clean SIGTERM exit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::Value;
use sluice_tests::agent::{Agent, Published, binary, free_port, read_file_sink};
use sluice_tests::e2e::source_toml;
use sluice_tests::events::new_version;
use sluice_tests::live::{exec, server};

const TOKEN: &str = "ops-token-4f1c9a77e2b04d35";

struct Http {
    agent: ureq::Agent,
    base: String,
}

impl Http {
    fn new(port: u16) -> Http {
        Http {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .new_agent(),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// (status, body, WWW-Authenticate).
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, &[u8])>,
    ) -> (u16, String, Option<String>) {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let resp = match body {
            Some((ctype, b)) => self.agent.run(
                req.header("Content-Type", ctype)
                    .body(b.to_vec())
                    .expect("request"),
            ),
            None => self.agent.run(req.body(()).expect("request")),
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let auth = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.into_body().read_to_string().unwrap_or_default();
        (status, text, auth)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let (s, t, _) = self.call("GET", path, Some(TOKEN), None);
        (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
    }

    fn post(&self, path: &str, body: Option<(&str, &[u8])>) -> (u16, Value) {
        let (s, t, _) = self.call("POST", path, Some(TOKEN), body);
        (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
    }
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(
            t.elapsed() < timeout,
            "{what} did not happen within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ctl(port: u16, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .arg("ctl")
        .arg("--admin")
        .arg(format!("http://127.0.0.1:{port}"))
        .args(args)
        .env("SLUICE_ADMIN_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .output()
        .expect("sluice ctl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ops_rows(out: &Path) -> Vec<Published> {
    read_file_sink(out)
        .into_iter()
        .filter(|m| m.value["database"] == "ops")
        .collect()
}

fn rows_in(msgs: &[Published]) -> usize {
    msgs.iter()
        .map(|m| m.value["data"].as_array().map_or(0, Vec::len))
        .sum()
}

/// A Prometheus server scraping the agent every second.
struct Prometheus {
    child: std::process::Child,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path, target_port: u16) -> Prometheus {
        let bin = which("prometheus").unwrap_or_else(|| {
            panic!("the `prometheus` binary is missing: install Debian's `prometheus` package (.ci/run does)")
        });
        let token_file = dir.join("prom-token");
        std::fs::write(&token_file, TOKEN).expect("token file");
        let cfg = dir.join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: sluice\n    authorization:\n      type: Bearer\n      credentials_file: {}\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n",
                token_file.display()
            ),
        )
        .expect("prometheus config");
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("prometheus starts");
        Prometheus { child, port }
    }

    /// The value of an instant query with one result, if any.
    fn query(&self, http: &ureq::Agent, q: &str) -> Option<f64> {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let resp = http.get(&url).query("query", q).call().ok()?;
        let v: Value = serde_json::from_str(&resp.into_body().read_to_string().ok()?).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_metrics_auth_and_lifecycle() {
    let srv = server();
    let mut db = srv.admin().await;
    exec(&mut db, "DROP DATABASE IF EXISTS ops").await;
    exec(&mut db, "CREATE DATABASE ops").await;
    exec(
        &mut db,
        "CREATE TABLE ops.t (id BIGINT PRIMARY KEY, v VARCHAR(40))",
    )
    .await;
    let dir = sluice_tests::scratch_dir("ops");
    let v1 = std::fs::read(env!("GUEST_CANAL_COMPAT")).expect("component");
    let v1_hash = sluice::router::engine::hash_hex(&v1);
    let v2 = new_version(&v1, "ops-v2");
    let v2_hash = sluice::router::engine::hash_hex(&v2);
    std::fs::write(dir.join("canal.wasm"), &v1).expect("write");
    std::fs::write(dir.join("canal-v2.wasm"), &v2).expect("write");
    // Path candidates are read only from inside router.modules_dir; a subdirectory keeps
    // the file away from the directory's own watch (top-level `<name>.wasm` only).
    std::fs::create_dir_all(dir.join("modules/by-path")).expect("modules dir");
    let broken = dir.join("modules/by-path/broken.wasm");
    std::fs::copy(env!("GUEST_WASI_IMPORTER"), &broken).expect("copy");
    let out = dir.join("out.jsonl");
    let port = free_port();
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"{}include = ['ops\..*']
[[modules]]
name = "canal"
file = "{}"
topics = ["ops.*"]
[modules.config]
"canal.mq.topic" = "ops.default"
"canal.mq.dynamicTopic" = 'ops\..*'
"canal.mq.partitionsNum" = "3"
"canal.mq.partitionHash" = '.*\..*:$pk$'

[sink]
kind = "file"
path = "{}"

[checkpoint]
path = "{}"

[router]
modules_dir = "{}"

[admin]
listen = "127.0.0.1:{port}"
token_env = "SLUICE_OPS_TOKEN"
"#,
            source_toml(&srv, 4_400_001),
            dir.join("canal.wasm").display(),
            out.display(),
            dir.join("cp").display(),
            dir.join("modules").display(),
        ),
    )
    .expect("config");
    let log = dir.join("agent.log");
    let mut agent = Agent::start(
        &config,
        &log,
        &[
            ("SLUICE_E2E_PASSWORD", &srv.repl.1),
            ("SLUICE_OPS_TOKEN", TOKEN),
            ("SLUICE_LOG_FORMAT", "json"),
            (
                "RUST_LOG",
                "debug,cranelift_codegen=info,wasmtime=info,regalloc2=info,wasmtime_internal_cranelift=info",
            ),
        ],
    );
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    let http = Http::new(port);

    // Health needs no token; everything else does.
    let (s, body, _) = http.call("GET", "/healthz", None, None);
    assert_eq!((s, body.as_str()), (200, "ok\n"));
    for path in ["/metrics", "/v1/modules", "/v1/checkpoint"] {
        let (s, body, auth) = http.call("GET", path, None, None);
        assert_eq!(s, 401, "{path} without a token: {body}");
        assert!(body.contains("Authorization"), "{path}: {body}");
        assert_eq!(auth.as_deref(), Some("Bearer realm=\"sluice\""));
        let (s, body, _) = http.call("GET", path, Some("ops-token-wrong-guess-00000"), None);
        assert_eq!(s, 401, "{path} with a wrong token: {body}");
        assert!(body.contains("wrong token"), "{body}");
    }
    let (s, _, _) = http.call("POST", "/v1/pause", None, None);
    assert_eq!(s, 401);

    wait_for("readiness", Duration::from_secs(30), || {
        http.call("GET", "/readyz", None, None).0 == 200
    });
    let (s, mods) = http.get("/v1/modules");
    assert_eq!(s, 200);
    assert_eq!(mods["modules"][0]["name"], "canal");
    assert_eq!(mods["modules"][0]["version"], v1_hash.as_str());
    assert_eq!(mods["modules"][0]["candidate"]["state"], "none");

    let (s, v) = http.post("/v1/modules/canal/promote", None);
    assert_eq!(s, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("no candidate"),
        "{v}"
    );
    // A candidate loaded before any row was seen has nothing to canary on: the answer
    // says so instead of a bare "passed". (The source captures `ops` only: the tests
    // beside this one write other databases.)
    let v2_early = dir.join("canal-v2.wasm").display().to_string();
    let (code, stdout, stderr) = ctl(port, &["load", "canal", &v2_early, "--json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("\"canary_rows\":0"), "{stdout}");
    assert!(stderr.contains("canary ran on 0 rows"), "{stderr}");
    assert!(!stderr.contains("canary passed"), "{stderr}");
    agent.wait_log("canary ran on no rows", 1, Duration::from_secs(10));

    // 50 rows in 5 transactions.
    let mut next_id = 1u64;
    let mut insert = async |db: &mut mysql_async::Conn, n: u64, per_txn: u64| {
        let mut left = n;
        while left > 0 {
            let k = left.min(per_txn);
            let values: Vec<String> = (next_id..next_id + k)
                .map(|i| format!("({i}, 'v{i}')"))
                .collect();
            db.query_drop(format!("INSERT INTO ops.t VALUES {}", values.join(",")))
                .await
                .expect("insert");
            next_id += k;
            left -= k;
        }
    };
    insert(&mut db, 50, 10).await;
    wait_for("50 rows published", Duration::from_secs(30), || {
        rows_in(&ops_rows(&out)) >= 50
    });

    // A real Prometheus scrapes /metrics with the token.
    let prom = Prometheus::start(&dir, port);
    let client = ureq::Agent::new_with_defaults();
    let mut rows_seen = None;
    wait_for(
        "Prometheus scraping the agent",
        Duration::from_secs(60),
        || {
            rows_seen = prom.query(
                &client,
                r#"sum(sluice_rows_total{database="ops",table="t",kind="INSERT"})"#,
            );
            rows_seen == Some(50.0)
        },
    );
    assert_eq!(prom.query(&client, r#"up{job="sluice"}"#), Some(1.0));
    let module_events = prom
        .query(
            &client,
            r#"sum(sluice_module_events_total{module="canal"})"#,
        )
        .unwrap_or(0.0);
    assert!(module_events >= 50.0, "module events {module_events}");
    let delivered = prom
        .query(&client, "sluice_delivery_seconds_count")
        .unwrap_or(0.0);
    assert!(delivered >= 5.0, "delivery histogram count {delivered}");
    assert_eq!(prom.query(&client, "sluice_source_connected"), Some(1.0));
    let offset = prom
        .query(&client, "sluice_source_binlog_offset")
        .unwrap_or(0.0);
    assert!(offset > 4.0, "binlog offset {offset}");
    // The bytes-behind probe (every 5 s) sees the agent caught up.
    wait_for("the lag probe", Duration::from_secs(30), || {
        prom.query(&client, "sluice_source_lag_bytes") == Some(0.0)
    });
    let p99 = prom
        .query(
            &client,
            "histogram_quantile(0.99, sum(sluice_module_call_seconds_bucket) by (le))",
        )
        .unwrap_or(f64::NAN);
    assert!(p99.is_finite() && p99 > 0.0, "module call p99 {p99}");
    drop(prom);

    // Malformed or misdirected requests: 400/404/409 with a reason, nothing changes.
    let wasm = ("application/wasm", &b""[..]);
    let (s, v) = http.post("/v1/modules/canal/candidate", Some(wasm));
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("empty body"),
        "{v}"
    );
    let (s, v) = http.post(
        "/v1/modules/canal/candidate",
        Some(("application/wasm", b"hello")),
    );
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("not a WebAssembly"),
        "{v}"
    );
    let (s, v) = http.post(
        "/v1/modules/canal/candidate",
        Some(("application/json", b"{not json")),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = http.post(
        "/v1/modules/canal/candidate",
        Some(("application/json", br#"{"nope": 1}"#)),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = http.post(
        "/v1/modules/canal/candidate",
        Some(("application/json", br#"{"path": "/no/such/module.wasm"}"#)),
    );
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("/no/such/module.wasm"),
        "{v}"
    );
    // axum's own rejections answer JSON too: a wrong method, a body over the limit.
    let (s, v) = http.get("/v1/pause");
    assert_eq!(s, 405, "{v}");
    assert!(v["error"].is_string(), "{v}");
    let (s, v) = http.post(
        "/v1/modules/canal/candidate",
        Some(("application/wasm", &vec![0u8; (64 << 20) + 1])),
    );
    assert_eq!(s, 413, "{v}");
    assert!(v["error"].is_string(), "{v}");
    let (s, v) = http.post(
        "/v1/modules/nosuch/candidate",
        Some(("application/wasm", &v2)),
    );
    assert_eq!(s, 404, "{v}");
    let (s, v) = http.post(
        "/v1/topics",
        Some(("application/json", br#"{"partitions": 0}"#)),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = http.post(
        "/v1/topics",
        Some(("application/json", br#"{"name": "x", "partitions": 2}"#)),
    );
    assert_eq!(s, 409, "file sink has no topics: {v}");
    let (s, _) = http.get("/v1/nope");
    assert_eq!(s, 404);
    let (_, mods) = http.get("/v1/modules");
    assert_eq!(mods["modules"][0]["version"], v1_hash.as_str());

    // A candidate through `sluice ctl`: canary, held, promoted, rolled back.
    let v2_path = dir.join("canal-v2.wasm");
    let (code, stdout, stderr) = ctl(port, &["load", "canal", &v2_path.display().to_string()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("candidate") && stdout.contains("ready"),
        "{stdout}"
    );
    // The 50 rows above are the canary's sample.
    assert!(
        stderr.contains("canary passed on 50 recent rows"),
        "{stderr}"
    );
    insert(&mut db, 5, 5).await;
    wait_for("rows after loading", Duration::from_secs(30), || {
        rows_in(&ops_rows(&out)) >= 55
    });
    let last_version = |out: &Path| {
        ops_rows(out)
            .last()
            .and_then(|m| m.headers.get("sluice.module.version").cloned())
    };
    assert_eq!(
        last_version(&out).as_deref(),
        Some(v1_hash.as_str()),
        "a loaded candidate does not serve before promotion"
    );
    let (code, stdout, stderr) = ctl(port, &["promote", "canal"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let mut want = 55;
    for expect in [&v2_hash, &v1_hash] {
        let t = Instant::now();
        loop {
            insert(&mut db, 1, 1).await;
            want += 1;
            wait_for("a row", Duration::from_secs(30), || {
                rows_in(&ops_rows(&out)) >= want
            });
            if last_version(&out).as_deref() == Some(expect.as_str()) {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{expect} never served"
            );
        }
        if expect == &v2_hash {
            let (code, stdout, stderr) = ctl(port, &["rollback", "canal"]);
            assert_eq!(code, 0, "{stdout}{stderr}");
        }
    }
    // A broken candidate (it imports WASI) is rejected; the serving version stays.
    let bad = broken.display().to_string();
    let (code, stdout, stderr) = ctl(port, &["load", "canal", &bad, "--by-path"]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stderr.contains("rejected"), "{stderr}");
    let (_, m) = http.get("/v1/modules/canal");
    assert_eq!(m["candidate"]["state"], "rejected", "{m}");
    assert!(
        m["candidate"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("wasi"),
        "{m}"
    );
    assert_eq!(m["version"], v1_hash.as_str());

    // Pause: nothing more is read; readiness says why; resume catches up.
    let (code, _, stderr) = ctl(port, &["pause"]);
    assert_eq!(code, 0, "{stderr}");
    let (s, ready, _) = http.call("GET", "/readyz", None, None);
    assert_eq!(s, 503);
    assert!(ready.contains("paused"), "{ready}");
    let before = rows_in(&ops_rows(&out));
    insert(&mut db, 20, 10).await;
    // While nothing is read, the agent says it is behind, and its lag grows with the
    // clock instead of freezing at the last value it measured.
    wait_for("behind while paused", Duration::from_secs(10), || {
        http.get("/v1/checkpoint").1["behind"] == true
    });
    let lag = || {
        let (_, m) = http.get("/metrics");
        m.as_str()
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("sluice_source_lag_seconds "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    let first = lag();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let second = lag();
    assert!(
        second >= first + 1.5 && second >= 1.5,
        "lag while paused: {first} s, then {second} s two seconds later"
    );
    assert_eq!(
        rows_in(&ops_rows(&out)),
        before,
        "rows published while paused"
    );
    let (code, _, stderr) = ctl(port, &["resume"]);
    assert_eq!(code, 0, "{stderr}");
    wait_for("rows after resume", Duration::from_secs(30), || {
        rows_in(&ops_rows(&out)) >= before + 20
    });
    wait_for("caught up after resume", Duration::from_secs(10), || {
        http.get("/v1/checkpoint").1["behind"] == false
    });
    wait_for("ready after resume", Duration::from_secs(30), || {
        http.call("GET", "/readyz", None, None).0 == 200
    });

    // The server restarts: /readyz says the stream is down, then recovers by itself.
    let watcher = {
        std::thread::spawn(move || {
            let http = Http::new(port);
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(30) {
                let (s, body, _) = http.call("GET", "/readyz", None, None);
                if s == 503 && body.contains("binlog stream is not connected") {
                    return Some(body);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            None
        })
    };
    drop(db);
    sluice_tests::live::restart();
    let seen = watcher.join().expect("watcher");
    assert!(seen.is_some(), "/readyz never reported the lost stream");
    wait_for(
        "ready after the server restart",
        Duration::from_secs(60),
        || http.call("GET", "/readyz", None, None).0 == 200,
    );
    let mut db = srv.admin().await;
    insert(&mut db, 10, 10).await;
    wait_for(
        "rows after the server restart",
        Duration::from_secs(30),
        || rows_in(&ops_rows(&out)) >= before + 30,
    );
    let (_, m) = http.get("/metrics");
    let text = m.as_str().unwrap_or_default().to_string();
    assert!(
        text.lines()
            .any(|l| l.starts_with("sluice_source_reconnects_total ") && !l.ends_with(" 0")),
        "reconnects counted: {text}"
    );

    // The checkpoint endpoint agrees with the checkpoint file once things settle.
    wait_for("checkpoint settles", Duration::from_secs(30), || {
        let (_, c) = http.get("/v1/checkpoint");
        let file: Value = std::fs::read_to_string(dir.join("cp"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        c["checkpoint"] == file && c["read"] == file && c["in_flight"] == 0
    });
    let (code, stdout, _) = ctl(port, &["status", "--json"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("\"ready\":true"), "{stdout}");
    // The readable default: positions equal to the file's, rates, lag, the module.
    let (code, stdout, stderr) = ctl(port, &["status", "--interval", "0.2"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let cp: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("cp")).expect("cp"))
        .expect("checkpoint json");
    let at = format!(
        "checkpoint {}:{}",
        cp["file"].as_str().unwrap_or("?"),
        cp["position"]
    );
    for want in [
        ": ready",
        at.as_str(),
        "caught up with what was read",
        "rows/s",
        "behind the server",
        "0 in flight",
        "module     canal ",
    ] {
        assert!(stdout.contains(want), "no `{want}` in:\n{stdout}");
    }
    assert!(!stdout.contains('{'), "not JSON by default:\n{stdout}");

    assert_eq!(agent.terminate(Duration::from_secs(30)), Some(0));
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("Admin API listening."), "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() > 10,
        "debug logging produced {} lines",
        lines.len()
    );
    // The whole configuration is logged at debug level, secrets masked.
    assert!(text.contains("Configuration loaded."), "{text}");
    assert!(text.contains("Secret(***)"), "{text}");
    for l in &lines {
        assert!(
            serde_json::from_str::<Value>(l).is_ok(),
            "not a JSON log line: {l}"
        );
        assert!(!l.contains(TOKEN), "token leaked: {l}");
        assert!(!l.contains(&srv.repl.1), "password leaked: {l}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn non_loopback_admin_requires_a_token() {
    let dir = sluice_tests::scratch_dir("ops-cfg");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        "[source]\nhost = \"127.0.0.1\"\nuser = \"u\"\npassword_env = \"HOME\"\nserver_id = 9\n[sink]\nkind = \"stdout\"\n[admin]\nlisten = \"0.0.0.0:9180\"\n",
    )
    .expect("config");
    let out = Command::new(binary())
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("admin.listen"), "{stderr}");
    assert!(stderr.contains("token"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A backlog of 64 MiB and more (here: the agent paused while 140 MiB of rows are
/// written): the agent logs `Catching up.` with how far behind it is, `ctl status`
/// shows the backlog as not moving, and once resumed the agent reads it all and logs
/// that it caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_reported_until_caught_up() {
    let srv = server();
    let mut db = srv.admin().await;
    exec(&mut db, "DROP DATABASE IF EXISTS opsbig").await;
    exec(&mut db, "CREATE DATABASE opsbig").await;
    exec(
        &mut db,
        "CREATE TABLE opsbig.t (id BIGINT PRIMARY KEY, b LONGBLOB)",
    )
    .await;
    let dir = sluice_tests::scratch_dir("ops-backlog");
    let out = dir.join("out.jsonl");
    let port = free_port();
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "{}include = ['opsbig\\..*']\n[sink]\nkind = \"file\"\npath = \"{}\"\ndefault_topic = \"big\"\n\
             [checkpoint]\npath = \"{}\"\n[admin]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"SLUICE_OPS_TOKEN\"\n",
            source_toml(&srv, 4_400_002),
            out.display(),
            dir.join("cp").display(),
        ),
    )
    .expect("config");
    let mut agent = Agent::start(
        &config,
        &dir.join("agent.log"),
        &[
            ("SLUICE_E2E_PASSWORD", &srv.repl.1),
            ("SLUICE_OPS_TOKEN", TOKEN),
        ],
    );
    agent.wait_log("Replicating.", 1, Duration::from_secs(60));
    let (code, _, stderr) = ctl(port, &["pause"]);
    assert_eq!(code, 0, "{stderr}");
    // 280 rows of 512 KiB: 140 MiB of binlog. A paused agent stops taking changes, but
    // its stream still reads ahead (at most 32 MiB of rows, and socket buffers); well over
    // 64 MiB stays on the server.
    for i in 0..280 {
        exec(
            &mut db,
            &format!("INSERT INTO opsbig.t VALUES ({i}, REPEAT('x', 524288))"),
        )
        .await;
    }
    agent.wait_log("Catching up.", 1, Duration::from_secs(30));
    let (code, stdout, stderr) = ctl(port, &["status", "--interval", "0.5"]);
    assert_eq!(code, 1, "paused is not ready: {stdout}{stderr}");
    assert!(stdout.contains("catch-up   not moving"), "{stdout}");
    assert!(stdout.contains("PAUSED"), "{stdout}");
    let (code, _, stderr) = ctl(port, &["resume"]);
    assert_eq!(code, 0, "{stderr}");
    agent.wait_log(
        "Caught up with the server's binary logs.",
        1,
        Duration::from_secs(60),
    );
    let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
    assert!(log.contains("behind_bytes="), "{log}");
    let rows = || -> usize {
        read_file_sink(&out)
            .iter()
            .map(|m| m.value["data"].as_array().map_or(0, Vec::len))
            .sum()
    };
    wait_for("every row of the backlog", Duration::from_secs(60), || {
        rows() >= 280
    });
    assert_eq!(rows(), 280);
    assert_eq!(agent.terminate(Duration::from_secs(30)), Some(0));
    std::fs::remove_dir_all(&dir).ok();
}
