//! `sluice.toml`: raw serde types (every table `deny_unknown_fields`, so a typo is an
//! error naming the key) validated into the agent's typed settings.
//!
//! Invariant: secrets never sit in the file; the source password comes from an
//! environment variable or a file, and is never logged.

pub mod reference;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::format::Format;
use crate::router::{AllowedTopics, Limits, ModuleSpec, Policy};
use crate::sink::config::{Oversize, RawSink, SinkConfig};
use crate::source::{SourceConfig, StartPosition};

/// The whole `sluice.toml`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[source]`.
    pub source: RawSource,
    /// `[[modules]]`.
    #[serde(default)]
    pub modules: Vec<RawModule>,
    /// `[router]`.
    #[serde(default)]
    pub router: RawRouter,
    /// `[sink]`.
    pub sink: RawSink,
    /// `[checkpoint]`.
    #[serde(default)]
    pub checkpoint: RawCheckpoint,
    /// `[admin]`.
    #[serde(default)]
    pub admin: RawAdmin,
}

/// The admin HTTP API: health, metrics, checkpoint, module hot swap (`sluice ctl`).
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `HOST:PORT` of the admin HTTP API, or `off` (default `127.0.0.1:9180`).
    pub listen: Option<String>,
    /// Environment variable holding the bearer token (at least 16 characters). One of
    /// `token_env`/`token_file` is required when `listen` is not a loopback address;
    /// absent on loopback: no token.
    pub token_env: Option<String>,
    /// File holding the bearer token (instead of `token_env`; absent: see `token_env`).
    pub token_file: Option<PathBuf>,
    /// Seconds the checkpoint may stay put with work pending before `/readyz` fails
    /// (default 60).
    pub stall_after_secs: Option<u64>,
    /// Partitions of topics created through the API when the request names none
    /// (default 1).
    pub topic_partitions: Option<i32>,
    /// Replication factor of topics created through the API (default 1).
    pub topic_replication: Option<i32>,
    /// Seconds one request may take, body included, before it is answered 408 and
    /// its connection closed (default 120: a 64 MiB upload over a slow link).
    pub request_timeout_secs: Option<u64>,
}

/// The MySQL/MariaDB server Sluice replicates from, as a replica.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// Server host name or address.
    pub host: String,
    /// Server port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// User with `REPLICATION SLAVE`, `REPLICATION CLIENT` and `SELECT`.
    pub user: String,
    /// Environment variable holding the password. One of `password_env` and
    /// `password_file` is required (no default: passwords are never in this file).
    pub password_env: Option<String>,
    /// File holding the password (trailing newline ignored; no default, see
    /// `password_env`).
    pub password_file: Option<PathBuf>,
    /// Replica server id (unique among the server's replicas).
    pub server_id: u32,
    /// Where to start when no checkpoint exists: `latest`, `earliest`, `FILE:POS` or
    /// `gtid:SET` (a checkpoint, once written, always wins).
    #[serde(default = "default_start")]
    pub start: String,
    /// Milliseconds between the server's heartbeats on an idle binlog (at least 100); a
    /// connection silent for three periods is reconnected.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// UTC offset TIMESTAMP columns are rendered in, e.g. `+08:00` (Canal renders in
    /// its JVM's zone).
    #[serde(default = "default_tz")]
    pub timezone: String,
    /// Tables to capture: regular expressions matched against the whole
    /// `database.table`, case-insensitively (Canal's `filter.regex`; default: all).
    #[serde(default)]
    pub include: Vec<String>,
    /// Tables never captured, same patterns; wins over `include` (Canal's
    /// `filter.black.regex`; default: none).
    #[serde(default)]
    pub exclude: Vec<String>,
}

const fn default_port() -> u16 {
    3306
}
fn default_start() -> String {
    "latest".into()
}
const fn default_heartbeat_ms() -> u64 {
    5000
}
fn default_tz() -> String {
    "+00:00".into()
}

