//! `sluice canal import`: a Canal instance's `instance.properties` (and optionally the
//! server's `canal.properties`) as a Sluice configuration.
//!
//! Invariants:
//! - no secret is copied: passwords and secret keys become environment-variable
//!   references the output names, whatever the input held;
//! - every key that changes what Canal does and that the output does not carry is
//!   listed with the reason (in the output's header comments and in
//!   [`Converted::not_translated`]); keys whose value is Canal's default, and Canal's
//!   own internals (its storage, threads, ZooKeeper, admin console), are not;
//! - the output parses as Sluice's configuration, with canal-compat configured from
//!   the `canal.mq.*` keys unchanged, so routing stays Canal's.

use std::fmt::Write as _;

use anyhow::{Context, bail};

use super::properties::Properties;

/// The environment variable the output names for the database password.
pub const SOURCE_PASSWORD_ENV: &str = "SLUICE_SOURCE_PASSWORD";

/// What the converter needs besides the files.
#[derive(Debug, Clone)]
pub struct Options {
    /// Canal's name of the instance (its directory under `conf/`): the Canal server's
    /// destination with `canal.serverMode = tcp`.
    pub destination: String,
    /// The canal-compat module file the output loads.
    pub module: String,
    /// Where the output keeps its checkpoint.
    pub checkpoint: String,
}

/// The result.
#[derive(Debug)]
pub struct Converted {
    /// The configuration (TOML).
    pub toml: String,
    /// Keys not carried over: (key, value, why).
    pub not_translated: Vec<(String, String, String)>,
    /// Environment variables the configuration reads, and what to put in each.
    pub env: Vec<(String, String)>,
}

/// Canal's internals: no counterpart needed, whatever their value.
const INTERNAL: &[&str] = &[
    "canal.register.ip",
    "canal.metrics.pull.port",
    "canal.admin.",
    "canal.zkServers",
    "canal.zookeeper.",
    "canal.withoutNetty",
    "canal.file.",
    "canal.instance.memory.",
    "canal.instance.detecting.",
    "canal.instance.fallbackIntervalInSeconds",
    "canal.instance.network.",
    "canal.instance.binlog.format",
    "canal.instance.binlog.image",
    "canal.instance.parser.",
    "canal.instance.tsdb.",
    "canal.conf.dir",
    "canal.auto.scan",
    "canal.auto.scan.interval",
    "canal.instance.global.",
    "canal.instance.connectionCharset",
    "canal.instance.transaction.size",
    "canal.mq.canalBatchSize",
    "canal.mq.canalGetTimeout",
    "canal.mq.send.thread.size",
    "canal.mq.build.thread.size",
    "canal.mq.accessChannel",
    "canal.aliyun.uid",
    "kafka.retries",
    "kafka.max.in.flight.requests.per.connection",
    "rocketmq.retry.times.when.send.failed",
    "rocketmq.vip.channel.enabled",
    "rabbitmq.deliveryMode",
    "canal.destinations",
    "canal.serverMode",
    "canal.instance.gtidon",
    "canal.instance.defaultDatabaseName",
];

