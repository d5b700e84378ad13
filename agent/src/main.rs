//! The `sluice` command line: parse arguments, run one subcommand, print errors with their
//! causes and exit with a documented code.
//!
//! Exit codes: 0 success (for `run`: a clean stop, everything acknowledged is
//! checkpointed), 1 runtime failure (bad input or config, lost connection, a module that
//! halts, the sink failing past its restarts), 2 usage error, 130 a second SIGTERM/SIGINT
//! during the drain (stops at once; the checkpoint is still a safe one).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use sluice::binlog::file::{ReadError, read_file};
use sluice::binlog::{Decoder, DecoderOptions};
use sluice::event::SourceItem;
use sluice::format::{Format, canal, debezium};

#[derive(Parser)]
#[command(
    name = "sluice",
    version = concat!(
        env!("CARGO_PKG_VERSION"),
        " (commit ",
        env!("SLUICE_BUILD_COMMIT"),
        ", modules: WIT ",
        env!("SLUICE_WIT_PACKAGE"),
        ")"
    ),
    about = "MySQL/MariaDB change-data-capture edge agent"
)]
struct Cli {
    /// Log format on stderr: `text` (for people) or `json` (one object per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SLUICE_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Decode binlog files offline and print one JSON object per change.
    Replay {
        /// Binlog files, in order (`.gz` accepted).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Canal)]
        format: Format,
        /// UTC offset in which TIMESTAMP values print, e.g. `+08:00`.
        #[arg(long, default_value = "+00:00", value_parser = parse_offset)]
        tz: i32,
    },
    /// Replicate from a live server and print one JSON object per change.
    Tail(TailArgs),
    /// Run the agent: replicate, route through modules, publish, checkpoint.
    Run {
        /// Configuration file.
        #[arg(short, long, default_value = "sluice.toml")]
        config: PathBuf,
    },
    /// Validate the configuration, server settings, modules and topics without publishing.
    Check {
        /// Configuration file.
        #[arg(short, long, default_value = "sluice.toml")]
        config: PathBuf,
    },
    /// Create every topic the configuration and its modules declare, without a
    /// running agent (idempotent: a topic that exists is left as it is).
    Topics {
        #[command(subcommand)]
        cmd: TopicsCmd,
    },
    /// Tools for moving from Canal.
    Canal {
        #[command(subcommand)]
        cmd: CanalCmd,
    },
    /// Build, inspect and try routing modules.
    Module {
        #[command(subcommand)]
        cmd: ModuleCmd,
    },
    /// Drive a running agent through its admin API.
    Ctl(CtlArgs),
}

#[derive(clap::Args)]
struct CtlArgs {
    /// Admin API address (`http://HOST:PORT`); accepted before or after the subcommand.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:9180",
        env = "SLUICE_ADMIN"
    )]
    admin: String,
    /// Environment variable holding the bearer token.
    #[arg(long, global = true, default_value = "SLUICE_ADMIN_TOKEN")]
    token_env: String,
    /// File holding the bearer token (overrides --token-env).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    #[command(subcommand)]
    cmd: CtlCmd,
}

#[derive(Subcommand)]
enum CtlCmd {
    /// Readiness and the checkpoint.
    Status,
    /// Modules with versions, candidates and counters.
    Modules,
    /// Load a candidate version of module NAME from FILE (uploaded) and wait for its canary.
    Load {
        /// Module name.
        name: String,
        /// Component file.
        file: PathBuf,
        /// Send the path for the agent to read instead of uploading the file.
        #[arg(long)]
        by_path: bool,
    },
    /// Swap in module NAME's candidate that passed its canary.
    Promote {
        /// Module name.
        name: String,
    },
    /// Swap module NAME back to its previous version.
    Rollback {
        /// Module name.
        name: String,
    },
    /// Stop reading from the source (in-flight messages still drain and checkpoint).
    Pause,
    /// Resume reading.
    Resume,
    /// The checkpoint, the read position and in-flight counts.
    Checkpoint,
    /// What the publisher reports (the Canal server: destinations, clients, cursors).
    Publisher,
    /// Create a topic (Kafka sink).
    CreateTopic {
        /// Topic name.
        name: String,
        /// Partitions (default: the agent's `admin.topic_partitions`).
        #[arg(long)]
        partitions: Option<i32>,
    },
    /// Print the Prometheus metrics.
    Metrics,
}

