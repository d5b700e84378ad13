//! The configuration reference and JSON Schema of `sluice.toml`, generated from the
//! config types themselves (their fields, serde attributes and doc comments) and from
//! every registered publisher's keys.
//!
//! Invariant: nothing here lists a key by hand. A key exists in the reference exactly
//! when a config type (or a publisher's `keys` struct) has it, so the reference cannot
//! drift from what [`super::Config::load`] accepts; README's copy is kept equal to
//! [`markdown`] by a test.

use std::fmt::Write as _;

use schemars::SchemaGenerator;
use serde_json::{Map, Value, json};

use super::RawConfig;
use crate::sink::config::PUBLISHERS;

/// JSON Schema of `sluice.toml` (draft 2020-12), for editors and CI linters: `[sink]`
/// holds the shared keys plus every publisher's, with `kind` one of the registered
/// kinds.
pub fn schema() -> Value {
    let mut generator = SchemaGenerator::default();
    let root = generator.root_schema_for::<RawConfig>();
    let mut root = root.to_value();
    let mut publisher_keys = Map::new();
    for p in PUBLISHERS {
        let keys = (p.keys)(&mut generator).to_value();
        for (k, mut v) in properties(&keys).clone() {
            if let Some(obj) = v.as_object_mut() {
                let d = obj.get("description").and_then(Value::as_str).unwrap_or("");
                let d = format!("With kind = \"{}\": {d}", p.kind);
                obj.insert("description".into(), Value::String(d));
            }
            publisher_keys.insert(k, v);
        }
    }
    let defs = generator.take_definitions(true);
    let kinds: Vec<&str> = PUBLISHERS.iter().map(|p| p.kind).collect();
    if let Some(sink) = root
        .pointer_mut("/$defs/RawSink")
        .and_then(Value::as_object_mut)
    {
        if let Some(props) = sink.get_mut("properties").and_then(Value::as_object_mut) {
            if let Some(kind) = props.get_mut("kind").and_then(Value::as_object_mut) {
                kind.insert("enum".into(), json!(kinds));
            }
            props.extend(publisher_keys);
        }
        sink.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let Some(all) = root.get_mut("$defs").and_then(Value::as_object_mut) {
        for (k, v) in defs {
            all.entry(k).or_insert(v);
        }
    }
    root
}

/// The reference as Markdown: one table per config table, then each publisher's keys.
pub fn markdown() -> String {
    let mut generator = SchemaGenerator::default();
    let root = generator.root_schema_for::<RawConfig>().to_value();
    let mut out = String::new();
    let mut r = Render {
        defs: root.get("$defs").cloned().unwrap_or(Value::Null),
        out: &mut out,
    };
    for (name, prop) in properties(&root) {
        let (target, header) = match prop.get("items") {
            Some(items) => (items.clone(), format!("[[{name}]]")),
            None => (prop.clone(), format!("[{name}]")),
        };
        let table = r.resolve(&target);
        r.table(&header, &table);
        if name == "sink" {
            for p in PUBLISHERS {
                let mut generator = SchemaGenerator::default();
                let keys = (p.keys)(&mut generator).to_value();
                let defs = generator.take_definitions(true);
                let mut sub = Render {
                    defs: Value::Object(defs),
                    out: r.out,
                };
                sub.publisher(p.kind, &keys);
            }
        }
    }
    out
}

/// The named JSON Schema's `properties`, in declaration order.
fn properties(schema: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

struct Render<'a> {
    defs: Value,
    out: &'a mut String,
}

impl Render<'_> {
    /// `schema` with a `$ref` replaced by its definition.
    fn resolve(&self, schema: &Value) -> Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.rsplit('/').next().unwrap_or(r);
                self.defs.get(name).cloned().unwrap_or(Value::Null)
            }
            None => schema.clone(),
        }
    }

    /// A table's section: its keys, then its sub-tables.
    fn table(&mut self, header: &str, table: &Value) {
        let _ = writeln!(self.out, "#### `{header}`\n");
        if let Some(d) = table.get("description").and_then(Value::as_str) {
            let _ = writeln!(self.out, "{}\n", one_line(d));
        }
        let subs = self.rows(header, table);
        for (name, sub) in subs {
            let inner = header.trim_start_matches('[').trim_end_matches(']');
            self.table(&format!("[{inner}.{name}]"), &sub);
        }
    }

    /// A publisher's keys in `[sink]` and its own sub-tables.
    fn publisher(&mut self, kind: &str, keys: &Value) {
        let _ = writeln!(self.out, "#### `[sink]` with `kind = \"{kind}\"`\n");
        if properties(keys).is_empty() {
            let _ = writeln!(self.out, "No keys of its own.\n");
            return;
        }
        let subs = self.rows("[sink]", keys);
        for (name, sub) in subs {
            self.table(&format!("[sink.{name}]"), &sub);
        }
    }

    /// The key table of `table`; returns its sub-tables (keys whose value is a table
    /// with keys of its own) to render after it.
    fn rows(&mut self, header: &str, table: &Value) -> Vec<(String, Value)> {
        let required: Vec<&str> = table
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut subs = Vec::new();
        let mut rows = String::new();
        for (key, prop) in properties(table) {
            let target = self.resolve(&non_null(prop));
            if !properties(&target).is_empty() {
                let inner = header.trim_start_matches('[').trim_end_matches(']');
                let _ = writeln!(rows, "| `{key}` | table | | see `[{inner}.{key}]` below |");
                subs.push((key.clone(), target));
                continue;
            }
            let default = match prop.get("default") {
                Some(v) => format!("`{}`", v),
                None if required.contains(&key.as_str()) => "required".into(),
                None => String::new(),
            };
            let description = prop
                .get("description")
                .or_else(|| target.get("description"))
                .and_then(Value::as_str)
                .map(one_line)
                .unwrap_or_default();
            let _ = writeln!(
                rows,
                "| `{key}` | {} | {default} | {} |",
                self.type_name(&target),
                description.replace('|', "\\|")
            );
        }
        if !rows.is_empty() {
            let _ = writeln!(self.out, "| key | type | default | meaning |");
            let _ = writeln!(self.out, "|---|---|---|---|");
            let _ = writeln!(self.out, "{rows}");
        }
        subs
    }

    /// A readable type: `string`, `integer`, `array of string`, `"a" \| "b"`, ...
    fn type_name(&self, schema: &Value) -> String {
        let schema = self.resolve(&non_null(schema));
        let variants = schema
            .get("oneOf")
            .or_else(|| schema.get("enum").map(|_| &schema))
            .map(|_| enum_values(&schema));
        if let Some(v) = variants.filter(|v| !v.is_empty()) {
            return v.join(" \\| ");
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("array") => match schema.get("items") {
                Some(items) => format!("array of {}", self.type_name(items)),
                None => "array".into(),
            },
            Some("object") => match schema.get("additionalProperties") {
                Some(v) if v.is_object() => format!("table of {}", self.type_name(v)),
                _ => "table".into(),
            },
            Some(t) => t.into(),
            None => "any".into(),
        }
    }
}

