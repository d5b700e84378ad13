//! `[sink]`: the settings every publisher shares (format, message unit, size limit and
//! its policy, in-flight bound), and the registry of publishers: `kind` picks one, and
//! that publisher reads its own keys and sections from what is left of `[sink]`.
//!
//! Invariants: a key no part of Sluice reads is an error naming it (and the publisher
//! that would read it, when another one does), so a typo or a setting meant for another
//! broker never passes silently; publishers are registered in [`PUBLISHERS`] only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{Sink, SinkError};
use crate::format::Format;

/// Every publisher Sluice has: the one place one is registered.
pub const PUBLISHERS: &[Registration] = &[
    super::local::STDOUT,
    super::local::FILE,
    super::kafka::REGISTRATION,
    super::rabbitmq::REGISTRATION,
    super::rocketmq::REGISTRATION,
    super::canal_server::REGISTRATION,
];

/// How a publisher joins Sluice: its `sink.kind`, the `[sink]` keys and sections it
/// reads besides the shared ones, and how it reads them.
pub struct Registration {
    /// `sink.kind` naming it.
    pub kind: &'static str,
    /// Its own `[sink]` keys and sections (`brokers`, `[sink.rabbitmq]`, ...), as the
    /// schema of a struct whose fields are those keys: their names route a misplaced
    /// key's error to its publisher, and their doc comments are the config reference.
    pub keys: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    /// Reads and checks its keys into a validated section.
    pub section: fn(&mut Section<'_>) -> anyhow::Result<Arc<dyn PublisherConfig>>,
}

impl Registration {
    /// The `[sink]` keys and sections it reads.
    pub fn key_names(&self) -> Vec<String> {
        let schema = (self.keys)(&mut schemars::SchemaGenerator::default());
        schema
            .get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// `[sink]` keys of a publisher that has none of its own.
#[derive(schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct NoKeys {}

/// A publisher's validated settings, able to open the publisher.
pub trait PublisherConfig: std::fmt::Debug + Send + Sync {
    /// The `sink.kind` it came from.
    fn kind(&self) -> &'static str;

    /// Opens the publisher (connecting, or starting the client that connects).
    fn open(&self, sink: &SinkConfig) -> Result<Sink, SinkError>;

    /// The one message format this publisher carries, when it needs one (the Canal
    /// server serves protobuf entries); `None`: any, as `sink.format` says.
    fn format(&self) -> Option<Format> {
        None
    }
}

/// What is left of `[sink]` for the chosen publisher to read.
pub struct Section<'a> {
    kind: &'static str,
    rest: toml::Table,
    rel: &'a dyn Fn(&Path) -> PathBuf,
}

impl Section<'_> {
    /// Takes key `key` (`sink.KEY`), if set, parsed as `T`.
    pub fn take<T: DeserializeOwned>(&mut self, key: &str) -> anyhow::Result<Option<T>> {
        // A key read but not declared would be missing from errors and the reference.
        debug_assert!(
            PUBLISHERS
                .iter()
                .any(|p| p.kind == self.kind && p.key_names().iter().any(|k| k == key)),
            "kind `{}` reads `{key}` without declaring it in its keys",
            self.kind
        );
        match self.rest.remove(key) {
            None => Ok(None),
            Some(v) => {
                let mut secrets = Vec::new();
                secret_values(key, &v, &mut secrets);
                T::deserialize(v).map(Some).map_err(|e| {
                    // The parser's message may quote a value: never a secret's.
                    let mut message = e.message().trim_end().to_string();
                    for s in &secrets {
                        message = message.replace(s.as_str(), "***");
                    }
                    anyhow::anyhow!("sink.{key}: {message}")
                })
            }
        }
    }

    /// Takes key `key`, which kind `self.kind` requires.
    pub fn require<T: DeserializeOwned>(&mut self, key: &str, what: &str) -> anyhow::Result<T> {
        self.take(key)?.with_context(|| {
            format!(
                "sink.{key}: required with kind = \"{}\" ({what})",
                self.kind
            )
        })
    }

    /// A path from the config file, relative to the file's directory.
    pub fn path(&self, p: &Path) -> PathBuf {
        (self.rel)(p)
    }