/// `sluice canal`.
#[derive(Subcommand)]
enum CanalCmd {
    /// Print a Sluice configuration made from a Canal instance's `instance.properties`
    /// (and the server's `canal.properties`); what is not carried over is listed, with
    /// the reason, on stderr and in the output's header.
    Import {
        /// The instance's `instance.properties`.
        instance: PathBuf,
        /// The server's `canal.properties` (server mode, MQ and filter settings).
        canal: Option<PathBuf>,
        /// The instance's name (default: the directory holding instance.properties).
        #[arg(long)]
        destination: Option<String>,
        /// The canal-compat module the configuration loads (default: the one built into
        /// this binary).
        #[arg(long, default_value = "builtin:canal-compat")]
        module: String,
        /// The checkpoint file the configuration names.
        #[arg(long, default_value = "sluice.checkpoint")]
        checkpoint: String,
    },
}

/// `sluice topics`.
#[derive(Subcommand)]
enum TopicsCmd {
    /// Create the topics `sluice check` would find missing.
    Create {
        /// Configuration file.
        #[arg(short, long, default_value = "sluice.toml")]
        config: PathBuf,
        /// Partitions (queues) of each topic created (default: `admin.topic_partitions`,
        /// else 1).
        #[arg(long)]
        partitions: Option<i32>,
        /// Replication factor (default: `admin.topic_replication`, else 1).
        #[arg(long)]
        replication: Option<i32>,
    },
}

