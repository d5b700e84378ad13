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

pub(crate) fn replay(files: &[PathBuf], format: Format, tz: i32) -> anyhow::Result<()> {
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