/// One routing module (a WebAssembly component) per `[[modules]]` entry. Each module
/// sees the events it subscribed to; every module's decisions are published, so two
/// modules writing one topic both land there (fan-out, told apart by the
/// `sluice.module` header). An event no module subscribed to is published nowhere, and
/// the checkpoint still moves past it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawModule {
    /// Unique name (letters, digits, `-`, `_`): metrics, logs, `sluice ctl load NAME`,
    /// and `<name>.wasm` in `router.modules_dir`.
    pub name: String,
    /// Component file (relative to this file), or `builtin:NAME` for a module built into
    /// the binary (`sluice module export --list`).
    pub file: PathBuf,
    /// Topics this module may write (`orders.*`: any topic starting `orders.`); a
    /// decision naming another topic is the module's error. Absent: any topic.
    pub topics: Option<Vec<String>>,
    /// What a failing batch (trap, deadline, memory cap, bad decision) does: `halt` the
    /// agent, `skip` the module's share of it, or `dead-letter` it to
    /// `dead_letter_topic`.
    #[serde(default = "default_policy")]
    pub on_error: String,
    /// Topic receiving the events of failed batches (required with `on_error =
    /// "dead-letter"`, unused otherwise).
    pub dead_letter_topic: Option<String>,
    /// Memory cap of one instance in MiB (1..1024): growing beyond it fails the batch.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: usize,
    /// Time one call (one batch) may take, in milliseconds (1..60000): a call past it
    /// is interrupted and fails the batch.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Batches in a row failing outright before the version is quarantined (default 3;
    /// 0: only the failing-time budget quarantines it).
    pub quarantine_after: Option<u32>,
    /// First quarantine in milliseconds, 10..60000 (default 1000; doubles on every
    /// failed probe, up to 60 s).
    pub quarantine_ms: Option<u64>,
    /// Message format of this module's destinations (default: the sink's); a decision
    /// can still pick one with the `sluice.format` header.
    pub format: Option<Format>,
    /// The module's own configuration: handed to it as `key = "value"` strings (nested
    /// tables become dotted keys); keys the module does not read are refused by name.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub config: toml::Table,
}

fn default_policy() -> String {
    "halt".into()
}
const fn default_memory_mb() -> usize {
    64
}
const fn default_deadline_ms() -> u64 {
    50
}

/// How events reach the modules, and where new module versions come from.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRouter {
    /// Directory watched for new module versions: a `<name>.wasm` appearing there is
    /// canaried and swapped in (absent: versions come through `sluice ctl load` only).
    pub modules_dir: Option<PathBuf>,
    /// Events per module call, 1..10000 (default 500).
    pub batch: Option<usize>,
    /// Precompiled code cache (default: `module-cache` beside the checkpoint file).
    pub cache_dir: Option<PathBuf>,
    /// Publish an UPDATE that changes the primary key as a delete of the old key and
    /// an insert of the new one (default true, false with `kind = "canal-server"`), so
    /// each key's events stay in one partition's order.
    pub split_pk_updates: Option<bool>,
}

/// Where the last acknowledged position is kept: it only ever names a transaction
/// boundary whose messages the broker acknowledged.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCheckpoint {
    /// Checkpoint file, written atomically (default `sluice.checkpoint` beside this
    /// file).
    pub path: Option<PathBuf>,
    /// How often the checkpoint is written, in milliseconds, 10..60000 (default 200):
    /// the most a crash can send again is what was acknowledged in one interval.
    pub interval_ms: Option<u64>,
}

/// Validated agent settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Source.
    pub source: SourceConfig,
    /// Modules with their component files.
    pub modules: Vec<(ModuleSpec, PathBuf)>,
    /// Watched directory.
    pub modules_dir: Option<PathBuf>,
    /// Events per module call.
    pub batch: usize,
    /// Code cache.
    pub cache_dir: Option<PathBuf>,
    /// Split primary-key-changing updates.
    pub split_pk_updates: bool,
    /// Per-module message formats (modules not listed use the sink's).
    pub module_formats: BTreeMap<String, Format>,
    /// Sink.
    pub sink: SinkConfig,
    /// Checkpoint file.
    pub checkpoint: PathBuf,
    /// Checkpoint write interval.
    pub checkpoint_interval: Duration,
    /// Admin API (`None`: off).
    pub admin: Option<crate::admin::AdminConfig>,
    /// A checkpoint with work pending that has not moved for this long fails `/readyz`.
    pub stall_after: Duration,
}