#[derive(Subcommand)]
enum ModuleCmd {
    /// Write a module built into this binary (`builtin:NAME` in a config) to a file.
    Export {
        /// canal-compat, tags or table-filter (`sluice module export --list`).
        name: Option<String>,
        /// Where to write it (default `NAME.wasm`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// List the builtin modules.
        #[arg(long)]
        list: bool,
    },
    /// Build the module crate in DIR for wasm32-unknown-unknown and make it a component.
    Build {
        /// Crate directory.
        dir: PathBuf,
        /// Where to write `<crate>.wasm`.
        #[arg(long, default_value = "target/modules")]
        out: PathBuf,
        /// Cargo profile.
        #[arg(long, default_value = "release")]
        profile: String,
    },
    /// Check a component: imports, exports, version, and (with --config) its subscription.
    Check {
        /// Component file.
        file: PathBuf,
        /// Module config (TOML).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Route events through a module and print its decisions as JSON lines.
    Test {
        /// Component file.
        file: PathBuf,
        /// Module config (TOML).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Events: binlog files or Canal FlatMessage JSON lines.
        #[arg(long, required = true, num_args = 1..)]
        events: Vec<PathBuf>,
        /// Events per call.
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
    /// Compare two modules' decisions on the same events (exit 1 if any differ).
    Diff {
        /// Serving version.
        old: PathBuf,
        /// Candidate version.
        new: PathBuf,
        /// Module config (TOML) used by both.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The candidate's own config (TOML), when it differs from the serving one's.
        #[arg(long)]
        new_config: Option<PathBuf>,
        /// Events: binlog files or Canal FlatMessage JSON lines.
        #[arg(long, required = true, num_args = 1..)]
        events: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
struct TailArgs {
    /// Server host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(long, default_value_t = 3306)]
    port: u16,
    /// Replication user.
    #[arg(long, default_value = "sluice")]
    user: String,
    /// Environment variable holding the password.
    #[arg(long, default_value = "SLUICE_MYSQL_PASSWORD")]
    password_env: String,
    /// File holding the password (overrides --password-env).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Replica server id, unique among the server's replicas.
    #[arg(long, default_value_t = 1_000_001)]
    server_id: u32,
    /// Start position: latest, earliest, FILE:POS or gtid:SET.
    #[arg(long, default_value = "latest")]
    start: sluice::source::StartPosition,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Canal)]
    format: Format,
    /// UTC offset in which TIMESTAMP values print.
    #[arg(long, default_value = "+00:00", value_parser = parse_offset)]
    tz: i32,
    /// Stop after this many changes (0: run until interrupted).
    #[arg(long, default_value_t = 0)]
    limit: u64,
}

fn parse_offset(s: &str) -> Result<i32, String> {
    sluice::binlog::temporal::parse_utc_offset(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Client libraries' own logs, unless RUST_LOG names them: lapin logs every returned
    // (unroutable) message whole, payload included, at warn, and the RocketMQ client
    // logs its connection life at info and its shutdown at warn. Sluice reports what
    // matters of both itself (the module's policy, retries, outages), so theirs are
    // kept to errors.
    let mut filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    for quiet in [
        "lapin::returned_messages",
        "rocketmq_client_rust",
        "rocketmq_transport",
        "rocketmq_runtime",
        "rocketmq_remoting",
    ] {
        let crate_name = quiet.split("::").next().unwrap_or(quiet);
        if !filter.contains(crate_name) {
            filter.push_str(&format!(",{quiet}=error"));
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = cli.log_format == LogFormat::Json;
    if json {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        // Colours only on a terminal: a log file or journal gets plain text.
        use std::io::IsTerminal;
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                tracing::error!(message = "Stopped with an error.", error = %sluice::describe(&e));
            } else {
                eprintln!("sluice: {}", sluice::describe(&e));
            }
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Replay { files, format, tz } => replay(&files, format, tz),
        Command::Module { cmd } => module_cmd(cmd),
        Command::Run { config } => {
            let cfg = sluice::config::Config::load(&config)?;
            let rt = runtime()?;
            rt.block_on(agent(cfg))
        }
        Command::Ctl(args) => ctl(args),
        Command::Check { config } => {
            let cfg = sluice::config::Config::load(&config)?;
            let rt = runtime()?;
            rt.block_on(check(cfg))
        }
        Command::Canal {
            cmd:
                CanalCmd::Import {
                    instance,
                    canal,
                    destination,
                    module,
                    checkpoint,
                },
        } => canal_import(&instance, canal.as_deref(), destination, module, checkpoint),
        Command::Topics {
            cmd:
                TopicsCmd::Create {
                    config,
                    partitions,
                    replication,
                },
        } => {
            let cfg = sluice::config::Config::load(&config)?;
            let rt = runtime()?;
            rt.block_on(create_topics(cfg, partitions, replication))
        }
        Command::Tail(args) => {
            let rt = runtime()?;
            rt.block_on(tail(args))
        }
    }
}

/// `sluice run`: the admin API and the pipeline, stopped by a signal.
async fn agent(cfg: sluice::config::Config) -> anyhow::Result<()> {
    use std::sync::Arc;
    // Secrets in the config print as `***` (see `sluice::secret`).
    tracing::debug!(message = "Configuration loaded.", config = ?cfg);
    // Before anything listens or connects: a second agent on this checkpoint must stop
    // here, not after its replica connection has displaced the first one's.
    let _lock = sluice::checkpoint::Lock::acquire(&cfg.checkpoint)?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let control = Arc::new(sluice::control::Control::new(cfg.stall_after));
    let admin = match &cfg.admin {
        Some(a) => Some(sluice::admin::serve(a, control.clone(), cancel.child_token()).await?),
        None => None,
    };
    let stop = cancel.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!(
            message = "Shutting down: draining in-flight messages (a second signal stops at once).",
            drain_timeout_s = sluice::pipeline::DRAIN_TIMEOUT.as_secs(),
        );
        stop.cancel();
        shutdown_signal().await;
        tracing::warn!(
            message = "Second signal: stopping without draining; the checkpoint file holds the last acknowledged position."
        );
        std::process::exit(130);
    });
    let result = sluice::pipeline::run(cfg, cancel.clone(), control).await;
    cancel.cancel();
    if let Some(a) = admin {
        let _ = a.handle.await;
    }
    result.map(|_| ())
}

/// `sluice ctl`: one request to the admin API, the answer printed as JSON.
fn ctl(args: CtlArgs) -> anyhow::Result<()> {
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
                            eprintln!("canary passed; promote with `sluice ctl promote {name}`");
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

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `sluice check`: configuration, server, modules and topics, without publishing.
/// Every topic the configuration names and its modules declare (each module compiled
/// and configured, so a module that does not load is an error here); `each` hears of
/// every module loaded, with its version.
fn all_declared_topics(
    cfg: &sluice::config::Config,
    each: &mut dyn FnMut(&str, &str),
) -> anyhow::Result<Vec<String>> {
    let engine = sluice::router::RouterEngine::new(cfg.modules.len() as u32 + 2, None)?;
    let mut topics = cfg.declared_topics();
    for (spec, path) in &cfg.modules {
        let bytes = sluice::router::builtin::read(path)?;
        let (code, _) = engine.compile(&spec.name, &bytes)?;
        let m = sluice::router::ModuleInstance::new(
            &engine,
            code.clone(),
            std::sync::Arc::new(spec.clone()),
        )?;
        topics.extend(m.topics().iter().map(|t| t.to_string()));
        each(&spec.name, code.short_hash());
    }
    topics.sort();
    topics.dedup();
    Ok(topics)
}

/// `sluice canal import`.
fn canal_import(
    instance: &std::path::Path,
    canal: Option<&std::path::Path>,
    destination: Option<String>,
    module: String,
    checkpoint: String,
) -> anyhow::Result<()> {
    use sluice::migrate::{canal, properties};
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    // canal.properties first: the instance's settings override the server's.
    let mut props = match canal {
        Some(c) => properties::parse(&read(c)?),
        None => properties::Properties::new(),
    };
    props.extend(properties::parse(&read(instance)?));
    let destination = destination
        .or_else(|| {
            instance
                .canonicalize()
                .ok()?
                .parent()?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "example".into());
    let out = canal::convert(
        &props,
        &canal::Options {
            destination,
            module,
            checkpoint,
        },
    )?;
    print!("{}", out.toml);
    for (k, v, why) in &out.not_translated {
        eprintln!("not translated: {k} = {v}: {why}");
    }
    for (k, what) in &out.env {
        eprintln!("set {k}: {what}");
    }
    Ok(())
}

/// `sluice topics create`: every declared topic that does not exist, created through
/// the publisher's own admin client; no agent needs to run.
async fn create_topics(
    cfg: sluice::config::Config,
    partitions: Option<i32>,
    replication: Option<i32>,
) -> anyhow::Result<()> {
    let topics = all_declared_topics(&cfg, &mut |_, _| {})?;
    let partitions = partitions
        .or(cfg.admin.as_ref().map(|a| a.topic_partitions))
        .unwrap_or(1);
    let replication = replication
        .or(cfg.admin.as_ref().map(|a| a.topic_replication))
        .unwrap_or(1);
    anyhow::ensure!(partitions >= 1, "--partitions: must be at least 1");
    anyhow::ensure!(replication >= 1, "--replication: must be at least 1");
    let sink = sluice::sink::open(&cfg.sink)?;
    let kind = cfg.sink.publisher.kind();
    let mut failed = 0;
    for t in &topics {
        let Some(admin) = sink.topic_admin() else {
            println!("sink kind `{kind}` has no topics to create");
            return Ok(());
        };
        match admin.create(t.clone(), partitions, replication).await {
            Ok(()) => {
                println!("topic {t}: created ({partitions} partitions, replication {replication})")
            }
            Err(sluice::sink::SinkError::TopicExists(_)) => println!("topic {t}: exists"),
            Err(e) => {
                failed += 1;
                eprintln!("topic {t}: {e}");
            }
        }
    }
    if topics.is_empty() {
        println!("no topics declared (sink.default_topic, module subscriptions)");
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} topics could not be created",
        topics.len()
    );
    Ok(())
}

async fn check(cfg: sluice::config::Config) -> anyhow::Result<()> {
    println!("config: ok");
    // What the configuration names, and what the modules declare when configured.
    let topics = all_declared_topics(&cfg, &mut |name, version| {
        println!("module {name}: ok (version {version})");
    })?;
    let sink = sluice::sink::open(&cfg.sink)?;
    // The modules' topics too (`run` holds their messages until the topic exists;
    // `check` is where to hear of it first).
    sink.check_topics(&topics)?;
    for w in sink.warnings(&topics) {
        println!("warning: {w}");
    }
    println!("sink: ok");
    let src = sluice::source::BinlogSource::connect(
        cfg.source.clone(),
        sluice::checkpoint::load(&cfg.checkpoint)?,
    )
    .await
    .context("checking the source")?;
    println!("source: ok (would start at {})", src.checkpoint());
    Ok(())
}

fn module_spec(name: &str, config: &Option<PathBuf>) -> anyhow::Result<sluice::router::ModuleSpec> {
    let mut spec = sluice::router::ModuleSpec::new(name);
    if let Some(c) = config {
        let text =
            std::fs::read_to_string(c).with_context(|| format!("reading {}", c.display()))?;
        spec.config = sluice::router::tools::flatten_config(&text)
            .with_context(|| format!("in {}", c.display()))?;
    }
    Ok(spec)
}

fn module_name(p: &std::path::Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "module".into())
}

fn module_cmd(cmd: ModuleCmd) -> anyhow::Result<()> {
    use sluice::router::tools::{load_events, routes_json, run_module};
    use sluice::router::{ModuleInstance, RouterEngine};
    match cmd {
        ModuleCmd::Export { name, out, list } => {
            use sluice::router::builtin;
            if list || name.is_none() {
                for n in builtin::names() {
                    println!("{n}");
                }
                return Ok(());
            }
            let name = name.unwrap_or_default();
            let bytes =
                builtin::bytes(&name).ok_or_else(|| anyhow::anyhow!(builtin::unknown(&name)))?;
            let out = out.unwrap_or_else(|| PathBuf::from(format!("{name}.wasm")));
            std::fs::write(&out, bytes).with_context(|| format!("writing {}", out.display()))?;
            println!("{} ({} bytes)", out.display(), bytes.len());
            Ok(())
        }
        ModuleCmd::Build { dir, out, profile } => {
            let path = sluice::router::build::build_module(&dir, &out, &profile)?;
            let bytes = std::fs::read(&path)?;
            let engine = RouterEngine::new(2, None)?;
            let (code, _) = engine.compile(&module_name(&path), &bytes)?;
            println!(
                "{} ({} bytes, version {})",
                path.display(),
                bytes.len(),
                code.hash
            );
            Ok(())
        }
        ModuleCmd::Check { file, config } => {
            let bytes = sluice::router::builtin::read(&file)?;
            let engine = RouterEngine::new(2, None)?;
            let component = wasmtime_component_summary(&engine, &bytes)?;
            println!("{component}");
            let name = module_name(&file);
            let (code, _) = engine.compile(&name, &bytes)?;
            println!("version: {}", code.hash);
            if config.is_some() {
                let spec = module_spec(&name, &config)?;
                let m = ModuleInstance::new(&engine, code, std::sync::Arc::new(spec))?;
                println!("configured: ok");
                println!(
                    "subscription: {}",
                    serde_json::to_string_pretty(m.subscription()).unwrap_or_default()
                );
            }
            Ok(())
        }
        ModuleCmd::Test {
            file,
            config,
            events,
            batch,
        } => {
            let bytes = sluice::router::builtin::read(&file)?;
            let evs = load_events(&events)?;
            let engine = RouterEngine::new(2, None)?;
            let t = std::time::Instant::now();
            let (decided, code) = run_module(
                &engine,
                &bytes,
                module_spec(&module_name(&file), &config)?,
                &evs,
                batch,
            )?;
            let took = t.elapsed();
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let (mut routed, mut dropped, mut skipped) = (0, 0, 0);
            for d in &decided {
                let ev = &evs[d.event];
                match &d.routes {
                    None => skipped += 1,
                    Some(r) if r.is_empty() => dropped += 1,
                    Some(_) => routed += 1,
                }
                let line = serde_json::json!({
                    "at": ev.position.to_string(),
                    "row": d.row,
                    "table": ev.table.qualified_name(),
                    "kind": ev.kind.canal_name(),
                    "routes": routes_json(&d.routes),
                });
                writeln!(out, "{line}")?;
            }
            out.flush()?;
            eprintln!(
                "{} events: {routed} routed, {dropped} dropped, {skipped} not subscribed; version {}; {:.0} ns/event including compile",
                decided.len(),
                code.short_hash(),
                took.as_nanos() as f64 / decided.len().max(1) as f64
            );
            Ok(())
        }
        ModuleCmd::Diff {
            old,
            new,
            config,
            new_config,
            events,
        } => {
            let evs = load_events(&events)?;
            let engine = RouterEngine::new(4, None)?;
            let name = module_name(&old);
            let a = sluice::router::builtin::read(&old)?;
            let b = sluice::router::builtin::read(&new)?;
            let (da, _) = run_module(&engine, &a, module_spec(&name, &config)?, &evs, 500)?;
            let new_config = new_config.or(config);
            let (db, _) = run_module(&engine, &b, module_spec(&name, &new_config)?, &evs, 500)?;
            let mut differ = 0;
            for (x, y) in da.iter().zip(&db) {
                if x.routes != y.routes {
                    differ += 1;
                    let ev = &evs[x.event];
                    println!(
                        "{}",
                        serde_json::json!({
                            "at": ev.position.to_string(),
                            "row": x.row,
                            "table": ev.table.qualified_name(),
                            "old": routes_json(&x.routes),
                            "new": routes_json(&y.routes),
                        })
                    );
                }
            }
            eprintln!("{differ} of {} decisions differ", da.len());
            if differ > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

fn wasmtime_component_summary(
    engine: &sluice::router::RouterEngine,
    bytes: &[u8],
) -> anyhow::Result<String> {
    let c = wasmtime::component::Component::new(engine.engine(), bytes)
        .map_err(|e| anyhow::anyhow!("not a valid component: {e:#}"))?;
    let ty = c.component_type();
    let imports: Vec<String> = ty
        .imports(engine.engine())
        .map(|(n, _)| n.to_string())
        .collect();
    let exports: Vec<String> = ty
        .exports(engine.engine())
        .map(|(n, _)| n.to_string())
        .collect();
    Ok(format!(
        "imports: {}\nexports: {}",
        imports.join(", "),
        exports.join(", ")
    ))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn read_password(args: &TailArgs) -> anyhow::Result<String> {
    match &args.password_file {
        Some(p) => Ok(std::fs::read_to_string(p)
            .with_context(|| format!("reading password file {}", p.display()))?
            .trim_end_matches(['\n', '\r'])
            .to_string()),
        None => std::env::var(&args.password_env).with_context(|| {
            format!(
                "environment variable {} (the replication password) is not set",
                args.password_env
            )
        }),
    }
}

async fn tail(args: TailArgs) -> anyhow::Result<()> {
    use sluice::source::{BinlogSource, SourceConfig};
    let password = read_password(&args)?;
    let mut cfg = SourceConfig::new(&args.host, args.port, &args.user, &password, args.server_id);
    cfg.start = args.start.clone();
    cfg.tz_offset_secs = args.tz;
    let mut source = BinlogSource::connect(cfg, None)
        .await
        .context("starting replication")?;
    tracing::info!(message = "Replicating.", from = %source.checkpoint());
    let stdout = std::io::stdout();
    let mut buf = Vec::with_capacity(4096);
    let mut id = 0u64;
    loop {
        let item = tokio::select! {
            item = source.next() => item.context("replication stopped")?,
            _ = tokio::signal::ctrl_c() => break,
        };
        let SourceItem::Change(ev) = item else {
            continue;
        };
        id += 1;
        buf.clear();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        match args.format {
            // Not offered on the command line (`#[value(skip)]`): JSON lines here.
            Format::Canal | Format::CanalProtobuf => {
                canal::flat_message(&mut buf, &ev, id, now_ms);
                buf.push(b'\n');
            }
            Format::Debezium => {
                for row in 0..ev.rows.len().max(1) {
                    debezium::envelope(&mut buf, &ev, row, now_ms);
                    buf.push(b'\n');
                }
            }
        }
        let mut lock = stdout.lock();
        if let Err(e) = lock.write_all(&buf).and_then(|_| lock.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(e).context("writing output");
        }
        if args.limit > 0 && id >= args.limit {
            break;
        }
    }
    tracing::info!(message = "Stopped.", checkpoint = %source.checkpoint());
    Ok(())
}

fn replay(files: &[PathBuf], format: Format, tz: i32) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut decoder = Decoder::new("", DecoderOptions { tz_offset_secs: tz });
    let mut buf = Vec::with_capacity(4096);
    let mut id: u64 = 0;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    for path in files {
        let res = read_file(path, &mut decoder, |item| -> std::io::Result<()> {
            let SourceItem::Change(ev) = item else {
                return Ok(());
            };
            match format {
                Format::Canal | Format::CanalProtobuf => {
                    id += 1;
                    buf.clear();
                    canal::flat_message(&mut buf, &ev, id, now_ms);
                    buf.push(b'\n');
                    out.write_all(&buf)
                }
                Format::Debezium => {
                    let n = if ev.rows.is_empty() { 1 } else { ev.rows.len() };
                    for row in 0..n {
                        buf.clear();
                        debezium::envelope(&mut buf, &ev, row, now_ms);
                        buf.push(b'\n');
                        out.write_all(&buf)?;
                    }
                    Ok(())
                }
            }
        });
        match res {
            Ok(_) => {}
            Err(ReadError::Binlog(e)) => {
                out.flush().ok();
                return Err(e).context("replay stopped");
            }
            Err(ReadError::Emit(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(ReadError::Emit(e)) => return Err(e).context("writing output"),
        }
    }
    out.flush().context("writing output")?;
    Ok(())
}