/// Keys that change behaviour when set to anything but their default (given here),
/// with why Sluice does not carry them.
const UNSUPPORTED: &[(&str, &str, &str)] = &[
    (
        "canal.instance.filter.table.error",
        "false",
        "Sluice stops on a table it cannot decode rather than skipping it",
    ),
    (
        "canal.instance.get.ddl.isolation",
        "false",
        "DDL is not isolated into batches of its own",
    ),
    (
        "canal.instance.filter.field",
        "",
        "column filters are not translated: ship columns with a module's subscription",
    ),
    (
        "canal.instance.filter.black.field",
        "",
        "column filters are not translated: ship columns with a module's subscription",
    ),
    (
        "canal.instance.master.timestamp",
        "",
        "starting at a timestamp is not supported: give journal.name/position or a GTID set",
    ),
    (
        "canal.instance.standby.address",
        "",
        "failover to a standby is not supported: point source.host at the server to follow",
    ),
    (
        "canal.instance.standby.journal.name",
        "",
        "failover to a standby is not supported",
    ),
    (
        "canal.instance.standby.position",
        "",
        "failover to a standby is not supported",
    ),
    (
        "canal.instance.standby.timestamp",
        "",
        "failover to a standby is not supported",
    ),
    (
        "canal.instance.standby.gtid",
        "",
        "failover to a standby is not supported",
    ),
    (
        "canal.instance.rds.accesskey",
        "",
        "reading RDS binlog backups from OSS is not supported",
    ),
    (
        "canal.instance.rds.secretkey",
        "",
        "reading RDS binlog backups from OSS is not supported",
    ),
    (
        "canal.instance.rds.instanceId",
        "",
        "reading RDS binlog backups from OSS is not supported",
    ),
    (
        "canal.instance.enableDruid",
        "false",
        "encrypted database passwords are not supported: put the password in the environment variable",
    ),
    (
        "canal.instance.pwdPublicKey",
        "",
        "encrypted database passwords are not supported",
    ),
    (
        "canal.auto.reset.latest.pos.mode",
        "false",
        "Sluice never skips to the latest position when the saved one is gone; it stops and says so",
    ),
    (
        "canal.mq.flatMessage",
        "true",
        "Sluice publishes FlatMessage (or Debezium) JSON to brokers; Canal's protobuf over MQ is not supported",
    ),
    (
        "canal.mq.enableDynamicQueuePartition",
        "false",
        "queue counts come from canal.mq.partitionsNum / dynamicTopicPartitionNum",
    ),
    (
        "kafka.kerberos.enable",
        "false",
        "Kerberos is not translated: set sasl.* under [sink.librdkafka] by hand",
    ),
    ("kafka.kerberos.krb5.file", "", "Kerberos is not translated"),
    ("kafka.kerberos.jaas.file", "", "Kerberos is not translated"),
    (
        "rocketmq.enable.message.trace",
        "false",
        "RocketMQ message trace is not supported",
    ),
    (
        "rocketmq.customized.trace.topic",
        "",
        "RocketMQ message trace is not supported",
    ),
    ("canal.mq.vhost", "", "use rabbitmq.virtual.host"),
    (
        "canal.instance.rds.open.url",
        "https://rds.aliyuncs.com/",
        "downloading RDS binlog backups through Aliyun's OpenAPI is not supported",
    ),
    (
        "canal.instance.rds.open.accesskey",
        "",
        "downloading RDS binlog backups through Aliyun's OpenAPI is not supported",
    ),
    (
        "canal.instance.rds.open.secretkey",
        "",
        "downloading RDS binlog backups through Aliyun's OpenAPI is not supported",
    ),
    (
        "canal.instance.rds.startTime",
        "",
        "downloading RDS binlog backups through Aliyun's OpenAPI is not supported",
    ),
    (
        "canal.instance.rds.endTime",
        "",
        "downloading RDS binlog backups through Aliyun's OpenAPI is not supported",
    ),
];

/// Canal's event filters, which canal-compat implements: carried into its config.
const FILTERS: &[(&str, &str)] = &[
    ("canal.instance.filter.query.ddl", "false"),
    ("canal.instance.filter.query.dml", "false"),
    ("canal.instance.filter.query.dcl", "false"),
    ("canal.instance.filter.rows", "false"),
    ("canal.instance.filter.dml.insert", "false"),
    ("canal.instance.filter.dml.update", "false"),
    ("canal.instance.filter.dml.delete", "false"),
    ("canal.instance.filter.druid.ddl", "true"),
    ("canal.instance.filter.transaction.entry", "false"),
];

