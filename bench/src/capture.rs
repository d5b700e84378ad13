//! Decode-throughput benchmark driver: one decoder per process, so `/usr/bin/time` in
//! `bench/capture.sh` measures its CPU and peak RSS alone.
//!
//! Decoders: Sluice's (offline file or live stream) and a naive mysql_common decode
//! (its `EventStreamReader` + `RowsEvent::rows`, one `BinlogValue` per cell, rendered to
//! a `String` as a consumer of text values would). Prints `rows=N secs=S`.

use std::io::BufReader;
use std::time::Instant;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use mysql_common::binlog::EventStreamReader;
use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::events::{EventData, RowsEventData};
use mysql_common::binlog::value::BinlogValue;
use mysql_common::value::Value;
use sluice::binlog::file::read_file;
use sluice::binlog::{Decoder, DecoderOptions};
use sluice::event::SourceItem;
use sluice::source::{BinlogSource, SourceConfig};

fn text_of(v: &BinlogValue<'_>, sink: &mut usize) {
    let s = match v {
        BinlogValue::Value(Value::NULL) => return,
        BinlogValue::Value(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        BinlogValue::Value(Value::Int(i)) => i.to_string(),
        BinlogValue::Value(Value::UInt(u)) => u.to_string(),
        BinlogValue::Value(Value::Float(f)) => f.to_string(),
        BinlogValue::Value(Value::Double(d)) => d.to_string(),
        BinlogValue::Value(Value::Date(y, m, d, h, i, s, us)) => {
            format!("{y:04}-{m:02}-{d:02} {h:02}:{i:02}:{s:02}.{us:06}")
        }
        BinlogValue::Value(Value::Time(neg, d, h, i, s, us)) => {
            format!(
                "{}{}:{i:02}:{s:02}.{us:06}",
                if *neg { "-" } else { "" },
                d * 24 + u32::from(*h)
            )
        }
        BinlogValue::Jsonb(j) => format!("{j:?}"),
        BinlogValue::JsonDiff(d) => format!("{d:?}"),
    };
    *sink += s.len();
}

/// Renders every cell of a rows event to text the way a mysql_common user would.
fn render_rows(
    re: &RowsEventData<'_>,
    tme: &mysql_common::binlog::events::TableMapEvent<'_>,
    sink: &mut usize,
) -> anyhow::Result<u64> {
    let mut rows = 0;
    for row in re.rows(tme) {
        let (before, after) = row?;
        for image in [before, after].into_iter().flatten() {
            for i in 0..image.len() {
                if let Some(v) = image.as_ref(i) {
                    text_of(v, sink);
                }
            }
        }
        rows += 1;
    }
    Ok(rows)
}

fn naive_file(files: &[String]) -> anyhow::Result<u64> {
    let mut rows = 0u64;
    let mut sink = 0usize;
    for f in files {
        let mut r = BufReader::with_capacity(1 << 20, std::fs::File::open(f).context("open")?);
        let mut magic = [0u8; 4];
        std::io::Read::read_exact(&mut r, &mut magic)?;
        let mut esr = EventStreamReader::new(BinlogVersion::Version4);
        while let Some(ev) = esr.read(&mut r)? {
            let Some(EventData::RowsEvent(re)) = ev.read_data()? else {
                continue;
            };
            let Some(tme) = esr.get_tme(re.table_id()) else {
                bail!("no table map")
            };
            rows += render_rows(&re, tme, &mut sink)?;
        }
    }
    std::hint::black_box(sink);
    Ok(rows)
}

fn sluice_file(files: &[String]) -> anyhow::Result<u64> {
    let mut dec = Decoder::new("", DecoderOptions::default());
    let mut rows = 0u64;
    let mut bytes = 0usize;
    for f in files {
        read_file(
            std::path::Path::new(f),
            &mut dec,
            |item| -> Result<(), std::convert::Infallible> {
                if let SourceItem::Change(ev) = item {
                    rows += ev.rows.len() as u64;
                    bytes += ev.rows.data.len();
                }
                Ok(())
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    std::hint::black_box(bytes);
    Ok(rows)
}

fn cfg_from_env(server_id: u32) -> anyhow::Result<SourceConfig> {
    let port: u16 = std::env::var("SLUICE_MYSQL_PORT")?.parse()?;
    let user = std::env::var("SLUICE_MYSQL_USER")?;
    let pass = std::env::var("SLUICE_MYSQL_PASSWORD")?;
    Ok(SourceConfig::new(
        "127.0.0.1",
        port,
        &user,
        &pass,
        server_id,
    ))
}

async fn sluice_live(start: &str, want: u64) -> anyhow::Result<u64> {
    let mut cfg = cfg_from_env(4_900_001)?;
    cfg.start = start.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let mut src = BinlogSource::connect(cfg, None).await?;
    let mut rows = 0u64;
    while rows < want {
        if let SourceItem::Change(ev) = src.next().await? {
            rows += ev.rows.len() as u64;
        }
    }
    Ok(rows)
}

async fn naive_live(start: &str, want: u64) -> anyhow::Result<u64> {
    let (file, pos) = start.rsplit_once(':').context("FILE:POS")?;
    let port: u16 = std::env::var("SLUICE_MYSQL_PORT")?.parse()?;
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(std::env::var("SLUICE_MYSQL_USER")?))
        .pass(Some(std::env::var("SLUICE_MYSQL_PASSWORD")?));
    let conn = mysql_async::Conn::new(opts).await?;
    let mut stream = conn
        .get_binlog_stream(
            mysql_async::BinlogStreamRequest::new(4_900_002)
                .with_filename(file.as_bytes())
                .with_pos(pos.parse::<u64>()?),
        )
        .await?;
    let mut rows = 0u64;
    let mut sink = 0usize;
    while rows < want {
        let ev = stream.next().await.context("stream ended")??;
        let Some(mysql_async::binlog::events::EventData::RowsEvent(re)) = ev.read_data()? else {
            continue;
        };
        let Some(tme) = stream.get_tme(re.table_id()) else {
            bail!("no table map")
        };
        rows += render_rows(&re, tme, &mut sink)?;
    }
    std::hint::black_box(sink);
    Ok(rows)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = args.first() else {
        bail!(
            "usage: capture-bench sluice-file|naive-file FILE... | sluice-live|naive-live FILE:POS ROWS"
        );
    };
    let t = Instant::now();
    let rows = match mode.as_str() {
        "sluice-file" => sluice_file(&args[1..])?,
        "naive-file" => naive_file(&args[1..])?,
        "sluice-live" | "naive-live" => {
            let start = args.get(1).context("start position")?.clone();
            let want: u64 = args.get(2).context("row count")?.parse()?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            if mode == "sluice-live" {
                rt.block_on(sluice_live(&start, want))?
            } else {
                rt.block_on(naive_live(&start, want))?
            }
        }
        other => bail!("unknown mode {other}"),
    };
    println!("rows={rows} secs={:.3}", t.elapsed().as_secs_f64());
    Ok(())
}
