//! `sluice ctl`: drives a running agent through its admin API.
//!
//! Invariant: the token goes only into the `Authorization` header, never into output
//! or errors; a non-2xx answer is an error (exit 1) carrying the agent's message.

use anyhow::Context as _;

use super::{CtlArgs, CtlCmd};

/// `sluice ctl`: one request to the admin API, the answer printed as JSON.
pub(crate) fn ctl(args: CtlArgs) -> anyhow::Result<()> {
    let token = match &args.token_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading token file {}", p.display()))?
                .trim()
                .to_string(),
        ),
        None => std::env::var(&args.token_env).ok(),
    };
    let base = args.admin.trim_end_matches('/').to_string();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(90)))
        .build()
        .new_agent();
    let call = |method: &str,
                path: &str,
                body: Option<(&str, Vec<u8>)>|
     -> anyhow::Result<(u16, String)> {
        let url = format!("{base}{path}");
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = &token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let resp = match body {
            Some((ctype, bytes)) => agent.run(
                req.header("Content-Type", ctype)
                    .body(bytes)
                    .context("building the request")?,
            ),
            None => agent.run(req.body(()).context("building the request")?),
        }
        .with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .read_to_string()
            .with_context(|| format!("reading the answer to {method} {url}"))?;
        Ok((status, text))
    };
    let print = |(status, text): (u16, String)| -> anyhow::Result<()> {
        println!("{}", text.trim_end());
        if (200..300).contains(&status) {
            Ok(())
        } else {
            let msg = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or(text);
            anyhow::bail!("the agent answered {status}: {msg}")
        }
    };
    match args.cmd {
        CtlCmd::Status => {
            let (code, ready) = call("GET", "/readyz", None)?;
            println!("{}", ready.trim_end());
            print(call("GET", "/v1/checkpoint", None)?)?;
            if code != 200 {
                anyhow::bail!("the agent is not ready");
            }
            Ok(())
        }
        CtlCmd::Modules => print(call("GET", "/v1/modules", None)?),
        CtlCmd::Load {
            name,
            file,
            by_path,
        } => {
            let body = if by_path {
                let abs = std::fs::canonicalize(&file)
                    .with_context(|| format!("resolving {}", file.display()))?;
                (
                    "application/json",
                    serde_json::json!({ "path": abs }).to_string().into_bytes(),
                )
            } else {
                ("application/wasm", sluice::router::builtin::read(&file)?)
            };
            let (status, text) =
                call("POST", &format!("/v1/modules/{name}/candidate"), Some(body))?;
            if status != 202 {
                return print((status, text));
            }
            let version = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    v.get("version")
                        .and_then(|x| x.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_default();
            eprintln!(
                "candidate {} loaded; waiting for its canary",
                &version[..12.min(version.len())]
            );
            // The canary runs in the agent; its outcome shows in the module's status.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            loop {
                let (s, t) = call("GET", &format!("/v1/modules/{name}"), None)?;
                let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                let cand = &v["candidate"];
                if s == 200 && cand["version"].as_str() == Some(version.as_str()) {
                    match cand["state"].as_str() {
                        Some("ready") => {
                            println!("{}", cand);
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
                                None => eprintln!(
                                    "canary passed; promote with `sluice ctl promote {name}`"
                                ),
                            }
                            return Ok(());
                        }
                        Some("rejected") => {
                            println!("{}", cand);
                            anyhow::bail!(
                                "candidate rejected: {}",
                                cand["reason"].as_str().unwrap_or("")
                            );
                        }
                        _ => {}
                    }
                }
                if std::time::Instant::now() > deadline {
                    anyhow::bail!("no canary result after 120 s");
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
        CtlCmd::Promote { name } => {
            print(call("POST", &format!("/v1/modules/{name}/promote"), None)?)
        }
        CtlCmd::Rollback { name } => {
            print(call("POST", &format!("/v1/modules/{name}/rollback"), None)?)
        }
        CtlCmd::Pause => print(call("POST", "/v1/pause", None)?),
        CtlCmd::Resume => print(call("POST", "/v1/resume", None)?),
        CtlCmd::Checkpoint => print(call("GET", "/v1/checkpoint", None)?),
        CtlCmd::Publisher => print(call("GET", "/v1/publisher", None)?),
        CtlCmd::CreateTopic { name, partitions } => {
            let body = serde_json::json!({ "name": name, "partitions": partitions }).to_string();
            print(call(
                "POST",
                "/v1/topics",
                Some(("application/json", body.into_bytes())),
            )?)
        }
        CtlCmd::Metrics => print(call("GET", "/metrics", None)?),
    }
}
