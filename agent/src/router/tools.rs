//! Module tooling behind `sluice module test|diff|check`: loading sample events (binlog
//! files or Canal FlatMessage JSON lines), flattening a TOML config for a module, and
//! running a module over events.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};

use super::engine::RouterEngine;
use super::module::{ModuleInstance, Route, RouteInput, Routes};
use super::spec::ModuleSpec;
use crate::binlog::file::{ReadError, read_file};
use crate::binlog::{BINLOG_MAGIC, Decoder, DecoderOptions};
use crate::event::{
    ChangeEvent, ChangeKind, Charset, Column, ColumnKind, Position, Rows, SourceItem, TableSchema,
    TxnContext,
};

/// Flattens a TOML table into module config pairs: nested keys joined with `.`,
/// arrays joined with `,`, scalars as text.
pub fn flatten_config(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    let value: toml::Table = toml::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "module config is not valid TOML: {}",
            crate::secret::toml_error(text, &e)
        )
    })?;
    let mut out = Vec::new();
    flatten("", &toml::Value::Table(value), &mut out);
    Ok(out)
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut Vec<(String, String)>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        toml::Value::Array(a) => {
            let parts: Vec<String> = a
                .iter()
                .map(|x| match x {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.push((prefix.to_string(), parts.join(",")));
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Loads change events from binlog files (`.gz` too) or FlatMessage JSON-lines files.
pub fn load_events(paths: &[impl AsRef<Path>]) -> anyhow::Result<Vec<ChangeEvent>> {
    let mut events = Vec::new();
    let mut decoder = Decoder::new("", DecoderOptions::default());
    for p in paths {
        let p = p.as_ref();
        let mut head = [0u8; 4];
        let is_binlog = p.extension().is_some_and(|e| e == "gz")
            || std::fs::File::open(p)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
                .is_ok()
                && head == BINLOG_MAGIC;
        if is_binlog {
            let res = read_file(
                p,
                &mut decoder,
                |item| -> Result<(), std::convert::Infallible> {
                    if let SourceItem::Change(ev) = item {
                        events.push(ev);
                    }
                    Ok(())
                },
            );
            match res {
                Ok(_) => {}
                Err(ReadError::Binlog(e)) => return Err(e).context("reading events"),
                Err(ReadError::Emit(never)) => match never {},
            }
        } else {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let ev = parse_flat_message(line, p, n as u64 + 1).with_context(|| {
                    format!("{}:{}: not a Canal FlatMessage", p.display(), n + 1)
                })?;
                events.push(ev);
            }
        }
    }
    Ok(events)
}

/// Rebuilds a change event from a Canal FlatMessage JSON object (Sluice's or Canal's
/// own output). Positions are the file and line number.
pub fn parse_flat_message(line: &str, file: &Path, line_no: u64) -> anyhow::Result<ChangeEvent> {
    let v: serde_json::Value = serde_json::from_str(line)?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let is_ddl = v.get("isDdl").and_then(|x| x.as_bool()).unwrap_or(false);
    let kind = match (is_ddl, s("type").as_str()) {
        (true, _) => ChangeKind::Ddl,
        (_, "INSERT") => ChangeKind::Insert,
        (_, "UPDATE") => ChangeKind::Update,
        (_, "DELETE") => ChangeKind::Delete,
        (_, other) => {
            if v.get("data").is_none_or(|d| d.is_null()) {
                ChangeKind::Ddl
            } else {
                bail!("unknown type `{other}`")
            }
        }
    };
    let mysql_type = v.get("mysqlType").and_then(|x| x.as_object());
    let sql_type = v.get("sqlType").and_then(|x| x.as_object());
    let data: Vec<&serde_json::Map<String, serde_json::Value>> = v
        .get("data")
        .and_then(|x| x.as_array())
        .map(|a| a.iter().filter_map(|r| r.as_object()).collect())
        .unwrap_or_default();
    let names: Vec<String> = match (mysql_type, data.first()) {
        (Some(m), _) => m.keys().cloned().collect(),
        (None, Some(r)) => r.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let columns: Vec<Column> = names
        .iter()
        .map(|n| {
            let code = sql_type
                .and_then(|m| m.get(n))
                .and_then(|x| x.as_i64())
                .unwrap_or(12);
            let binary = matches!(code, -2 | -3 | -4 | 2004);
            let st = mysql_type
                .and_then(|m| m.get(n))
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_string();
            Column {
                name: n.clone(),
                type_code: 15,
                kind: kind_from_sql_type(&st),
                unsigned: st.contains("unsigned"),
                charset: if binary {
                    Charset::Binary
                } else {
                    Charset::Utf8
                },
                collation: None,
                labels: None,
                refinement: None,
                sql_type: st,
                nullable: true,
            }
        })
        .collect();
    let pk: Vec<usize> = v
        .get("pkNames")
        .and_then(|x| x.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_str())
                .filter_map(|p| names.iter().position(|n| n == p))
                .collect()
        })
        .unwrap_or_default();
    let images = if kind == ChangeKind::Update { 2 } else { 1 };
    let mut rows = Rows::new(columns.len(), images);
    let old: Vec<&serde_json::Map<String, serde_json::Value>> = v
        .get("old")
        .and_then(|x| x.as_array())
        .map(|a| a.iter().filter_map(|r| r.as_object()).collect())
        .unwrap_or_default();
    let cell = |m: &serde_json::Map<String, serde_json::Value>, n: &str| -> Option<String> {
        match m.get(n) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        }
    };
    if kind != ChangeKind::Ddl {
        for (i, r) in data.iter().enumerate() {
            let after: Vec<Option<String>> = names.iter().map(|n| cell(r, n)).collect();
            if kind == ChangeKind::Update {
                let before: Vec<Option<String>> = names
                    .iter()
                    .zip(&after)
                    .map(|(n, a)| match old.get(i).filter(|o| o.contains_key(n)) {
                        Some(o) => cell(o, n),
                        None => a.clone(),
                    })
                    .collect();
                let b: Vec<Option<&[u8]>> = before
                    .iter()
                    .map(|x| x.as_deref().map(str::as_bytes))
                    .collect();
                rows.push_image(&b);
            }
            let a: Vec<Option<&[u8]>> = after
                .iter()
                .map(|x| x.as_deref().map(str::as_bytes))
                .collect();
            rows.push_image(&a);
        }
    }
    let es = v.get("es").and_then(|x| x.as_u64()).unwrap_or(0);
    let gtid = s("gtid");
    Ok(ChangeEvent {
        position: Position {
            file: Arc::from(file.display().to_string().as_str()),
            offset: line_no,
            next: line_no + 1,
            sub: 0,
        },
        server_id: 0,
        event_ms: es,
        txn: Arc::new(TxnContext {
            gtid: crate::gtid::GtidState::parse(&gtid)
                .ok()
                .and_then(|_| gtid.parse::<crate::gtid::MariadbGtid>().ok())
                .map(crate::gtid::Gtid::Mariadb),
            commit_ms: es,
        }),
        kind,
        table: Arc::new(TableSchema {
            table_id: 0,
            database: s("database"),
            table: s("table"),
            columns,
            primary_key: pk,
            names_known: true,
        }),
        rows,
        sql: Some(Arc::from(s("sql").as_str())).filter(|x: &Arc<str>| !x.is_empty()),
    })
}