    /// Resolves paths relative to the config file's directory.
    pub fn resolver(&self) -> &dyn Fn(&Path) -> PathBuf {
        self.rel
    }
}

/// The values of secret-looking keys in `v` (named `key`) and its tables, as text.
fn secret_values(key: &str, v: &toml::Value, out: &mut Vec<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                secret_values(k, v, out);
            }
        }
        toml::Value::String(s) if crate::secret::is_secret_key(key) && !s.is_empty() => {
            out.push(s.clone());
        }
        toml::Value::Array(_) | toml::Value::String(_) => {}
        other if crate::secret::is_secret_key(key) => out.push(other.to_string()),
        _ => {}
    }
}

/// Where messages go: `kind` picks the publisher. The keys here are shared by every
/// publisher; each publisher's own keys follow, and a key of another publisher is an
/// error naming that publisher.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct RawSink {
    /// Which publisher: `stdout`, `file`, `kafka`, `rabbitmq`, `rocketmq` or
    /// `canal-server`.
    pub kind: String,
    /// Message format (default `canal`, Canal's FlatMessage JSON; `canal-server` sets
    /// `canal-protobuf` itself). A module can set its own with `modules.format`.
    pub format: Option<Format>,
    /// One message per `event` (the rows of one binlog rows event sharing a
    /// destination, as Canal; default), per `row`, or per `transaction` and destination.
    pub message: Option<String>,
    /// Topic every change goes to when no module is configured (default `sluice`);
    /// unused with modules.
    pub default_topic: Option<String>,
    /// Largest message in bytes, key and headers included (default 1000000, Kafka's
    /// default); a larger one is handled as `on_oversize` says.
    pub max_message_bytes: Option<usize>,
    /// A message over `max_message_bytes`: `halt` (default) stops with an error naming
    /// it; `dead-letter` sends a small reference to `oversize_topic` instead.
    pub on_oversize: Option<String>,
    /// Topic receiving the references (required with `on_oversize = "dead-letter"`).
    pub oversize_topic: Option<String>,
    /// Messages sent but not yet acknowledged before reading the binlog pauses
    /// (default 20000): the bound on memory while a broker is slow or down.
    pub max_in_flight: Option<usize>,
    /// The publisher's own keys and sections (each publisher's [`Registration::keys`]).
    #[serde(flatten)]
    #[schemars(skip)]
    pub rest: toml::Table,
}

/// One message per what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageUnit {
    /// Rows of one rows event sharing a destination (Canal's default).
    Event,
    /// Each row alone.
    Row,
    /// Everything a transaction sends to one destination, as a JSON array of the
    /// per-event messages (split into numbered parts above `max_message_bytes`).
    Transaction,
}

/// Oversize message policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Oversize {
    /// Stop with an error naming the message.
    Halt,
    /// Send a small reference message to this topic instead.
    DeadLetter(String),
}

/// Validated sink settings.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The publisher and its own settings.
    pub publisher: Arc<dyn PublisherConfig>,
    /// JSON format.
    pub format: Format,
    /// Message granularity.
    pub unit: MessageUnit,
    /// Topic when no module routes.
    pub default_topic: String,
    /// Largest message.
    pub max_message_bytes: usize,
    /// Oversize policy.
    pub oversize: Oversize,
    /// In-flight bound.
    pub max_in_flight: usize,
}