/// `schema` without the `null` an `Option` adds (`type: [T, "null"]` or
/// `anyOf: [T, {type: null}]`).
fn non_null(schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Some(types) = s.get("type").and_then(Value::as_array) {
        let kept: Vec<Value> = types
            .iter()
            .filter(|t| t.as_str() != Some("null"))
            .cloned()
            .collect();
        if let (Some(obj), [one]) = (s.as_object_mut(), kept.as_slice()) {
            obj.insert("type".into(), one.clone());
        }
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
        let kept: Vec<&Value> = any
            .iter()
            .filter(|v| v.get("type").and_then(Value::as_str) != Some("null"))
            .collect();
        if let [one] = kept.as_slice() {
            return (*one).clone();
        }
    }
    s
}

/// The values an enum schema allows, quoted.
fn enum_values(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        out.extend(values.iter().map(|v| format!("`{v}`")));
    }
    if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
        for v in variants {
            if let Some(c) = v.get("const") {
                out.push(format!("`{c}`"));
            } else if let Some(values) = v.get("enum").and_then(Value::as_array) {
                out.extend(values.iter().map(|v| format!("`{v}`")));
            }
        }
    }
    out
}

/// A doc comment's paragraphs on one line (a Markdown table cell holds one).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = "<!-- config-reference: generated by `sluice config reference` -->";
    const END: &str = "<!-- /config-reference -->";

    /// README's reference is what the types say. `SLUICE_BLESS=1 cargo test -p sluice
    /// --lib reference` rewrites it after a config type changed.
    #[test]
    fn readme_reference_matches_the_config_types() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = std::fs::read_to_string(&path).expect("README.md");
        let (Some(a), Some(b)) = (readme.find(START), readme.find(END)) else {
            panic!("README.md lacks the markers {START} ... {END}");
        };
        let current = &readme[a + START.len()..b];
        let generated = format!("\n\n{}", markdown());
        if current != generated {
            if std::env::var_os("SLUICE_BLESS").is_some() {
                let updated = format!("{}{START}{generated}{}", &readme[..a], &readme[b..]);
                std::fs::write(&path, updated).expect("write README.md");
                return;
            }
            panic!(
                "README.md's configuration reference differs from the config types; \
                 run `SLUICE_BLESS=1 cargo test -p sluice --lib reference` and review the diff"
            );
        }
    }

    #[test]
    fn every_key_of_every_table_is_in_the_reference() {
        let md = markdown();
        // Spot keys from each table and each publisher, including ones that once
        // existed only in the source.
        for key in [
            "`heartbeat_ms`",
            "`split_pk_updates`",
            "`cache_dir`",
            "`interval_ms`",
            "`default_topic`",
            "`max_in_flight`",
            "`topic_replication`",
            "`librdkafka`",
            "`routing_key`",
            "`batch_max`",
            "`max_fetch_size`",
            "`quarantine_after`",
        ] {
            assert!(md.contains(key), "{key} missing from the reference");
        }
        for p in PUBLISHERS {
            assert!(
                md.contains(&format!("`kind = \"{}\"`", p.kind)),
                "{}",
                p.kind
            );
            for k in p.key_names() {
                assert!(md.contains(&format!("| `{k}` |")), "{}.{k}", p.kind);
            }
        }
        for t in [
            "`[sink.rabbitmq]`",
            "`[sink.rocketmq]`",
            "`[sink.canal_server]`",
        ] {
            assert!(md.contains(t), "{t}");
        }
    }

    /// An optional key says what happens when it is absent: the reference is read by
    /// people deciding whether to set it.
    #[test]
    fn every_optional_key_states_its_default() {
        fn check(table: &str, schema: &Value, defs: &Value, missing: &mut Vec<String>) {
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for (k, p) in properties(schema) {
                let r = Render {
                    defs: defs.clone(),
                    out: &mut String::new(),
                };
                let target = r.resolve(&non_null(p.get("items").unwrap_or(p)));
                if !properties(&target).is_empty() {
                    check(&format!("{table}.{k}"), &target, defs, missing);
                    continue;
                }
                let d = p.get("description").and_then(Value::as_str).unwrap_or("");
                let stated = p.get("default").is_some()
                    || required.contains(&k.as_str())
                    || ["default", "absent", "required with", "unset"]
                        .iter()
                        .any(|w| d.to_lowercase().contains(w));
                if !stated {
                    missing.push(format!("{table}.{k}"));
                }
            }
        }
        let root = schemars::schema_for!(RawConfig).to_value();
        let defs = root.get("$defs").cloned().unwrap_or(Value::Null);
        let mut missing = Vec::new();
        check("", &root, &defs, &mut missing);
        for p in PUBLISHERS {
            let mut generator = SchemaGenerator::default();
            let keys = (p.keys)(&mut generator).to_value();
            let defs = Value::Object(generator.take_definitions(true));
            check(&format!("sink ({})", p.kind), &keys, &defs, &mut missing);
        }
        assert!(missing.is_empty(), "say the default of: {missing:?}");
    }

    #[test]
    fn schema_lists_publisher_keys_and_kinds() {
        let s = schema();
        let sink = s.pointer("/$defs/RawSink/properties").expect("sink");
        for k in [
            "brokers",
            "rabbitmq",
            "rocketmq",
            "canal_server",
            "path",
            "kind",
        ] {
            assert!(sink.get(k).is_some(), "{k}");
        }
        let kinds = sink.pointer("/kind/enum").expect("kind enum");
        assert_eq!(kinds.as_array().map(Vec::len), Some(PUBLISHERS.len()));
        assert_eq!(
            s.pointer("/$defs/RawSink/additionalProperties"),
            Some(&Value::Bool(false))
        );
        assert!(s.pointer("/$defs/RawRabbit/properties/exchange").is_some());
    }
}