/// The column kind a SQL type name implies (for events rebuilt from JSON, where only
/// the type's name is known).
fn kind_from_sql_type(t: &str) -> ColumnKind {
    let base: String = t
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    let arg = |i: usize| -> u16 {
        t.split_once('(')
            .and_then(|(_, r)| r.split(')').next())
            .and_then(|a| a.split(',').nth(i))
            .and_then(|x| x.trim().parse().ok())
            .unwrap_or(0)
    };
    match base.as_str() {
        "tinyint" | "bool" | "boolean" => ColumnKind::Int { bytes: 1 },
        "smallint" => ColumnKind::Int { bytes: 2 },
        "mediumint" => ColumnKind::Int { bytes: 3 },
        "int" | "integer" => ColumnKind::Int { bytes: 4 },
        "bigint" => ColumnKind::Int { bytes: 8 },
        "float" => ColumnKind::Float,
        "double" | "real" => ColumnKind::Double,
        "decimal" | "numeric" => ColumnKind::Decimal {
            precision: arg(0) as u8,
            scale: arg(1) as u8,
        },
        "year" => ColumnKind::Year,
        "date" => ColumnKind::Date,
        "time" => ColumnKind::Time {
            fsp: arg(0) as u8,
            old: false,
        },
        "datetime" => ColumnKind::DateTime {
            fsp: arg(0) as u8,
            old: false,
        },
        "timestamp" => ColumnKind::Timestamp {
            fsp: arg(0) as u8,
            old: false,
        },
        "bit" => ColumnKind::Bit { bits: arg(0) },
        "char" | "binary" => ColumnKind::Char { max_bytes: arg(0) },
        "enum" => ColumnKind::Enum { pack_len: 2 },
        "set" => ColumnKind::Set { pack_len: 8 },
        "json" => ColumnKind::Json { len_bytes: 4 },
        b if b.ends_with("text") || b.ends_with("blob") => ColumnKind::Blob { len_bytes: 4 },
        "geometry" | "point" | "linestring" | "polygon" => ColumnKind::Geometry { len_bytes: 4 },
        _ => ColumnKind::VarChar { max_bytes: arg(0) },
    }
}