/// Keys the converter carries.
const CARRIED: &[&str] = &[
    "canal.instance.master.address",
    "canal.instance.master.journal.name",
    "canal.instance.master.position",
    "canal.instance.master.gtid",
    "canal.instance.mysql.slaveId",
    "canal.instance.dbUsername",
    "canal.instance.dbPassword",
    "canal.instance.filter.regex",
    "canal.instance.filter.black.regex",
    "canal.mq.topic",
    "canal.mq.dynamicTopic",
    "canal.mq.partition",
    "canal.mq.partitionsNum",
    "canal.mq.partitionHash",
    "canal.mq.dynamicTopicPartitionNum",
    "canal.mq.database.hash",
    "canal.mq.servers",
    "canal.mq.producerGroup",
    "canal.mq.namespace",
    "canal.mq.retries",
    "canal.ip",
    "canal.port",
    "canal.user",
    "canal.passwd",
    "canal.aliyun.accessKey",
    "canal.aliyun.secretKey",
    "kafka.bootstrap.servers",
    "kafka.acks",
    "kafka.compression.type",
    "kafka.batch.size",
    "kafka.linger.ms",
    "kafka.max.request.size",
    "kafka.buffer.memory",
    "rocketmq.producer.group",
    "rocketmq.namespace",
    "rocketmq.namesrv.addr",
    "rocketmq.tag",
    "rabbitmq.host",
    "rabbitmq.virtual.host",
    "rabbitmq.exchange",
    "rabbitmq.username",
    "rabbitmq.password",
];

/// TOML basic string.
fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", parts.join(", "))
}

