//! Router benchmark: the canal-compat module compiled natively vs as a WebAssembly
//! component, per event at batch sizes 1/100/1000, a full pipeline (decode + route +
//! FlatMessage) over a binlog file, and hot-swap latency. Prints tables with ratios.
//!
//!   router-bench COMPONENT.wasm [BINLOG...]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use canal_compat::CanalCompat;
use sluice::binlog::file::read_file;
use sluice::binlog::{Decoder, DecoderOptions};
use sluice::event::{
    Cell, ChangeEvent, ChangeKind, Charset, Column, ColumnKind, Position, Rows, SourceItem,
    TableSchema, TxnContext,
};
use sluice::format::canal::flat_message;
use sluice::router::{ModuleInstance, ModuleSpec, RouteInput, RouterEngine, RouterSet, Routes};
use sluice_sdk::Router;
use sluice_sdk::abi::{self, BatchWriter, Decisions, Kind};

const CONFIG: &[(&str, &str)] = &[
    ("canal.mq.topic", "example"),
    ("canal.mq.dynamicTopic", "bench\\..*,.*\\..*"),
    ("canal.mq.partitionsNum", "16"),
    ("canal.mq.partitionHash", ".*\\..*:$pk$"),
];

fn spec() -> ModuleSpec {
    let mut s = ModuleSpec::new("canal");
    s.config = CONFIG
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s
}

/// 10-column events: id (PK) plus 9 text/number columns, 100 rows per rows event.
fn synthetic(n: usize) -> Vec<ChangeEvent> {
    let names = ["id", "a", "b", "c", "d", "e", "f", "g", "h", "i"];
    let t = Arc::new(TableSchema {
        table_id: 1,
        database: "bench".into(),
        table: "t10".into(),
        columns: names
            .iter()
            .map(|n| Column {
                name: n.to_string(),
                type_code: 15,
                kind: ColumnKind::VarChar { max_bytes: 64 },
                unsigned: false,
                charset: Charset::Utf8,
                collation: Some(45),
                labels: None,
                refinement: None,
                sql_type: "varchar(64)".into(),
                nullable: true,
            })
            .collect(),
        primary_key: vec![0],
        names_known: true,
    });
    let txn = Arc::new(TxnContext {
        gtid: None,
        commit_ms: 0,
    });
    let mut out = Vec::new();
    let mut id = 0usize;
    while id < n {
        let mut rows = Rows::new(10, 1);
        for _ in 0..100.min(n - id) {
            let vals: Vec<String> = (0..10)
                .map(|c| {
                    if c == 0 {
                        id.to_string()
                    } else {
                        format!("value-{c}-{}", id % 977)
                    }
                })
                .collect();
            let cells: Vec<Option<&[u8]>> = vals.iter().map(|v| Some(v.as_bytes())).collect();
            rows.push_image(&cells);
            id += 1;
        }
        out.push(ChangeEvent {
            position: Position {
                file: Arc::from("b"),
                offset: id as u64,
                next: 0,
                sub: 0,
            },
            server_id: 1,
            event_ms: 0,
            txn: txn.clone(),
            kind: ChangeKind::Insert,
            table: t.clone(),
            rows,
            sql: None,
        });
    }
    out
}

fn inputs(evs: &[ChangeEvent]) -> Vec<RouteInput<'_>> {
    evs.iter()
        .flat_map(|e| (0..e.rows.len()).map(move |row| RouteInput { event: e, row }))
        .collect()
}

/// The same module compiled natively, fed the same packed batches the host builds.
struct Native {
    router: CanalCompat,
    tables: sluice_sdk::Tables,
    writer: BatchWriter,
    buf: Vec<u8>,
}

impl Native {
    fn new(table: &TableSchema) -> anyhow::Result<Self> {
        let (router, _) = CanalCompat::configure(&sluice_sdk::Config::new(CONFIG.iter().copied()))
            .map_err(anyhow::Error::msg)?;
        let mut router = router;
        let mut tables = sluice_sdk::Tables::default();
        let table = sluice_sdk::Table {
            id: 0,
            database: table.database.clone(),
            name: table.table.clone(),
            columns: table
                .columns
                .iter()
                .map(|c| sluice_sdk::Column {
                    name: c.name.clone(),
                    sql_type: c.sql_type.clone(),
                    binary: false,
                })
                .collect(),
            primary_key: table.primary_key.iter().map(|&i| i as u32).collect(),
        };
        router.on_table(&table);
        tables.insert(table);
        Ok(Native {
            router,
            tables,
            writer: BatchWriter::new(),
            buf: Vec::new(),
        })
    }