/// One event's decisions from a module run.
#[derive(Debug, Clone)]
pub struct Decided {
    /// Event index.
    pub event: usize,
    /// Row.
    pub row: usize,
    /// Routes (`None`: not subscribed; empty: dropped).
    pub routes: Option<Vec<Route>>,
}

/// Runs a module over `events` in batches of `batch`; returns one entry per row.
pub fn run_module(
    engine: &RouterEngine,
    bytes: &[u8],
    spec: ModuleSpec,
    events: &[ChangeEvent],
    batch: usize,
) -> anyhow::Result<(Vec<Decided>, Arc<super::engine::ModuleCode>)> {
    let (code, _) = engine.compile(&spec.name, bytes)?;
    let mut m = ModuleInstance::new(engine, code.clone(), Arc::new(spec))?;
    let mut decided = Vec::new();
    let mut inputs = Vec::new();
    let mut slots = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        for row in 0..ev.rows.len().max(1) {
            if m.wants(&ev.table, ev.kind) {
                inputs.push(RouteInput { event: ev, row });
                slots.push(decided.len());
            }
            decided.push(Decided {
                event: i,
                row,
                routes: None,
            });
        }
    }
    let mut out = Routes::default();
    for (chunk, idx) in inputs.chunks(batch.max(1)).zip(slots.chunks(batch.max(1))) {
        m.route(chunk, &mut out)?;
        for (routes, &slot) in out.to_vecs().into_iter().zip(idx) {
            decided[slot].routes = Some(routes);
        }
    }
    Ok((decided, code))
}