fn split(v: &str, seps: &[char]) -> Vec<String> {
    v.split(seps)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Converts `props` (canal.properties first, instance.properties over it).
pub fn convert(props: &Properties, opts: &Options) -> anyhow::Result<Converted> {
    let get = |k: &str| props.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut not = Vec::new();
    let mut env = Vec::new();
    let mut out = String::new();

    // --- [source]
    let address = get("canal.instance.master.address")
        .context("canal.instance.master.address: missing (the database to follow)")?;
    let (host, port) = match address.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>().with_context(|| {
                format!("canal.instance.master.address: `{address}` has no valid port")
            })?,
        ),
        None => (address, 3306),
    };
    let user = get("canal.instance.dbUsername").context("canal.instance.dbUsername: missing")?;
    let server_id = match get("canal.instance.mysql.slaveId").and_then(|v| v.parse::<u32>().ok()) {
        Some(id) if id > 0 => (id, None),
        _ => {
            // Canal generates one; Sluice needs it written down, unique per replica.
            let h = address
                .bytes()
                .chain(opts.destination.bytes())
                .fold(2_166_136_261u32, |h, b| {
                    (h ^ u32::from(b)).wrapping_mul(16_777_619)
                });
            (
                1_000_000 + h % 1_000_000,
                Some(
                    "generated (canal.instance.mysql.slaveId was not set): keep it unique among the server's replicas",
                ),
            )
        }
    };
    let gtid_on = get("canal.instance.gtidon").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let start = match (
        gtid_on,
        get("canal.instance.master.gtid"),
        get("canal.instance.master.journal.name"),
        get("canal.instance.master.position"),
    ) {
        (true, Some(g), _, _) => format!("gtid:{g}"),
        (_, _, Some(file), pos) => format!("{file}:{}", pos.unwrap_or("4")),
        (false, Some(g), None, _) => {
            not.push((
                "canal.instance.master.gtid".to_string(),
                g.to_string(),
                "ignored by Canal while canal.instance.gtidon is false; starting at the latest position".to_string(),
            ));
            "latest".into()
        }
        _ => "latest".into(),
    };
    let _ = writeln!(out, "[source]");
    let _ = writeln!(out, "host = {}", q(host));
    let _ = writeln!(out, "port = {port}");
    let _ = writeln!(out, "user = {}", q(user));
    let _ = writeln!(
        out,
        "# canal.instance.dbPassword is not copied: export it as {SOURCE_PASSWORD_ENV}."
    );
    let _ = writeln!(out, "password_env = {}", q(SOURCE_PASSWORD_ENV));
    env.push((
        SOURCE_PASSWORD_ENV.to_string(),
        "the database password (canal.instance.dbPassword)".to_string(),
    ));
    if let (_, Some(why)) = server_id {
        let _ = writeln!(out, "# server_id {why}");
    }
    let _ = writeln!(out, "server_id = {}", server_id.0);
    let _ = writeln!(out, "start = {}", q(&start));
    let include = get("canal.instance.filter.regex").map(|v| split(v, &[',']));
    if let Some(inc) = include.filter(|i| !(i.len() == 1 && (i[0] == ".*\\..*" || i[0] == ".*"))) {
        let _ = writeln!(out, "include = {}", list(&inc));
    }
    if let Some(exc) = get("canal.instance.filter.black.regex").map(|v| split(v, &[','])) {
        let _ = writeln!(out, "exclude = {}", list(&exc));
    }

    // --- publisher
    let mode = get("canal.serverMode")
        .unwrap_or("tcp")
        .to_ascii_lowercase();
    let mq = mode != "tcp";
    // Canal's event filters set away from their defaults: canal-compat applies them (in
    // tcp mode too, routing everything to the destination).
    let filters: Vec<(&str, &str)> = FILTERS
        .iter()
        .filter_map(|(k, default)| {
            get(k)
                .filter(|v| !v.eq_ignore_ascii_case(default))
                .map(|v| (*k, v))
        })
        .collect();
    if mq || !filters.is_empty() {
        let _ = writeln!(
            out,
            "\n[[modules]]\nname = \"canal\"\nfile = {}",
            q(&opts.module)
        );
        let _ = writeln!(out, "[modules.config]");
        if !mq {
            let _ = writeln!(out, "\"canal.mq.topic\" = {}", q(&opts.destination));
        }
        for (k, v) in &filters {
            let _ = writeln!(out, "{} = {}", q(k), q(v));
        }
    }
    if mq {
        for k in [
            "canal.mq.topic",
            "canal.mq.dynamicTopic",
            "canal.mq.partition",
            "canal.mq.partitionsNum",
            "canal.mq.partitionHash",
            "canal.mq.dynamicTopicPartitionNum",
            "canal.mq.database.hash",
        ] {
            if let Some(v) = get(k) {
                let _ = writeln!(out, "{} = {}", q(k), q(v));
            }
        }
    }
    let _ = writeln!(out, "\n[sink]");
    match mode.as_str() {
        "kafka" => {
            let brokers = get("kafka.bootstrap.servers")
                .or(get("canal.mq.servers"))
                .context("kafka.bootstrap.servers: missing (canal.serverMode = kafka)")?;
            let _ = writeln!(out, "kind = \"kafka\"\nbrokers = {}", q(brokers));
            if let Some(m) = get("kafka.max.request.size") {
                let _ = writeln!(
                    out,
                    "max_message_bytes = {}",
                    m.parse::<u64>()
                        .context("kafka.max.request.size: not a number")?
                );
            }
            if let Some(acks) = get("kafka.acks").filter(|a| *a != "all" && *a != "-1") {
                not.push((
                    "kafka.acks".into(),
                    acks.into(),
                    "Sluice always waits for every in-sync replica (acks=all)".into(),
                ));
            }
            let mut lib = Vec::new();
            if let Some(c) = get("kafka.compression.type").filter(|c| *c != "none") {
                lib.push(("compression.type", c.to_string()));
            }
            if let Some(v) = get("kafka.linger.ms") {
                lib.push(("linger.ms", v.to_string()));
            }
            if let Some(v) = get("kafka.batch.size") {
                lib.push(("batch.size", v.to_string()));
            }
            if let Some(v) = get("kafka.buffer.memory").and_then(|v| v.parse::<u64>().ok()) {
                lib.push(("queue.buffering.max.kbytes", (v / 1024).max(1).to_string()));
            }
            if !lib.is_empty() {
                let _ = writeln!(out, "[sink.librdkafka]");
                for (k, v) in lib {
                    let _ = writeln!(out, "{} = {}", q(k), q(&v));
                }
            }
        }
        "rocketmq" => {
            let _ = writeln!(out, "kind = \"rocketmq\"\n[sink.rocketmq]");
            let ns = get("rocketmq.namesrv.addr")
                .or(get("canal.mq.servers"))
                .context("rocketmq.namesrv.addr: missing (canal.serverMode = rocketMQ)")?;
            let _ = writeln!(out, "namesrv = {}", list(&split(ns, &[';', ','])));
            if let Some(g) = get("rocketmq.producer.group").or(get("canal.mq.producerGroup")) {
                let _ = writeln!(out, "producer_group = {}", q(g));
            }
            if let Some(t) = get("rocketmq.tag") {
                let _ = writeln!(out, "tag = {}", q(t));
            }
            if let Some(n) = get("rocketmq.namespace").or(get("canal.mq.namespace")) {
                let _ = writeln!(out, "namespace = {}", q(n));
            }
            if let Some(ak) = get("canal.aliyun.accessKey") {
                let _ = writeln!(out, "access_key = {}", q(ak));
                let _ = writeln!(
                    out,
                    "# canal.aliyun.secretKey is not copied: export it as SLUICE_ROCKETMQ_SECRET_KEY."
                );
                let _ = writeln!(out, "secret_key_env = \"SLUICE_ROCKETMQ_SECRET_KEY\"");
                env.push((
                    "SLUICE_ROCKETMQ_SECRET_KEY".into(),
                    "the ACL secret key (canal.aliyun.secretKey)".into(),
                ));
            }
        }
        "rabbitmq" => {
            let _ = writeln!(out, "kind = \"rabbitmq\"\n[sink.rabbitmq]");
            let hosts = get("rabbitmq.host")
                .or(get("canal.mq.servers"))
                .context("rabbitmq.host: missing (canal.serverMode = rabbitMQ)")?;
            let addrs: Vec<String> = split(hosts, &[',', ';'])
                .into_iter()
                .map(|h| {
                    if h.contains(':') {
                        h
                    } else {
                        format!("{h}:5672")
                    }
                })
                .collect();
            let _ = writeln!(out, "addresses = {}", list(&addrs));
            if let Some(v) = get("rabbitmq.virtual.host") {
                let _ = writeln!(out, "vhost = {}", q(v));
            }
            let exchange = get("rabbitmq.exchange").context("rabbitmq.exchange: missing")?;
            let _ = writeln!(out, "exchange = {}", q(exchange));
            if let Some(u) = get("rabbitmq.username") {
                let _ = writeln!(out, "user = {}", q(u));
                let _ = writeln!(
                    out,
                    "# rabbitmq.password is not copied: export it as SLUICE_RABBITMQ_PASSWORD."
                );
                let _ = writeln!(out, "password_env = \"SLUICE_RABBITMQ_PASSWORD\"");
                env.push((
                    "SLUICE_RABBITMQ_PASSWORD".into(),
                    "the RabbitMQ password (rabbitmq.password)".into(),
                ));
            }
        }
        "tcp" => {
            let ip = get("canal.ip").unwrap_or("127.0.0.1");
            let port = get("canal.port").unwrap_or("11111");
            let user = get("canal.user");
            let loopback = ip
                .parse::<std::net::IpAddr>()
                .is_ok_and(|a| a.is_loopback());
            let listen_ip = if loopback || user.is_some() {
                ip
            } else {
                not.push((
                    "canal.ip".into(),
                    ip.into(),
                    "a listener reachable from other hosts needs canal.user/canal.passwd; listening on loopback instead".into(),
                ));
                "127.0.0.1"
            };
            let _ = writeln!(
                out,
                "kind = \"canal-server\"\ndefault_topic = {}",
                q(&opts.destination)
            );
            let _ = writeln!(out, "[sink.canal_server]");
            let _ = writeln!(out, "listen = {}", q(&format!("{listen_ip}:{port}")));
            let _ = writeln!(
                out,
                "destinations = {}",
                list(std::slice::from_ref(&opts.destination))
            );
            if let Some(u) = user {
                let _ = writeln!(out, "user = {}", q(u));
                let _ = writeln!(
                    out,
                    "# canal.passwd is not copied: export it as SLUICE_CANAL_PASSWD."
                );
                let _ = writeln!(out, "passwd_env = \"SLUICE_CANAL_PASSWD\"");
                env.push((
                    "SLUICE_CANAL_PASSWD".into(),
                    "canal.passwd (hex of SHA1(SHA1(password)))".into(),
                ));
            }
        }
        other => bail!("canal.serverMode: `{other}` is not tcp, kafka, rocketMQ or rabbitMQ"),
    }
    let _ = writeln!(out, "\n[checkpoint]\npath = {}", q(&opts.checkpoint));

    // --- what was not carried
    for (k, v) in props {
        let v = v.trim();
        if CARRIED.contains(&k.as_str())
            || FILTERS.iter().any(|(f, _)| f == k)
            || INTERNAL
                .iter()
                .any(|p| k == p || (p.ends_with('.') && k.starts_with(p)))
        {
            continue;
        }
        if let Some((_, default, why)) = UNSUPPORTED.iter().find(|(key, _, _)| key == k) {
            if !v.eq_ignore_ascii_case(default) {
                // A broker's setting matters only in that broker's mode.
                let why = if for_other_mode(k, &mode, mq) {
                    "for another canal.serverMode: not used"
                } else {
                    why
                };
                not.push((k.clone(), v.to_string(), why.to_string()));
            }
            continue;
        }
        if v.is_empty() {
            continue;
        }
        let why = if for_other_mode(k, &mode, mq) {
            "for another canal.serverMode: not used"
        } else {
            "unknown to the converter: check whether it matters"
        };
        not.push((k.clone(), v.to_string(), why.to_string()));
    }
    // Keys of the other server modes, carried only for the chosen one.
    for k in CARRIED {
        let Some(v) = get(k) else { continue };
        if for_other_mode(k, &mode, mq) {
            not.push((
                k.to_string(),
                mask(k, v),
                "for another canal.serverMode: not used".into(),
            ));
        }
    }
    not.sort();
    not.dedup();
    for n in &mut not {
        n.1 = mask(&n.0, &n.1);
    }
    let mut head = String::from("# Made by `sluice canal import` from Canal's configuration.\n");
    if mode == "kafka" || mode == "rocketmq" {
        // Rules that derive a topic from a table's name name no topic in advance: the
        // tables on the source say which topics exist.
        let tables = if get("canal.mq.dynamicTopic").is_some_and(|v| !v.trim().is_empty()) {
            " --tables"
        } else {
            ""
        };
        // Every topic needs as many partitions (queues) as the largest count Canal's
        // hash rules spread a topic's rows over.
        let most = get("canal.mq.partitionsNum")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .into_iter()
            .chain(
                get("canal.mq.dynamicTopicPartitionNum")
                    .unwrap_or("")
                    .split(',')
                    .filter_map(|item| item.rsplit_once(':')?.1.trim().parse::<u32>().ok()),
            )
            .max()
            .filter(|&n| n > 1)
            .map(|n| format!(" --partitions {n}"))
            .unwrap_or_default();
        let _ = writeln!(
            head,
            "# Next: sluice topics create -c sluice.toml{most}{tables}; sluice check -c sluice.toml; sluice run -c sluice.toml"
        );
    }
    if !env.is_empty() {
        head.push_str("# Environment variables to set before `sluice run`:\n");
        for (k, what) in &env {
            let _ = writeln!(head, "#   {k}: {what}");
        }
    }
    if !not.is_empty() {
        head.push_str("# Not translated:\n");
        for (k, v, why) in &not {
            let _ = writeln!(head, "#   {k} = {v}: {why}");
        }
    }
    head.push('\n');
    Ok(Converted {
        toml: head + &out,
        not_translated: not,
        env,
    })
}