impl RawSink {
    /// Checks the shared settings, then hands the rest to the publisher `kind` names;
    /// `rel` resolves relative paths.
    pub fn validate(self, rel: &dyn Fn(&Path) -> PathBuf) -> anyhow::Result<SinkConfig> {
        let Some(reg) = PUBLISHERS.iter().find(|p| p.kind == self.kind) else {
            let known: Vec<&str> = PUBLISHERS.iter().map(|p| p.kind).collect();
            bail!(
                "sink.kind: `{}` is not one of {}",
                self.kind,
                known.join(", ")
            );
        };
        let mut section = Section {
            kind: reg.kind,
            rest: self.rest,
            rel,
        };
        let publisher = (reg.section)(&mut section)?;
        if let Some(key) = section.rest.keys().next() {
            let owner = PUBLISHERS
                .iter()
                .find(|p| p.key_names().iter().any(|k| k == key));
            match owner {
                Some(o) => bail!(
                    "sink.{key}: only used with kind = \"{}\" (kind is `{}`)",
                    o.kind,
                    reg.kind
                ),
                None => bail!("sink.{key}: unknown setting"),
            }
        }
        let unit = match self.message.as_deref().unwrap_or("event") {
            "event" => MessageUnit::Event,
            "row" => MessageUnit::Row,
            "transaction" => MessageUnit::Transaction,
            other => bail!("sink.message: `{other}` is not event, row or transaction"),
        };
        let oversize = match (
            self.on_oversize.as_deref().unwrap_or("halt"),
            &self.oversize_topic,
        ) {
            ("halt", _) => Oversize::Halt,
            ("dead-letter", Some(t)) => Oversize::DeadLetter(t.clone()),
            ("dead-letter", None) => {
                bail!("sink.oversize_topic: required with on_oversize = \"dead-letter\"")
            }
            (other, _) => bail!("sink.on_oversize: `{other}` is not halt or dead-letter"),
        };
        let format = match (publisher.format(), self.format) {
            (Some(need), Some(set)) if need != set => bail!(
                "sink.format: kind = \"{}\" sends {need:?} messages only; remove `format`",
                reg.kind
            ),
            (Some(need), _) => need,
            (None, set) => set.unwrap_or_default(),
        };
        Ok(SinkConfig {
            publisher,
            format,
            unit,
            default_topic: self.default_topic.unwrap_or_else(|| "sluice".into()),
            max_message_bytes: self.max_message_bytes.unwrap_or(1_000_000),
            oversize,
            max_in_flight: self.max_in_flight.unwrap_or(20_000).max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(text: &str) -> anyhow::Result<SinkConfig> {
        let raw: RawSink = toml::from_str(text)?;
        raw.validate(&|p: &Path| Path::new("/etc/sluice").join(p))
    }

    #[test]
    fn every_publisher_reads_only_its_own_keys() {
        let ok = sink("kind = \"file\"\npath = \"out.jsonl\"\n").expect("file");
        assert_eq!(ok.publisher.kind(), "file");
        assert_eq!(ok.unit, MessageUnit::Event);
        let e = sink("kind = \"file\"\n").expect_err("no path");
        assert!(e.to_string().contains("sink.path"), "{e}");
        // A key of another publisher names that publisher.
        let e = sink("kind = \"stdout\"\nbrokers = \"b:9092\"\n").expect_err("kafka key");
        assert!(
            e.to_string()
                .contains("sink.brokers: only used with kind = \"kafka\""),
            "{e}"
        );
        let e = sink("kind = \"kafka\"\nbrokers = \"b:1\"\n[rabbitmq]\nexchange = \"x\"\n")
            .expect_err("rabbit section");
        assert!(e.to_string().contains("sink.rabbitmq: only used"), "{e}");
        // A typo is named.
        let e = sink("kind = \"stdout\"\nmax_in_fligth = 3\n").expect_err("typo");
        assert!(e.to_string().contains("sink.max_in_fligth: unknown"), "{e}");
        // A wrong type is named with its key.
        let e = sink("kind = \"file\"\npath = 3\n").expect_err("type");
        assert!(e.to_string().contains("sink.path"), "{e}");
        let e = sink("kind = \"kafak\"\n").expect_err("kind");
        assert!(
            e.to_string()
                .contains("`kafak` is not one of stdout, file, kafka, rabbitmq, rocketmq"),
            "{e}"
        );
    }

    #[test]
    fn a_publisher_section_error_never_quotes_a_secret() {
        let e = sink(
            "kind = \"kafka\"\nbrokers = \"b:1\"\n[librdkafka]\n\"sasl.password\" = 918273645\n",
        )
        .expect_err("not a string");
        let shown = format!("{e:#}");
        assert!(shown.contains("sink.librdkafka"), "{shown}");
        assert!(!shown.contains("918273645"), "{shown}");
    }

    #[test]
    fn registered_kinds_and_keys_are_unique() {
        let mut kinds = std::collections::BTreeSet::new();
        let mut keys = std::collections::BTreeMap::new();
        for p in PUBLISHERS {
            assert!(kinds.insert(p.kind), "kind `{}` registered twice", p.kind);
            for k in p.key_names() {
                // A key two publishers read could not name its owner in errors.
                if let Some(other) = keys.insert(k.clone(), p.kind) {
                    panic!("`{k}` is read by both {other} and {}", p.kind);
                }
            }
        }
    }
}
