//! `sluice tail` and `sluice replay`: capture without modules or a broker, one JSON
//! object per change on stdout (live from a server, or offline from binlog files).
//!
//! Invariant: stdout carries only the changes; anything for people (errors, progress)
//! goes to stderr, so the output pipes into other tools unchanged.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use sluice::binlog::file::{ReadError, read_file};
use sluice::binlog::{Decoder, DecoderOptions};
use sluice::event::SourceItem;
use sluice::format::{Format, canal, debezium};

use super::TailArgs;

pub(crate) fn read_password(args: &TailArgs) -> anyhow::Result<String> {
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

pub(crate) async fn tail(args: TailArgs) -> anyhow::Result<()> {
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

/// Replay progress on stderr: rows, bytes, position and an ETA, rewritten in place on
/// a terminal (or as a line every few seconds with `--progress` elsewhere).
struct Progress {
    started: std::time::Instant,
    last: std::time::Instant,
    every: std::time::Duration,
    terminal: bool,
    /// Bytes of every input file, and of the files finished.
    total: u64,
    done: u64,
    rows: u64,
    drawn: bool,
}

impl Progress {
    fn new(files: &[PathBuf], mode: ProgressMode) -> Option<Self> {
        use std::io::IsTerminal;
        let terminal = std::io::stderr().is_terminal();
        let on = match mode {
            ProgressMode::Auto => terminal,
            ProgressMode::Always => true,
            ProgressMode::Never => false,
        };
        if !on {
            return None;
        }
        let total = files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        let now = std::time::Instant::now();
        Some(Progress {
            started: now,
            last: now,
            every: std::time::Duration::from_millis(if terminal { 250 } else { 2000 }),
            terminal,
            total,
            done: 0,
            rows: 0,
            drawn: false,
        })
    }

    /// Counts `rows` at `offset` of the current file (of `size` bytes on disk; a
    /// compressed file's offsets run past its size, so they are capped).
    fn tick(&mut self, rows: u64, file: &str, offset: u64, size: u64) {
        self.rows += rows;
        let now = std::time::Instant::now();
        if now.duration_since(self.last) < self.every {
            return;
        }
        self.last = now;
        let at = self.done + offset.min(size);
        let secs = now.duration_since(self.started).as_secs_f64().max(1e-3);
        let rate = at as f64 / secs;
        let eta = if rate > 0.0 {
            sluice::human::duration(self.total.saturating_sub(at) as f64 / rate)
        } else {
            "?".into()
        };
        let line = format!(
            "replay: {} rows, {} of {} MiB ({:.0}%), at {file}:{offset}, ETA {eta}",
            self.rows,
            at >> 20,
            self.total >> 20,
            100.0 * at as f64 / self.total.max(1) as f64,
        );
        if self.terminal {
            // Carriage return and erase-line: one line, updated in place.
            eprint!("\r\x1b[2K{line}");
            self.drawn = true;
        } else {
            eprintln!("{line}");
        }
    }

    fn file_done(&mut self, size: u64) {
        self.done += size;
    }

    fn finish(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[2K");
        }
        eprintln!(
            "replay: {} rows from {} MiB in {}",
            self.rows,
            self.total >> 20,
            sluice::human::duration(self.started.elapsed().as_secs_f64())
        );
    }
}

/// When `replay` shows progress.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ProgressMode {
    /// On a terminal only.
    Auto,
    /// Always (lines every 2 s when stderr is not a terminal).
    Always,
    /// Never.
    Never,
}

pub(crate) fn replay(
    files: &[PathBuf],
    format: Format,
    tz: i32,
    progress: ProgressMode,
) -> anyhow::Result<()> {
    let mut progress = Progress::new(files, progress);
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
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let res = read_file(path, &mut decoder, |item| -> std::io::Result<()> {
            let SourceItem::Change(ev) = item else {
                return Ok(());
            };
            if let Some(p) = progress.as_mut() {
                p.tick(
                    ev.rows.len() as u64,
                    &ev.position.file,
                    ev.position.next,
                    size,
                );
            }
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
        if let Some(p) = progress.as_mut() {
            p.file_done(size);
        }
    }
    out.flush().context("writing output")?;
    if let Some(p) = progress.as_mut() {
        p.finish();
    }
    Ok(())
}
