//! The `sluice` command line: parse arguments, run one subcommand, print errors with their
//! causes and exit with a documented code.
//!
//! Exit codes: 0 success, 1 runtime failure (bad input, lost connection), 2 usage error.

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
    version,
    about = "MySQL/MariaDB change-data-capture edge agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Replay { files, format, tz } => replay(&files, format, tz),
        Command::Tail(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(tail(args))
        }
    }
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
            Format::Canal => {
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
                Format::Canal => {
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