    fn route(&mut self, ins: &[RouteInput<'_>]) -> anyhow::Result<usize> {
        self.writer.clear();
        for i in ins {
            let cols = i.event.table.columns.len();
            self.writer
                .begin_event(0, Kind::Insert, cols as u16, false, true, i.row as u32);
            let img = i.event.rows.image(i.row, 0);
            for c in 0..cols {
                match img.cell(c) {
                    Cell::Value(v) => self.writer.push_value(v),
                    _ => self.writer.push_null(),
                }
            }
        }
        self.writer.finish_into(&mut self.buf);
        let batch = abi::Batch::parse(&self.buf).map_err(anyhow::Error::msg)?;
        let mut out = Decisions::new();
        self.router
            .route(&self.tables, &batch, &mut out)
            .map_err(anyhow::Error::msg)?;
        let bytes = out.finish();
        Ok(abi::parse_decisions(&bytes, ins.len())
            .map_err(anyhow::Error::msg)?
            .len())
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn per_event(
    runs: usize,
    events: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_nanos() as f64 / events as f64);
    }
    Ok(median(times))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let component = std::fs::read(
        args.first()
            .context("usage: router-bench COMPONENT.wasm [BINLOG...]")?,
    )?;
    let engine = Arc::new(RouterEngine::new(8, None)?);
    let (code, _) = engine.compile("canal", &component)?;
    let n = 100_000;
    let evs = synthetic(n);
    let ins = inputs(&evs);
    let mut native = Native::new(&evs[0].table)?;
    let mut wasm = ModuleInstance::new(&engine, code.clone(), Arc::new(spec()))?;
    let mut out = Routes::default();

    println!(
        "router cost per event, canal-compat ($pk$ hash, dynamic topic), 10-column rows, median of 5 runs over {n} events"
    );
    println!(
        "{:>7} {:>12} {:>12} {:>8}",
        "batch", "native ns", "wasm ns", "ratio"
    );
    for batch in [1usize, 100, 1000] {
        let nat = per_event(5, n, || {
            for c in ins.chunks(batch) {
                native.route(c)?;
            }
            Ok(())
        })?;
        let was = per_event(5, n, || {
            for c in ins.chunks(batch) {
                wasm.route(c, &mut out).map_err(anyhow::Error::msg)?;
            }
            Ok(())
        })?;
        println!("{batch:>7} {nat:>12.0} {was:>12.0} {:>8.2}", was / nat);
    }

    // Full pipeline over binlog files: decode + route (batches of 1000) + FlatMessage.
    if args.len() > 1 {
        let files = &args[1..];
        let mut pipeline = |mode: &str| -> anyhow::Result<(usize, Duration)> {
            let t = Instant::now();
            let mut dec = Decoder::new("", DecoderOptions::default());
            let mut rows = 0usize;
            let mut txn: Vec<ChangeEvent> = Vec::new();
            let mut json = Vec::with_capacity(1 << 16);
            let mut flush = |txn: &mut Vec<ChangeEvent>, rows: &mut usize| -> anyhow::Result<()> {
                let ins = inputs(txn);
                for c in ins.chunks(1000) {
                    match mode {
                        "native" => {
                            native.route(c)?;
                        }
                        "wasm" => wasm.route(c, &mut out).map_err(anyhow::Error::msg)?,
                        _ => {}
                    }
                }
                for ev in txn.iter() {
                    json.clear();
                    flat_message(&mut json, ev, 0, 0);
                }
                *rows += ins.len();
                txn.clear();
                Ok(())
            };
            for f in files {
                let mut err = None;
                read_file(
                    std::path::Path::new(f),
                    &mut dec,
                    |item| -> Result<(), std::convert::Infallible> {
                        match item {
                            SourceItem::Change(ev) if ev.kind != ChangeKind::Ddl => txn.push(ev),
                            SourceItem::Commit { .. } => {
                                if let Err(e) = flush(&mut txn, &mut rows) {
                                    err = Some(e);
                                }
                            }
                            _ => {}
                        }
                        Ok(())
                    },
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?;
                if let Some(e) = err {
                    return Err(e);
                }
            }
            Ok((rows, t.elapsed()))
        };
        let mut results = Vec::new();
        for mode in ["none", "native", "wasm"] {
            let runs: Vec<(usize, Duration)> = (0..3)
                .map(|_| pipeline(mode))
                .collect::<anyhow::Result<_>>()?;
            let rows = runs[0].0;
            let secs = median(runs.iter().map(|r| r.1.as_secs_f64()).collect());
            results.push((mode, rows, secs));
        }
        println!();
        println!("pipeline: decode + route + FlatMessage JSON, median of 3 runs");
        println!(
            "{:>8} {:>10} {:>10} {:>12} {:>14}",
            "router", "rows", "secs", "rows/s", "x native"
        );
        let native_secs = results[1].2;
        for (mode, rows, secs) in &results {
            println!(
                "{mode:>8} {rows:>10} {secs:>10.3} {:>12.0} {:>14.2}",
                *rows as f64 / secs,
                secs / native_secs
            );
        }
    }

    // Hot swap: from proposing a new version to the first event routed by it.
    println!();
    println!("hot swap: propose -> first event routed by the new version");
    for (label, cache) in [("cold (compile)", false), ("precompiled (cache hit)", true)] {
        let dir = std::env::temp_dir().join(format!("sluice-bench-cache-{}", std::process::id()));
        let engine = Arc::new(RouterEngine::new(8, cache.then_some(dir.as_path()))?);
        let mut v2 = component.clone();
        v2.extend_from_slice(&[0, 6, 5, b'b', b'e', b'n', b'c', b'h']);
        if cache {
            engine.compile("canal", &v2)?;
        }
        let mut set = RouterSet::new(engine.clone(), vec![(spec(), component.clone())])?;
        let one = &evs[..1];
        let one_in = [RouteInput {
            event: &one[0],
            row: 0,
        }];
        set.route(&one_in)?;
        set.at_transaction_boundary(one);
        let old = set.version_of("canal").unwrap_or_default().to_string();
        let t = Instant::now();
        set.propose("canal", v2).map_err(anyhow::Error::msg)?;
        loop {
            set.at_transaction_boundary(&[]);
            let d = set.route(&one_in)?;
            if d.first().is_some_and(|d| *d.version != old) {
                break;
            }
            anyhow::ensure!(t.elapsed() < Duration::from_secs(60), "swap did not happen");
            std::thread::sleep(Duration::from_micros(200));
        }
        println!("{label:>26}: {:.1} ms", t.elapsed().as_secs_f64() * 1000.0);
        std::fs::remove_dir_all(&dir).ok();
    }
    Ok(())
}