/// Whether `key` configures a `canal.serverMode` other than `mode` (`mq`: one of the
/// broker modes), so it is listed as unused rather than carried or unknown.
fn for_other_mode(key: &str, mode: &str, mq: bool) -> bool {
    (key.starts_with("kafka.") && mode != "kafka")
        || (key.starts_with("rocketmq.") && mode != "rocketmq")
        || (key.starts_with("rabbitmq.") && mode != "rabbitmq")
        || (key.starts_with("canal.mq.") && !mq)
        || (key.starts_with("canal.aliyun.") && mode != "rocketmq")
        || (matches!(
            key,
            "canal.ip" | "canal.port" | "canal.user" | "canal.passwd"
        ) && mq)
}

/// A value shown in a listing: secrets as `***`.
fn mask(key: &str, v: &str) -> String {
    if crate::secret::is_secret_key(key) && !v.is_empty() {
        "***".into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migrate::properties::parse;

    fn opts() -> Options {
        Options {
            destination: "orders".into(),
            module: "canal-compat.wasm".into(),
            checkpoint: "sluice.checkpoint".into(),
        }
    }

    const SERVER: &str = "canal.port = 11111\ncanal.serverMode = kafka\ncanal.instance.filter.query.ddl = true\ncanal.instance.filter.druid.ddl = true\ncanal.instance.tsdb.enable = true\ncanal.mq.flatMessage = true\nkafka.bootstrap.servers = k1:9092,k2:9092\nkafka.acks = 1\nkafka.compression.type = lz4\nkafka.linger.ms = 5\nkafka.max.request.size = 2097152\nrocketmq.namesrv.addr = 127.0.0.1:9876\ncanal.aliyun.secretKey = sk-secret\n";
    const INSTANCE: &str = "canal.instance.mysql.slaveId=4321\ncanal.instance.master.address=db1:3307\ncanal.instance.master.journal.name=mysql-bin.000042\ncanal.instance.master.position=1234\ncanal.instance.dbUsername=canal\ncanal.instance.dbPassword=hunter2\ncanal.instance.filter.regex=shop\\\\..*,crm\\\\.users\ncanal.instance.filter.black.regex=shop\\\\.tmp_.*\ncanal.instance.filter.field=shop.orders:id/total\ncanal.mq.topic=example\ncanal.mq.dynamicTopic=shop\\\\..*\ncanal.mq.partitionsNum=3\ncanal.mq.partitionHash=.*\\\\..*:$pk$\n";

    fn both() -> Properties {
        let mut p = parse(SERVER);
        p.extend(parse(INSTANCE));
        p
    }

    #[test]
    fn a_kafka_instance_becomes_a_config_that_parses() {
        let c = convert(&both(), &opts()).expect("converts");
        let t: toml::Table = toml::from_str(&c.toml).expect("valid TOML");
        assert_eq!(t["source"]["host"].as_str(), Some("db1"));
        assert_eq!(t["source"]["port"].as_integer(), Some(3307));
        assert_eq!(t["source"]["server_id"].as_integer(), Some(4321));
        assert_eq!(t["source"]["start"].as_str(), Some("mysql-bin.000042:1234"));
        assert_eq!(
            t["source"]["password_env"].as_str(),
            Some(SOURCE_PASSWORD_ENV)
        );
        assert_eq!(
            t["source"]["include"].as_array().map(|a| a.len()),
            Some(2),
            "{}",
            c.toml
        );
        assert_eq!(t["source"]["include"][0].as_str(), Some("shop\\..*"));
        assert_eq!(t["sink"]["kind"].as_str(), Some("kafka"));
        assert_eq!(t["sink"]["brokers"].as_str(), Some("k1:9092,k2:9092"));
        assert_eq!(t["sink"]["max_message_bytes"].as_integer(), Some(2_097_152));
        assert_eq!(
            t["sink"]["librdkafka"]["compression.type"].as_str(),
            Some("lz4")
        );
        let m = &t["modules"][0]["config"];
        assert_eq!(m["canal.mq.dynamicTopic"].as_str(), Some("shop\\..*"));
        assert_eq!(m["canal.mq.partitionHash"].as_str(), Some(".*\\..*:$pk$"));
        // Listed with reasons: the DDL filter, the column filter, acks, another mode's
        // key; not the defaults or Canal's internals.
        let keys: Vec<&str> = c.not_translated.iter().map(|n| n.0.as_str()).collect();
        for k in [
            "canal.instance.filter.field",
            "kafka.acks",
            "rocketmq.namesrv.addr",
            "canal.aliyun.secretKey",
        ] {
            assert!(keys.contains(&k), "{k} not listed: {keys:?}");
        }
        for k in [
            "canal.instance.filter.query.ddl",
            "canal.instance.filter.druid.ddl",
            "canal.instance.tsdb.enable",
            "canal.mq.flatMessage",
        ] {
            assert!(!keys.contains(&k), "{k} listed: {keys:?}");
        }
        // No secret anywhere in the output.
        assert!(
            !c.toml.contains("hunter2") && !c.toml.contains("sk-secret"),
            "{}",
            c.toml
        );
        // Canal's DDL filter goes to canal-compat, which applies it; defaults are not
        // copied.
        assert_eq!(m["canal.instance.filter.query.ddl"].as_str(), Some("true"));
        assert!(m.get("canal.instance.filter.druid.ddl").is_none());
    }

    #[test]
    fn tcp_mode_serves_the_destination_and_other_modes_map_their_keys() {
        let tcp = parse(
            "canal.instance.master.address=127.0.0.1:3306\ncanal.instance.dbUsername=canal\ncanal.ip=0.0.0.0\ncanal.port=11111\ncanal.instance.master.timestamp=1700000000000\n",
        );
        let c = convert(&tcp, &opts()).expect("tcp");
        let t: toml::Table = toml::from_str(&c.toml).expect("TOML");
        assert_eq!(t["sink"]["kind"].as_str(), Some("canal-server"));
        assert_eq!(
            t["sink"]["canal_server"]["listen"].as_str(),
            Some("127.0.0.1:11111")
        );
        assert_eq!(
            t["sink"]["canal_server"]["destinations"][0].as_str(),
            Some("orders")
        );
        assert!(t.get("modules").is_none());
        let keys: Vec<&str> = c.not_translated.iter().map(|n| n.0.as_str()).collect();
        assert!(
            keys.contains(&"canal.ip") && keys.contains(&"canal.instance.master.timestamp"),
            "{keys:?}"
        );
        // No slaveId: a generated, stable one.
        let again = convert(&tcp, &opts()).expect("tcp");
        assert_eq!(c.toml, again.toml);
        // With an event filter, canal-compat applies it in front of the Canal server.
        let mut filtered = tcp.clone();
        filtered.insert("canal.instance.filter.dml.delete".into(), "true".into());
        let t: toml::Table =
            toml::from_str(&convert(&filtered, &opts()).expect("tcp").toml).expect("TOML");
        let m = &t["modules"][0]["config"];
        assert_eq!(m["canal.mq.topic"].as_str(), Some("orders"));
        assert_eq!(m["canal.instance.filter.dml.delete"].as_str(), Some("true"));

        let rocket = parse(
            "canal.serverMode=rocketMQ\ncanal.instance.master.address=db:3306\ncanal.instance.dbUsername=u\nrocketmq.namesrv.addr=n1:9876;n2:9876\nrocketmq.producer.group=g\nrocketmq.tag=cdc\nrocketmq.namespace=prod\ncanal.aliyun.accessKey=AK\ncanal.aliyun.secretKey=SK\ncanal.instance.gtidon=true\ncanal.instance.master.gtid=0-1-100\n",
        );
        let c = convert(&rocket, &opts()).expect("rocketmq");
        let t: toml::Table = toml::from_str(&c.toml).expect("TOML");
        let r = &t["sink"]["rocketmq"];
        assert_eq!(r["namesrv"].as_array().map(|a| a.len()), Some(2));
        assert_eq!(r["namespace"].as_str(), Some("prod"));
        assert_eq!(
            r["secret_key_env"].as_str(),
            Some("SLUICE_ROCKETMQ_SECRET_KEY")
        );
        assert_eq!(t["source"]["start"].as_str(), Some("gtid:0-1-100"));
        assert!(!c.toml.contains("SK\n") && !c.toml.contains("= \"SK\""));

        let rabbit = parse(
            "canal.serverMode=rabbitMQ\ncanal.instance.master.address=db:3306\ncanal.instance.dbUsername=u\nrabbitmq.host=r1\nrabbitmq.exchange=cdc\nrabbitmq.username=guest\nrabbitmq.password=pw\n",
        );
        let t: toml::Table =
            toml::from_str(&convert(&rabbit, &opts()).expect("rabbit").toml).expect("TOML");
        assert_eq!(
            t["sink"]["rabbitmq"]["addresses"][0].as_str(),
            Some("r1:5672")
        );

        let bad = parse(
            "canal.serverMode=pulsar\ncanal.instance.master.address=db:3306\ncanal.instance.dbUsername=u\n",
        );
        let e = convert(&bad, &opts()).expect_err("unknown mode");
        assert!(e.to_string().contains("canal.serverMode"), "{e}");
        let e = convert(&parse("canal.instance.dbUsername=u\n"), &opts()).expect_err("no address");
        assert!(
            e.to_string().contains("canal.instance.master.address"),
            "{e}"
        );
    }
}