impl Config {
    /// Topics the configuration names, which must exist before anything is published
    /// (`sluice check` and startup look them up): dead-letter topics, the default topic
    /// when no module routes, and the exact names (not `prefix*`) modules may write to.
    pub fn declared_topics(&self) -> Vec<String> {
        let mut topics = Vec::new();
        if self.modules.is_empty() {
            topics.push(self.sink.default_topic.clone());
        }
        if let Oversize::DeadLetter(t) = &self.sink.oversize {
            topics.push(t.clone());
        }
        for (spec, _) in &self.modules {
            if let Policy::DeadLetter(t) = &spec.on_error {
                topics.push(t.clone());
            }
            if let AllowedTopics::Only(list) = &spec.topics {
                topics.extend(list.iter().filter(|t| !t.ends_with('*')).cloned());
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        topics.retain(|t| seen.insert(t.clone()));
        topics
    }

    /// Reads and validates `path`. Relative paths in it are relative to the file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {}",
                path.display(),
                crate::secret::toml_error(&text, &e)
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::validate(raw, base).with_context(|| format!("in {}", path.display()))
    }

    /// Validates a parsed file; `base` resolves relative paths.
    pub fn validate(raw: RawConfig, base: &Path) -> anyhow::Result<Config> {
        let rel = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let s = raw.source;
        let password = match (&s.password_env, &s.password_file) {
            (Some(_), Some(_)) => {
                bail!("source: set one of `password_env` and `password_file`, not both")
            }
            (Some(var), None) => std::env::var(var).with_context(|| {
                format!("source.password_env: environment variable `{var}` is not set")
            })?,
            (None, Some(f)) => std::fs::read_to_string(rel(f))
                .with_context(|| format!("source.password_file: cannot read `{}`", f.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
            (None, None) => bail!(
                "source: `password_env` or `password_file` is required (passwords are not written in the config file)"
            ),
        };
        if s.server_id == 0 {
            bail!("source.server_id: must be a positive number unique among the server's replicas");
        }
        let mut source = SourceConfig::new(&s.host, s.port, &s.user, &password, s.server_id);
        source.start = s
            .start
            .parse::<StartPosition>()
            .map_err(|e| anyhow::anyhow!("source.start: {e}"))?;
        source.heartbeat = Duration::from_millis(s.heartbeat_ms.max(100));
        source.read_timeout = source.heartbeat * 3;
        source.tz_offset_secs = crate::binlog::temporal::parse_utc_offset(&s.timezone)
            .map_err(|e| anyhow::anyhow!("source.timezone: {e}"))?;
        source.tables = Arc::new(
            crate::source::TableSelection::new(&s.include, &s.exclude)
                .map_err(anyhow::Error::msg)?,
        );

        let mut modules = Vec::new();
        let mut module_formats = BTreeMap::new();
        let mut names = std::collections::BTreeSet::new();
        for (i, m) in raw.modules.into_iter().enumerate() {
            let at = format!("modules[{i}] (`{}`)", m.name);
            if m.name.is_empty()
                || !m
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                bail!("{at}.name: use letters, digits, `-` and `_`");
            }
            if !names.insert(m.name.clone()) {
                bail!("{at}.name: another module has this name");
            }
            let on_error = match (m.on_error.as_str(), &m.dead_letter_topic) {
                ("halt", _) => Policy::Halt,
                ("skip", _) => Policy::Skip,
                ("dead-letter", Some(t)) => Policy::DeadLetter(t.clone()),
                ("dead-letter", None) => {
                    bail!("{at}.dead_letter_topic: required with on_error = \"dead-letter\"")
                }
                (other, _) => bail!("{at}.on_error: `{other}` is not halt, skip or dead-letter"),
            };
            if m.memory_mb == 0 || m.memory_mb > 1024 {
                bail!("{at}.memory_mb: {} is not within 1..1024", m.memory_mb);
            }
            if m.deadline_ms == 0 || m.deadline_ms > 60_000 {
                bail!("{at}.deadline_ms: {} is not within 1..60000", m.deadline_ms);
            }
            let deadline = Duration::from_millis(m.deadline_ms);
            let mut breaker = crate::router::BreakerSpec::for_deadline(deadline);
            if let Some(n) = m.quarantine_after {
                breaker.after = n;
            }
            if let Some(ms) = m.quarantine_ms {
                if !(10..=60_000).contains(&ms) {
                    bail!("{at}.quarantine_ms: {ms} is not within 10..60000");
                }
                breaker.first = Duration::from_millis(ms);
            }
            if let Some(f) = m.format {
                module_formats.insert(m.name.clone(), f);
            }
            let text = toml::to_string(&m.config).context("module config")?;
            let config = crate::router::tools::flatten_config(&text)?;
            let file = match crate::router::builtin::name_of(&m.file) {
                Some(name) => {
                    if crate::router::builtin::bytes(name).is_none() {
                        bail!("{at}.file: {}", crate::router::builtin::unknown(name));
                    }
                    m.file.clone()
                }
                None => rel(&m.file),
            };
            if crate::router::builtin::name_of(&file).is_none() && !file.is_file() {
                bail!("{at}.file: `{}` does not exist", file.display());
            }
            modules.push((
                ModuleSpec {
                    name: m.name,
                    config,
                    topics: match m.topics {
                        Some(t) => AllowedTopics::Only(t),
                        None => AllowedTopics::Any,
                    },
                    limits: Limits {
                        memory_bytes: m.memory_mb << 20,
                        deadline,
                    },
                    on_error,
                    breaker,
                },
                file,
            ));
        }

        let sink = raw.sink.validate(&rel)?;
        let modules_dir = raw.router.modules_dir.map(|d| rel(&d));
        let mut admin = validate_admin(&raw.admin, &rel)?;
        if let Some(a) = &mut admin {
            a.modules_dir = modules_dir.clone();
        }
        Ok(Config {
            admin,
            stall_after: Duration::from_secs(raw.admin.stall_after_secs.unwrap_or(60).max(1)),
            source,
            modules,
            modules_dir,
            batch: raw.router.batch.unwrap_or(500).clamp(1, 10_000),
            // Precompiled modules live beside the checkpoint unless placed elsewhere, so a
            // restart or a swap back to a known version does not recompile.
            cache_dir: Some(match raw.router.cache_dir {
                Some(d) => rel(&d),
                None => rel(raw
                    .checkpoint
                    .path
                    .as_deref()
                    .unwrap_or(Path::new("sluice.checkpoint")))
                .parent()
                .map(|p| p.join("module-cache"))
                .unwrap_or_else(|| PathBuf::from("module-cache")),
            }),
            // Canal's TCP clients get a key change as the UPDATE Canal sends (there are
            // no partitions to keep a key's events in); brokers get the split.
            split_pk_updates: raw
                .router
                .split_pk_updates
                .unwrap_or(sink.format != Format::CanalProtobuf),
            module_formats,
            sink,
            checkpoint: rel(raw
                .checkpoint
                .path
                .as_deref()
                .unwrap_or(Path::new("sluice.checkpoint"))),
            checkpoint_interval: Duration::from_millis(
                raw.checkpoint.interval_ms.unwrap_or(200).clamp(10, 60_000),
            ),
        })
    }
}

/// The admin token exactly as requests must present it: surrounding whitespace (a
/// file's trailing newline) is not part of it, and what is left must be at least 16
/// visible ASCII characters, so the length checked is the length compared (HTTP header
/// values cannot carry other bytes, so a token with them could never match).
fn admin_token(raw: &str, key: &str) -> anyhow::Result<String> {
    let t = raw.trim_matches(|c: char| c.is_ascii_whitespace());
    if let Some(bad) = t.chars().find(|c| !c.is_ascii_graphic()) {
        bail!(
            "{key}: the token may hold only visible ASCII characters, found {}",
            if bad.is_whitespace() {
                "whitespace inside it".to_string()
            } else {
                format!("U+{:04X}", u32::from(bad))
            }
        );
    }
    if t.len() < 16 {
        bail!(
            "{key}: the token has {} characters (surrounding whitespace not counted), too few to \
             resist guessing; use at least 16",
            t.len()
        );
    }
    Ok(t.to_string())
}

fn validate_admin(
    a: &RawAdmin,
    rel: &dyn Fn(&Path) -> PathBuf,
) -> anyhow::Result<Option<crate::admin::AdminConfig>> {
    use crate::secret::Secret;
    let listen = a.listen.as_deref().unwrap_or("127.0.0.1:9180");
    if listen == "off" {
        return Ok(None);
    }
    let addr: std::net::SocketAddr = listen.parse().map_err(|e| {
        anyhow::anyhow!(
            "admin.listen: `{listen}` is not HOST:PORT with an IP address ({e}), nor `off`"
        )
    })?;
    let token = match (&a.token_env, &a.token_file) {
        (Some(_), Some(_)) => bail!("admin: set one of `token_env` and `token_file`, not both"),
        (Some(var), None) => Some(admin_token(
            &std::env::var(var).with_context(|| {
                format!("admin.token_env: environment variable `{var}` is not set")
            })?,
            &format!("admin.token_env (`{var}`)"),
        )?),
        (None, Some(f)) => Some(admin_token(
            &std::fs::read_to_string(rel(f))
                .with_context(|| format!("admin.token_file: cannot read `{}`", f.display()))?,
            &format!("admin.token_file (`{}`)", f.display()),
        )?),
        (None, None) => None,
    };
    if !addr.ip().is_loopback() && token.is_none() {
        bail!(
            "admin.listen: `{addr}` is not a loopback address; set `token_env` or `token_file` so the API requires a bearer token"
        );
    }
    let partitions = a.topic_partitions.unwrap_or(1);
    if partitions < 1 {
        bail!("admin.topic_partitions: must be at least 1");
    }
    let replication = a.topic_replication.unwrap_or(1);
    if replication < 1 {
        bail!("admin.topic_replication: must be at least 1");
    }
    let request_timeout = a.request_timeout_secs.unwrap_or(120);
    if request_timeout == 0 {
        bail!("admin.request_timeout_secs: must be at least 1");
    }
    Ok(Some(crate::admin::AdminConfig {
        listen: addr,
        token: token.map(Secret::new),
        topic_partitions: partitions,
        topic_replication: replication,
        modules_dir: None,
        request_timeout: std::time::Duration::from_secs(request_timeout),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        Config::validate(raw, Path::new("."))
    }

    const BASE: &str =
        "[source]\nhost = \"127.0.0.1\"\nuser = \"u\"\npassword_env = \"HOME\"\nserver_id = 7\n";

    #[test]
    fn declared_topics_are_the_ones_startup_must_find() {
        let module = write_file("m.wasm", "");
        let cfg = parse(&format!(
            "{BASE}[sink]\nkind = \"kafka\"\nbrokers = \"b:9092\"\ndefault_topic = \"unused\"\non_oversize = \"dead-letter\"\noversize_topic = \"big\"\n\
             [[modules]]\nname = \"a\"\nfile = \"{module}\"\ntopics = [\"orders\", \"orders.*\", \"big\"]\non_error = \"dead-letter\"\ndead_letter_topic = \"a.dlq\"\n"
        ))
        .unwrap();
        assert_eq!(cfg.declared_topics(), ["big", "a.dlq", "orders"]);
        let cfg = parse(&format!(
            "{BASE}[sink]\nkind = \"kafka\"\nbrokers = \"b:9092\"\ndefault_topic = \"all\"\n"
        ))
        .unwrap();
        assert_eq!(cfg.declared_topics(), ["all"]);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse(&format!("{BASE}sever_id = 3\n[sink]\nkind = \"stdout\"\n")).unwrap_err();
        assert!(e.to_string().contains("sever_id"), "{e}");
        let e = parse(&format!(
            "{BASE}[sink]\nkind = \"stdout\"\nformatt = \"canal\"\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("formatt"), "{e}");
    }

    #[test]
    fn table_lists_are_read_and_a_bad_pattern_is_named() {
        let cfg = parse(&format!(
            "{BASE}include = ['shop\\..*']\nexclude = ['shop\\.tmp_.*']\n[sink]\nkind = \"stdout\"\n"
        ))
        .unwrap();
        assert!(cfg.source.tables.captures("shop", "orders"));
        assert!(!cfg.source.tables.captures("shop", "tmp_1"));
        assert!(!cfg.source.tables.captures("crm", "users"));
        let e = parse(&format!(
            "{BASE}include = ['shop\\.(']\n[sink]\nkind = \"stdout\"\n"
        ))
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("source.include: `shop\\.(` is not a valid table pattern"),
            "{e}"
        );
    }

    #[test]
    fn secrets_never_print() {
        let text = format!(
            "{}[sink]\nkind = \"kafka\"\nbrokers = \"b:9092\"\n[sink.librdkafka]\n\"sasl.password\" = \"kafka-secret-value\"\n\"client.id\" = \"me\"\n[admin]\nlisten = \"0.0.0.0:9180\"\ntoken_file = \"{}\"\n",
            BASE.replace(
                "password_env = \"HOME\"",
                &format!("password_file = \"{}\"", write_file("pw", "db-pass-xyzzy"))
            ),
            write_file("token", "admin-token-0123456789")
        );
        let cfg = parse(&text).unwrap();
        let shown = format!("{cfg:?}");
        assert!(shown.contains("client.id"), "{shown}");
        assert_eq!(cfg.source.password.expose(), "db-pass-xyzzy");
        for secret in [
            "kafka-secret-value",
            "admin-token-0123456789",
            "db-pass-xyzzy",
        ] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
    }

    #[test]
    fn the_admin_token_is_checked_as_it_is_compared() {
        let with_token = |t: &str| {
            parse(&format!(
                "{BASE}[sink]\nkind = \"stdout\"\n[admin]\nlisten = \"0.0.0.0:9180\"\ntoken_file = \"{}\"\n",
                write_file("tok-check", t)
            ))
        };
        // `a` and fifteen spaces: sixteen bytes, one character of token.
        let e = with_token(&format!("a{}", " ".repeat(15))).unwrap_err();
        assert!(e.to_string().contains("has 1 characters"), "{e}");
        let e = with_token("0123456789 abcdefgh").unwrap_err();
        assert!(e.to_string().contains("whitespace inside"), "{e}");
        let e = with_token("0123456789abcdéfgh").unwrap_err();
        assert!(e.to_string().contains("U+00E9"), "{e}");
        // A file's trailing newline is not part of the token.
        let ok = with_token("0123456789abcdefgh\n").unwrap();
        let token = ok.admin.and_then(|a| a.token).unwrap();
        assert_eq!(token.expose(), "0123456789abcdefgh");
    }

    fn write_file(name: &str, content: &str) -> String {
        let p = std::env::temp_dir().join(format!("sluice-{name}-{}", std::process::id()));
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    }

    #[test]
    fn values_are_checked() {
        let e = parse(&format!("{BASE}[sink]\nkind = \"kafka\"\n")).unwrap_err();
        assert!(e.to_string().contains("sink.brokers"), "{e}");
        let e = parse(&format!(
            "{BASE}[sink]\nkind = \"kafka\"\nbrokers = \"b:9092\"\n[sink.librdkafka]\n\"enable.idempotence\" = \"false\"\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("enable.idempotence"), "{e}");
        let unset = BASE.replace(
            "password_env = \"HOME\"",
            "password_env = \"SLUICE_SURELY_UNSET_VAR\"",
        );
        let e = parse(&format!("{unset}[sink]\nkind = \"stdout\"\n")).unwrap_err();
        assert!(e.to_string().contains("SLUICE_SURELY_UNSET_VAR"), "{e}");
        let bad_start = BASE.replace("server_id = 7", "server_id = 7\nstart = \"nope\"");
        let e = parse(&format!("{bad_start}[sink]\nkind = \"stdout\"\n")).unwrap_err();
        assert!(e.to_string().contains("source.start"), "{e}");
        let e = parse(&format!(
            "{BASE}[sink]\nkind = \"stdout\"\n[admin]\nlisten = \"0.0.0.0:9180\"\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("not a loopback"), "{e}");
        let e = parse(&format!(
            "{BASE}[sink]\nkind = \"stdout\"\n[admin]\nlisten = \"localhost:1\"\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains("admin.listen"), "{e}");
        let ok = parse(&format!("{BASE}[sink]\nkind = \"stdout\"\n")).unwrap();
        assert_eq!(
            ok.admin.as_ref().map(|a| a.listen.to_string()).as_deref(),
            Some("127.0.0.1:9180")
        );
        assert_eq!(ok.sink.unit, crate::sink::config::MessageUnit::Event);
        assert_eq!(ok.source.server_id, 7);
    }
}
