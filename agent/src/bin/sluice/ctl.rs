//! `sluice ctl`: drives a running agent through its admin API. Answers print as text
//! for people (positions, lag, rates, an ETA) or, with `--json`, as the API's JSON.
//!
//! Invariant: the token goes only into the `Authorization` header, never into output
//! or errors; a non-2xx answer is an error (exit 1) carrying the agent's message.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::Value;

use sluice::human::{bytes, count, duration};

use super::{CtlArgs, CtlCmd};

/// One admin API endpoint's client.
struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    fn new(args: &CtlArgs) -> anyhow::Result<Self> {
        let token = match &args.token_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("reading token file {}", p.display()))?
                    .trim()
                    .to_string(),
            ),
            None => std::env::var(&args.token_env).ok(),
        };
        Ok(Client {
            base: args.admin.trim_end_matches('/').to_string(),
            token,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(90)))
                .build()
                .new_agent(),
        })
    }

    /// (status, body) of one request.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<(u16, String)> {
        let url = format!("{}{path}", self.base);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let resp = match body {
            Some((ctype, bytes)) => self.agent.run(
                req.header("Content-Type", ctype)
                    .body(bytes)
                    .context("building the request")?,
            ),
            None => self
                .agent
                .run(req.body(()).context("building the request")?),
        }
        .with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .read_to_string()
            .with_context(|| format!("reading the answer to {method} {url}"))?;
        Ok((status, text))
    }

    /// The JSON answer of a GET that must succeed.
    fn get(&self, path: &str) -> anyhow::Result<Value> {
        let (status, text) = self.call("GET", path, None)?;
        ok(status, &text)?;
        serde_json::from_str(&text).with_context(|| format!("the answer to GET {path}"))
    }
}

/// An error carrying the agent's message unless `status` is 2xx.
fn ok(status: u16, text: &str) -> anyhow::Result<()> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let msg = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| text.trim_end().to_string());
    anyhow::bail!("the agent answered {status}: {msg}")
}

pub(crate) fn ctl(args: CtlArgs) -> anyhow::Result<()> {
    let client = Client::new(&args)?;
    let json = args.json;
    // Commands whose answer is one JSON object: printed raw with --json, else `text`.
    let answer = |(status, body): (u16, String), text: &dyn Fn(&Value) -> String| {
        if json {
            println!("{}", body.trim_end());
        } else if (200..300).contains(&status) {
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            print!("{}", text(&v));
        }
        ok(status, &body)
    };
    match args.cmd {
        CtlCmd::Status { watch, interval } => {
            let interval = Duration::from_secs_f64(interval.clamp(0.1, 3600.0));
            if json {
                let (code, ready) = client.call("GET", "/readyz", None)?;
                println!("{}", ready.trim_end());
                let (status, body) = client.call("GET", "/v1/checkpoint", None)?;
                println!("{}", body.trim_end());
                ok(status, &body)?;
                if code != 200 {
                    anyhow::bail!("the agent is not ready");
                }
                return Ok(());
            }
            status(&client, watch, interval)
        }
        CtlCmd::Modules => {
            let (status, body) = client.call("GET", "/v1/modules", None)?;
            answer((status, body), &|v| {
                let mut out = String::new();
                for m in v["modules"].as_array().into_iter().flatten() {
                    module_lines(&mut out, m);
                }
                if out.is_empty() {
                    out.push_str("no modules configured\n");
                }
                out
            })
        }
        CtlCmd::Load {
            name,
            file,
            by_path,
        } => load(&client, json, &name, &file, by_path),
        CtlCmd::Promote { name } => answer(
            client.call("POST", &format!("/v1/modules/{name}/promote"), None)?,
            &|v| {
                format!(
                    "module {name}: version {} swaps in at the next transaction boundary\n",
                    short(v["version"].as_str().unwrap_or(""))
                )
            },
        ),
        CtlCmd::Rollback { name } => answer(
            client.call("POST", &format!("/v1/modules/{name}/rollback"), None)?,
            &|v| {
                format!(
                    "module {name}: back to version {} at the next transaction boundary\n",
                    short(v["version"].as_str().unwrap_or(""))
                )
            },
        ),
        CtlCmd::Pause => answer(client.call("POST", "/v1/pause", None)?, &|_| {
            "paused: nothing more is read; in-flight messages still drain and checkpoint\n".into()
        }),
        CtlCmd::Resume => answer(client.call("POST", "/v1/resume", None)?, &|_| {
            "resumed\n".into()
        }),
        CtlCmd::Checkpoint => answer(client.call("GET", "/v1/checkpoint", None)?, &|v| {
            let mut out = String::new();
            checkpoint_lines(&mut out, v);
            out
        }),
        CtlCmd::Publisher => answer(client.call("GET", "/v1/publisher", None)?, &|v| {
            publisher_lines(&v["publisher"])
        }),
        CtlCmd::CreateTopic { name, partitions } => {
            let body = serde_json::json!({ "name": name, "partitions": partitions }).to_string();
            answer(
                client.call(
                    "POST",
                    "/v1/topics",
                    Some(("application/json", body.into_bytes())),
                )?,
                &|v| match v["partitions"].as_i64() {
                    Some(p) => format!("created topic {name} ({p} partitions)\n"),
                    None => format!("created topic {name}\n"),
                },
            )
        }
        CtlCmd::Metrics => {
            let (status, body) = client.call("GET", "/metrics", None)?;
            println!("{}", body.trim_end());
            ok(status, &body)
        }
    }
}

