//! The `sluice` command line: parse arguments, run one subcommand, print errors with their
//! causes and exit with a documented code.
//!
//! Exit codes: 0 success (for `run`: a clean stop, everything acknowledged is
//! checkpointed), 1 runtime failure (bad input or config, lost connection, a module that
//! halts, the sink failing past its restarts), 2 usage error, 130 a second SIGTERM/SIGINT
//! during the drain (stops at once; the checkpoint is still a safe one).

mod agent;
mod capture;
mod ctl;
mod module;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use sluice::format::Format;

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
        /// Progress (rows, bytes, position, ETA) on stderr: `auto` on a terminal only.
        #[arg(long, value_enum, default_value_t = capture::ProgressMode::Auto)]
        progress: capture::ProgressMode,
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
    /// Describe `sluice.toml`: every key, generated from the config types.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
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
    /// Print the agent's JSON answers as they are (for scripts) instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: CtlCmd,
}

#[derive(Subcommand)]
enum CtlCmd {
    /// Readiness, positions, lag, rates (rows, bytes, messages over --interval), the
    /// catch-up ETA, and each module's counters.
    Status {
        /// Keep printing it every --interval seconds (a progress display for a long
        /// catch-up), until interrupted.
        #[arg(long)]
        watch: bool,
        /// Seconds between the two samples rates are taken from, and between updates
        /// with --watch.
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
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

/// `sluice config`.
#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the configuration reference (Markdown): every table and key, its type,
    /// default and meaning.
    Reference,
    /// Print the JSON Schema of `sluice.toml`, for editors and linters (taplo,
    /// Even Better TOML).
    Schema,
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
        /// Also the topics the source's existing tables route to: each captured table's
        /// sample change is routed by the modules (for rules that derive topics from
        /// table names, like Canal's `dynamicTopic` regexes). Needs the source.
        #[arg(long)]
        tables: bool,
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
        Command::Replay {
            files,
            format,
            tz,
            progress,
        } => capture::replay(&files, format, tz, progress),
        Command::Module { cmd } => module::module_cmd(cmd),
        Command::Run { config } => {
            let cfg = sluice::config::Config::load(&config)?;
            let rt = runtime()?;
            rt.block_on(agent::agent(cfg))
        }
        Command::Ctl(args) => ctl::ctl(args),
        Command::Config {
            cmd: ConfigCmd::Reference,
        } => {
            print!("{}", sluice::config::reference::markdown());
            Ok(())
        }
        Command::Config {
            cmd: ConfigCmd::Schema,
        } => {
            let schema = sluice::config::reference::schema();
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(())
        }
        Command::Check { config } => {
            let cfg = sluice::config::Config::load(&config)?;
            let rt = runtime()?;
            rt.block_on(agent::check(cfg))
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
        } => agent::canal_import(&instance, canal.as_deref(), destination, module, checkpoint),
        Command::Topics {
            cmd:
                TopicsCmd::Create {
                    config,
                    partitions,
                    replication,
                    tables,
                },
        } => {
            let cfg = sluice::config::Config::load(&config)?;
            let rt = runtime()?;
            rt.block_on(agent::create_topics(cfg, partitions, replication, tables))
        }
        Command::Tail(args) => {
            let rt = runtime()?;
            rt.block_on(capture::tail(args))
        }
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}