/// One sample change per kind (insert, update, delete, and an `ALTER TABLE`) for each
/// table, every cell NULL: what `sluice topics create --tables` asks the modules to
/// route, so rules that derive a topic from a table's name (Canal's `dynamicTopic`
/// regexes) name their topics before any row arrives.
pub fn table_samples(
    tables: &[(String, String, crate::binlog::schema::DictTable)],
) -> anyhow::Result<Vec<ChangeEvent>> {
    let mut events = Vec::with_capacity(tables.len() * 4);
    for (db, table, def) in tables {
        let types: serde_json::Map<String, serde_json::Value> = def
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.column_type.clone().into()))
            .collect();
        let nulls: serde_json::Map<String, serde_json::Value> = def
            .columns
            .iter()
            .map(|c| (c.name.clone(), serde_json::Value::Null))
            .collect();
        let mut pk: Vec<(u32, &str)> = def
            .columns
            .iter()
            .filter_map(|c| c.pk_ordinal.map(|o| (o, c.name.as_str())))
            .collect();
        pk.sort_unstable();
        let pk: Vec<&str> = pk.into_iter().map(|(_, n)| n).collect();
        for kind in ["INSERT", "UPDATE", "DELETE", "ALTER"] {
            let ddl = kind == "ALTER";
            let msg = serde_json::json!({
                "database": db,
                "table": table,
                "type": kind,
                "isDdl": ddl,
                "pkNames": pk,
                "mysqlType": types,
                "data": if ddl { serde_json::Value::Null } else { serde_json::json!([nulls]) },
                "old": if kind == "UPDATE" { serde_json::json!([{}]) } else { serde_json::Value::Null },
                "sql": if ddl {
                    format!("ALTER TABLE `{}`.`{}` COMMENT ''", db.replace('`', "``"), table.replace('`', "``"))
                } else {
                    String::new()
                },
            });
            let path = Path::new("information_schema");
            events.push(
                parse_flat_message(&msg.to_string(), path, events.len() as u64)
                    .with_context(|| format!("sample change of {db}.{table}"))?,
            );
        }
    }
    Ok(events)
}

/// Decisions as JSON for tool output.
pub fn routes_json(routes: &Option<Vec<Route>>) -> serde_json::Value {
    match routes {
        None => serde_json::Value::String("not subscribed".into()),
        Some(rs) if rs.is_empty() => serde_json::Value::String("dropped".into()),
        Some(rs) => serde_json::Value::Array(
            rs.iter()
                .map(|r| {
                    let headers: serde_json::Map<String, serde_json::Value> = r
                        .headers
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                serde_json::Value::String(String::from_utf8_lossy(v).into_owned()),
                            )
                        })
                        .collect();
                    serde_json::json!({
                        "topic": &*r.topic,
                        "partition": r.partition,
                        "key": r.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
                        "headers": headers,
                    })
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_flattens_like_properties() {
        let c = flatten_config(
            "topic = \"t\"\npartitions = 4\n[canal.mq]\npartitionHash = 'a.b:id'\nlist = [\"x\", \"y\"]\n",
        )
        .unwrap();
        assert_eq!(
            c,
            vec![
                ("topic".into(), "t".into()),
                ("partitions".into(), "4".into()),
                ("canal.mq.partitionHash".into(), "a.b:id".into()),
                ("canal.mq.list".into(), "x,y".into()),
            ]
        );
    }

    #[test]
    fn flat_message_round_trip() {
        let line = r#"{"data":[{"id":"1","name":"b"}],"database":"d","es":5,"gtid":"","id":1,"isDdl":false,"mysqlType":{"id":"int(11)","name":"varchar(8)"},"old":[{"name":"a"}],"pkNames":["id"],"sql":"","sqlType":{"id":4,"name":12},"table":"t","ts":6,"type":"UPDATE"}"#;
        let ev = parse_flat_message(line, Path::new("x.jsonl"), 1).unwrap();
        assert_eq!(ev.kind, ChangeKind::Update);
        assert_eq!(ev.table.columns[1].name, "name");
        assert_eq!(ev.table.primary_key, [0]);
        assert_eq!(ev.rows.image(0, 0).cell(1), crate::event::Cell::Value(b"a"));
        assert_eq!(ev.rows.image(0, 1).cell(1), crate::event::Cell::Value(b"b"));
        let mut out = Vec::new();
        crate::format::canal::flat_message(&mut out, &ev, 1, 6);
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let orig: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(back, orig);
    }
}