/// `ctl load`: upload (or name) a candidate and wait for its canary.
fn load(
    client: &Client,
    json: bool,
    name: &str,
    file: &std::path::Path,
    by_path: bool,
) -> anyhow::Result<()> {
    let body = if by_path {
        let abs =
            std::fs::canonicalize(file).with_context(|| format!("resolving {}", file.display()))?;
        (
            "application/json",
            serde_json::json!({ "path": abs }).to_string().into_bytes(),
        )
    } else {
        ("application/wasm", sluice::router::builtin::read(file)?)
    };
    let (status, text) =
        client.call("POST", &format!("/v1/modules/{name}/candidate"), Some(body))?;
    if status != 202 {
        if json {
            println!("{}", text.trim_end());
        }
        return ok(status, &text);
    }
    let version = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["version"].as_str().map(str::to_string))
        .unwrap_or_default();
    eprintln!(
        "candidate {} loaded; waiting for its canary",
        short(&version)
    );
    // The canary runs in the agent; its outcome shows in the module's status.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (s, t) = client.call("GET", &format!("/v1/modules/{name}"), None)?;
        let v: Value = serde_json::from_str(&t).unwrap_or_default();
        let cand = &v["candidate"];
        if s == 200 && cand["version"].as_str() == Some(version.as_str()) {
            match cand["state"].as_str() {
                Some("ready") => {
                    if json {
                        println!("{cand}");
                    } else {
                        println!("module {name}: candidate {} ready", short(&version));
                    }
                    match cand["canary_rows"].as_u64() {
                        Some(0) => eprintln!(
                            "canary ran on 0 rows: the agent has seen no recent change \
                             this module subscribes to, so only compiling, instantiating \
                             and configuring were tried; try it with `sluice module test` \
                             on real events before `sluice ctl promote {name}`"
                        ),
                        Some(n) => eprintln!(
                            "canary passed on {n} recent rows; promote with \
                             `sluice ctl promote {name}`"
                        ),
                        None => {
                            eprintln!("canary passed; promote with `sluice ctl promote {name}`")
                        }
                    }
                    return Ok(());
                }
                Some("rejected") => {
                    if json {
                        println!("{cand}");
                    }
                    anyhow::bail!(
                        "candidate rejected: {}",
                        cand["reason"].as_str().unwrap_or("")
                    );
                }
                _ => {}
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("no canary result after 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What `ctl status` reads once: readiness, positions, modules and the metrics it
/// takes rates from.
struct Sample {
    ready: Value,
    ready_ok: bool,
    checkpoint: Value,
    modules: Value,
    metrics: BTreeMap<String, f64>,
    at: Instant,
}

fn sample(client: &Client) -> anyhow::Result<Sample> {
    let (code, ready) = client.call("GET", "/readyz", None)?;
    let checkpoint = client.get("/v1/checkpoint")?;
    let modules = client.get("/v1/modules")?;
    let (status, text) = client.call("GET", "/metrics", None)?;
    ok(status, &text)?;
    Ok(Sample {
        ready: serde_json::from_str(&ready).unwrap_or(Value::Null),
        ready_ok: code == 200,
        checkpoint,
        modules,
        metrics: totals(&text),
        at: Instant::now(),
    })
}

/// `ctl status`: two samples `interval` apart for the rates; with `watch`, again and
/// again (cleared in place on a terminal).
fn status(client: &Client, watch: bool, interval: Duration) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let terminal = std::io::stdout().is_terminal();
    let mut before = sample(client)?;
    loop {
        std::thread::sleep(interval);
        let now = sample(client)?;
        let text = render_status(&client.base, &before, &now);
        if watch && terminal {
            // Home and clear: the display updates in place.
            print!("\x1b[H\x1b[2J{text}");
        } else {
            print!("{text}");
        }
        if !watch {
            if !now.ready_ok {
                anyhow::bail!("the agent is not ready");
            }
            return Ok(());
        }
        println!();
        before = now;
    }
}

/// The status text from two samples.
fn render_status(base: &str, a: &Sample, b: &Sample) -> String {
    let mut out = String::new();
    let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
    let rate = |name: &str| {
        let d = b.metrics.get(name).copied().unwrap_or(0.0)
            - a.metrics.get(name).copied().unwrap_or(0.0);
        (d / secs).max(0.0)
    };
    if b.ready_ok {
        let _ = writeln!(out, "agent      {base}: ready");
    } else {
        let reasons: Vec<&str> = b.ready["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let _ = writeln!(out, "agent      {base}: NOT READY: {}", reasons.join("; "));
    }
    checkpoint_lines(&mut out, &b.checkpoint);
    let lag_s = b.metrics.get("sluice_source_lag_seconds").copied();
    let lag_b = b.metrics.get("sluice_source_lag_bytes").copied();
    let _ = writeln!(
        out,
        "lag        {} behind the server, {} of binlog not yet read",
        lag_s.map_or("?".into(), |s| format!("{s:.1} s")),
        lag_b.map_or("?".into(), |b| bytes(b as u64)),
    );
    let rows = rate("sluice_rows_total");
    let row_bytes = rate("sluice_row_bytes_total");
    let binlog = rate("sluice_source_bytes_total");
    let _ = writeln!(
        out,
        "rates      {} rows/s ({}/s of rows, {}/s of binlog), {} messages/s acknowledged (over {secs:.1} s)",
        count(rows as u64),
        bytes(row_bytes as u64),
        bytes(binlog as u64),
        count(rate("sluice_messages_acked_total") as u64),
    );
    let _ = writeln!(
        out,
        "totals     {} rows ({}), {} transactions since the agent started",
        count(b.metrics.get("sluice_rows_total").copied().unwrap_or(0.0) as u64),
        bytes(
            b.metrics
                .get("sluice_row_bytes_total")
                .copied()
                .unwrap_or(0.0) as u64
        ),
        count(
            b.metrics
                .get("sluice_transactions_total")
                .copied()
                .unwrap_or(0.0) as u64
        ),
    );
    // Below a MiB the probe's last reading is noise next to a live binlog: only a real
    // backlog gets a catch-up line.
    const BACKLOG: f64 = 1024.0 * 1024.0;
    match (lag_b, binlog) {
        (Some(left), r) if left >= BACKLOG && r > 0.0 => {
            let _ = writeln!(
                out,
                "catch-up   ETA {} at {}/s of binlog",
                duration(left / r),
                bytes(r as u64)
            );
        }
        (Some(left), _) if left >= BACKLOG => {
            let _ = writeln!(out, "catch-up   not moving ({} left)", bytes(left as u64));
        }
        _ => {}
    }
    for m in b.modules["modules"].as_array().into_iter().flatten() {
        module_lines(&mut out, m);
    }
    out
}

/// Position lines of a `/v1/checkpoint` answer.
fn checkpoint_lines(out: &mut String, v: &Value) {
    let pos = |p: &Value| match p["file"].as_str() {
        Some(f) => {
            let gtid = p["gtid"].as_str().filter(|g| !g.is_empty());
            match gtid {
                Some(g) => format!("{f}:{} (gtid {g})", p["position"]),
                None => format!("{f}:{}", p["position"]),
            }
        }
        None => "none yet".into(),
    };
    let _ = writeln!(out, "read       {}", pos(&v["read"]));
    let age = v["checkpoint_age_ms"].as_u64().unwrap_or(0);
    let _ = writeln!(
        out,
        "checkpoint {}{}",
        pos(&v["checkpoint"]),
        if v["behind"].as_bool() == Some(true) {
            format!(
                ", work pending, last moved {} ago",
                duration(age as f64 / 1000.0)
            )
        } else {
            ", caught up with what was read".into()
        }
    );
    let _ = writeln!(
        out,
        "messages   {} in flight, {} acknowledged{}",
        count(v["in_flight"].as_u64().unwrap_or(0)),
        count(v["acknowledged"].as_u64().unwrap_or(0)),
        if v["paused"].as_bool() == Some(true) {
            "; PAUSED (sluice ctl resume)"
        } else {
            ""
        }
    );
}

/// One module's line (and its quarantine or failure, when there is one).
fn module_lines(out: &mut String, m: &Value) {
    let c = &m["counters"];
    let failures: u64 = c["failures"]
        .as_object()
        .map(|f| f.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "module     {} {}: {} events, {} routed, {} dropped, {} failed, {} skipped, {} dead-lettered",
        m["name"].as_str().unwrap_or("?"),
        short(m["version"].as_str().unwrap_or("")),
        count(c["events"].as_u64().unwrap_or(0)),
        count(c["routed"].as_u64().unwrap_or(0)),
        count(c["dropped"].as_u64().unwrap_or(0)),
        count(failures),
        count(c["skipped"].as_u64().unwrap_or(0)),
        count(c["dead_lettered"].as_u64().unwrap_or(0)),
    );
    if let Some(q) = m["quarantined"].as_object() {
        let _ = writeln!(
            out,
            "           QUARANTINED ({} trips): {}",
            q.get("trips").and_then(Value::as_u64).unwrap_or(0),
            q.get("reason").and_then(Value::as_str).unwrap_or("")
        );
    }
    if let Some(f) = m["failed"].as_str() {
        let _ = writeln!(out, "           FAILED TO LOAD: {f}");
    }
    let cand = &m["candidate"];
    match cand["state"].as_str() {
        None | Some("none") => {}
        Some(state) => {
            let _ = writeln!(
                out,
                "           candidate {}: {state}{}",
                short(cand["version"].as_str().unwrap_or("")),
                cand["reason"]
                    .as_str()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
        }
    }
}

/// The publisher's report (the Canal server's destinations), or that it has none.
fn publisher_lines(p: &Value) -> String {
    let mut out = String::new();
    let Some(ds) = p["destinations"].as_array() else {
        return match p {
            Value::Null => "the publisher reports nothing of its own\n".into(),
            other => format!("{other}\n"),
        };
    };
    for d in ds {
        let client = match d["client"].as_object() {
            Some(c) => format!(
                "client {} ({})",
                c.get("peer").and_then(Value::as_str).unwrap_or("?"),
                c.get("client_id").map(plain).unwrap_or_default()
            ),
            None => "no client".into(),
        };
        let cursor = match d["cursor"].as_object() {
            Some(c) => format!(
                "acknowledged up to binlog file #{} offset {}",
                c.get("file_number").cloned().unwrap_or(Value::Null),
                c.get("offset").cloned().unwrap_or(Value::Null)
            ),
            None => "nothing acknowledged yet".into(),
        };
        let _ = writeln!(
            out,
            "destination {}: {client}, {cursor}, {} pending entries, {} outstanding batches",
            d["destination"].as_str().unwrap_or("?"),
            count(d["pending_entries"].as_u64().unwrap_or(0)),
            count(d["outstanding_batches"].as_u64().unwrap_or(0)),
        );
    }
    out
}

/// Each metric's value summed over its label sets, from Prometheus' text format.
fn totals(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name_labels, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let name = name_labels.split('{').next().unwrap_or(name_labels);
        if let Ok(v) = value.parse::<f64>() {
            *out.entry(name.to_string()).or_insert(0.0) += v;
        }
    }
    out
}

/// A JSON value as text: strings without their quotes.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_totals_sum_label_sets() {
        let text = "# HELP sluice_rows Row changes\n# TYPE sluice_rows counter\n\
                    sluice_rows_total{table=\"a.t\",kind=\"insert\"} 10\n\
                    sluice_rows_total{table=\"a.u\",kind=\"update\"} 5\n\
                    sluice_source_lag_bytes 2048\nsluice_source_lag_seconds 0.5\n";
        let t = totals(text);
        assert_eq!(t.get("sluice_rows_total"), Some(&15.0));
        assert_eq!(t.get("sluice_source_lag_bytes"), Some(&2048.0));
        assert_eq!(t.get("sluice_source_lag_seconds"), Some(&0.5));
    }

    #[test]
    fn status_shows_rates_lag_and_eta() {
        const MIB: f64 = 1024.0 * 1024.0;
        let t0 = Instant::now();
        let metrics = |rows: f64, binlog: f64, lag: f64| {
            BTreeMap::from([
                ("sluice_rows_total".to_string(), rows),
                ("sluice_source_bytes_total".to_string(), binlog),
                ("sluice_source_lag_bytes".to_string(), lag),
                ("sluice_source_lag_seconds".to_string(), 12.0),
            ])
        };
        let cp = serde_json::json!({
            "read": {"file": "bin.000002", "position": 900, "gtid": ""},
            "checkpoint": {"file": "bin.000002", "position": 800, "gtid": "0-1-5"},
            "checkpoint_age_ms": 1500, "behind": true, "in_flight": 3, "acknowledged": 12345,
            "paused": false,
        });
        let sample = |metrics, at| Sample {
            ready: serde_json::json!({"ready": true}),
            ready_ok: true,
            checkpoint: cp.clone(),
            modules: serde_json::json!({"modules": []}),
            metrics,
            at,
        };
        let a = sample(metrics(0.0, 0.0, 10.0 * MIB), t0);
        let b = sample(metrics(5000.0, MIB, 9.0 * MIB), t0 + Duration::from_secs(2));
        let text = render_status("http://x", &a, &b);
        assert!(text.contains("2,500 rows/s"), "{text}");
        assert!(text.contains("512.0 KiB/s of binlog"), "{text}");
        assert!(text.contains("12.0 s behind"), "{text}");
        assert!(text.contains("9.0 MiB of binlog not yet read"), "{text}");
        // 9 MiB left at 0.5 MiB/s.
        assert!(text.contains("ETA 18.0 s"), "{text}");
        assert!(
            text.contains("checkpoint bin.000002:800 (gtid 0-1-5)"),
            "{text}"
        );
        assert!(text.contains("12,345 acknowledged"), "{text}");
    }
}
