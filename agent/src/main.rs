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
}

fn parse_offset(s: &str) -> Result<i32, String> {
    sluice::binlog::temporal::parse_utc_offset(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    }
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
