//! `[sink.rocketmq]`: the name servers, producer group, and how a decision becomes a
//! RocketMQ message (topic name, message queue, tag), checked here so a bad setting is
//! an error naming its key before anything connects.
//!
//! The mapping is Canal's (`CanalRocketMQProducer`): a topic with dots publishes with
//! underscores (RocketMQ topic names allow only letters, digits, `_`, `-`, `%`, `|`),
//! the queue is the decision's partition modulo the topic's queue count, and the tag is
//! per message when the module sets one (a decision header), else the static one.

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use crate::secret::Secret;

/// The RocketMQ publisher: name servers, producer group, topic and tag mapping. Each
/// queue gets one send at a time, so a key's order holds; `SEND_OK` is stored.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRocket {
    /// Name servers, `HOST:PORT` (Canal's `rocketmq.namesrv.addr`, default
    /// `127.0.0.1:9876`).
    #[serde(default)]
    pub namesrv: Vec<String>,
    /// Producer group (Canal's `rocketmq.producer.group`, default `sluice`).
    pub producer_group: Option<String>,
    /// Topic name template: `{topic_}` (default: the decision's topic, dots as
    /// underscores, as Canal publishes dynamic topics) or `{topic}` (as it is).
    pub topic: Option<String>,
    /// Tag of messages whose decision sets none (Canal's `rocketmq.tag`; default none).
    pub tag: Option<String>,
    /// The decision header whose value is the message's tag (default `tag`, what the
    /// `tags` module sets); consumed, not sent as a property.
    pub tag_header: Option<String>,
    /// Milliseconds one send may take before it is tried again (default 3000).
    pub send_timeout_ms: Option<u64>,
    /// Send statuses besides `SEND_OK` that count as stored: any of
    /// `FLUSH_DISK_TIMEOUT`, `FLUSH_SLAVE_TIMEOUT`, `SLAVE_NOT_AVAILABLE` (default none:
    /// those are sent again).
    #[serde(default)]
    pub accept: Vec<String>,
    /// The cluster whose masters `sluice ctl create-topic` creates topics on (default
    /// `DefaultCluster`, the brokers' default `brokerClusterName`).
    pub cluster: Option<String>,
    /// Namespace (Canal's `rocketmq.namespace`): every topic is `NAMESPACE%TOPIC` on the
    /// broker, as RocketMQ's clients wrap it (default: none).
    pub namespace: Option<String>,
    /// ACL access key (Canal's `canal.aliyun.accessKey`); the secret key comes from
    /// `secret_key_env` or `secret_key_file`, never from this file (default: no ACL).
    pub access_key: Option<String>,
    /// Environment variable holding the ACL secret key (required with `access_key`,
    /// or `secret_key_file`; absent otherwise).
    pub secret_key_env: Option<String>,
    /// File holding the ACL secret key (instead of `secret_key_env`; absent otherwise).
    pub secret_key_file: Option<std::path::PathBuf>,
    /// Messages of one queue sent as one batch when they are waiting together (default
    /// 1: one at a time; Aliyun's RocketMQ refuses batches, Canal's users report).
    pub batch_max: Option<usize>,
}

/// What a send status means to Sluice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Acknowledged: the checkpoint may pass it.
    Yes,
    /// Not acknowledged: sent again.
    No,
}

/// Validated RocketMQ settings.
#[derive(Debug, Clone)]
pub struct RocketConfig {
    /// Name servers, tried by the client in turn.
    pub namesrv: Vec<String>,
    /// Producer group.
    pub producer_group: String,
    /// Replace dots in topic names with underscores.
    pub underscores: bool,
    /// Static tag.
    pub tag: Option<String>,
    /// Decision header carrying the tag.
    pub tag_header: String,
    /// Timeout of one send.
    pub send_timeout: Duration,
    /// `FLUSH_DISK_TIMEOUT`, `FLUSH_SLAVE_TIMEOUT`, `SLAVE_NOT_AVAILABLE` accepted.
    pub accept: [bool; 3],
    /// Cluster for topic creation.
    pub cluster: String,
    /// Namespace prefix of every topic.
    pub namespace: Option<String>,
    /// ACL access key and secret key.
    pub acl: Option<(String, Secret)>,
    /// Most messages in one batch send (1: no batches).
    pub batch_max: usize,
}

/// The most bytes of bodies in one batch: well under the broker's 4 MiB default
/// `maxMessageSize`, which a batch counts as one message.
pub const BATCH_BYTES: usize = 1 << 20;

/// The statuses `accept` may name, in [`RocketConfig::accept`]'s order.
pub const ACCEPTABLE: [&str; 3] = [
    "FLUSH_DISK_TIMEOUT",
    "FLUSH_SLAVE_TIMEOUT",
    "SLAVE_NOT_AVAILABLE",
];

impl RawRocket {
    /// Checks every key; `rel` resolves a relative secret key file.
    pub fn validate(
        &self,
        rel: &dyn Fn(&std::path::Path) -> std::path::PathBuf,
    ) -> anyhow::Result<RocketConfig> {
        let namesrv = if self.namesrv.is_empty() {
            vec!["127.0.0.1:9876".to_string()]
        } else {
            self.namesrv.clone()
        };
        for a in &namesrv {
            let ok = a
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                bail!("sink.rocketmq.namesrv: `{a}` is not HOST:PORT");
            }
        }
        let underscores = match self.topic.as_deref().unwrap_or("{topic_}") {
            "{topic_}" => true,
            "{topic}" => false,
            other => bail!("sink.rocketmq.topic: `{other}` is not `{{topic_}}` or `{{topic}}`"),
        };
        let producer_group = self
            .producer_group
            .clone()
            .unwrap_or_else(|| "sluice".into());
        if !valid_name(&producer_group) {
            bail!(
                "sink.rocketmq.producer_group: `{producer_group}` may use only letters, digits, `_`, `-`, `%` and `|`"
            );
        }
        if let Some(t) = &self.tag
            && (t.is_empty() || t.contains("||") || t.len() > 255)
        {
            bail!("sink.rocketmq.tag: `{t}` is not a tag (non-empty, no `||`, at most 255 bytes)");
        }
        let mut accept = [false; 3];
        for s in &self.accept {
            match ACCEPTABLE.iter().position(|a| a == s) {
                Some(i) => accept[i] = true,
                None => bail!(
                    "sink.rocketmq.accept: `{s}` is not one of {}",
                    ACCEPTABLE.join(", ")
                ),
            }
        }
        if let Some(ns) = &self.namespace
            && (!valid_name(ns) || ns.contains('%'))
        {
            bail!("sink.rocketmq.namespace: `{ns}` may use only letters, digits, `_`, `-` and `|`");
        }
        let secret_file = self.secret_key_file.as_deref().map(rel);
        let secret = crate::secret::from_env_or_file(
            "sink.rocketmq.secret_key",
            self.secret_key_env.as_deref(),
            secret_file.as_deref(),
        )?;
        let acl = match (&self.access_key, secret) {
            (Some(a), Some(s)) if !a.is_empty() => Some((a.clone(), s)),
            (None, None) => None,
            (Some(_), None) => {
                bail!("sink.rocketmq.access_key: set `secret_key_env` or `secret_key_file` too")
            }
            (None, Some(_)) => {
                bail!("sink.rocketmq: a secret key is set without `access_key`")
            }
            (Some(_), Some(_)) => bail!("sink.rocketmq.access_key: empty"),
        };
        let batch_max = self.batch_max.unwrap_or(1);
        if !(1..=1024).contains(&batch_max) {
            bail!("sink.rocketmq.batch_max: {batch_max} is not between 1 and 1024");
        }
        Ok(RocketConfig {
            namespace: self.namespace.clone(),
            acl,
            batch_max,
            namesrv,
            producer_group,
            underscores,
            tag: self.tag.clone(),
            tag_header: self.tag_header.clone().unwrap_or_else(|| "tag".into()),
            send_timeout: Duration::from_millis(self.send_timeout_ms.unwrap_or(3000).max(100)),
            accept,
            cluster: self
                .cluster
                .clone()
                .unwrap_or_else(|| "DefaultCluster".into()),
        })
    }
}

/// Whether `s` is a valid RocketMQ topic or group name.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 127
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-%|".contains(&b))
}

impl RocketConfig {
    /// The RocketMQ topic of a decision's topic: dots as underscores unless `{topic}`,
    /// inside the namespace if one is set.
    pub fn topic(&self, topic: &str) -> String {
        let name = if self.underscores {
            topic.replace('.', "_")
        } else {
            topic.to_string()
        };
        match &self.namespace {
            Some(ns) => format!("{ns}%{name}"),
            None => name,
        }
    }

    /// What a send status means here.
    pub fn stored(&self, status: &str) -> Stored {
        if status == "SEND_OK" {
            return Stored::Yes;
        }
        match ACCEPTABLE.iter().position(|a| *a == status) {
            Some(i) if self.accept[i] => Stored::Yes,
            _ => Stored::No,
        }
    }
}

/// The message queue (index into the topic's queues, `queues` > 0) of a message: its
/// partition modulo the queue count, as Canal's selector does; without a partition,
/// its key's Java `String.hashCode` (what Canal's partition hash uses) modulo the
/// count, so one key stays in one queue; without either, queue 0 (Canal's default
/// partition).
pub fn queue_index(partition: Option<i32>, key: Option<&[u8]>, queues: usize) -> usize {
    let n = queues.max(1);
    match (partition, key) {
        (Some(p), _) => (p.unsigned_abs() as usize) % n,
        (None, Some(k)) => {
            let h = sluice_sdk::canal::java_hash_code(&String::from_utf8_lossy(k));
            (h.unsigned_abs() as usize) % n
        }
        (None, None) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> anyhow::Result<RocketConfig> {
        toml::from_str::<RawRocket>(text)?.validate(&|p| p.to_path_buf())
    }

    #[test]
    fn settings_are_checked_by_name() {
        let c = cfg("").expect("defaults");
        assert_eq!(c.namesrv, ["127.0.0.1:9876"]);
        assert_eq!(c.producer_group, "sluice");
        assert_eq!(c.tag_header, "tag");
        assert_eq!(c.topic("shop.orders"), "shop_orders");
        let c = cfg("topic = \"{topic}\"").expect("as is");
        assert_eq!(c.topic("orders"), "orders");
        for (text, words) in [
            ("namesrv = [\"nohost\"]", "sink.rocketmq.namesrv"),
            ("topic = \"{database}\"", "sink.rocketmq.topic"),
            ("producer_group = \"a.b\"", "sink.rocketmq.producer_group"),
            ("tag = \"a||b\"", "sink.rocketmq.tag"),
            ("accept = [\"MAYBE\"]", "sink.rocketmq.accept"),
            ("namespace = \"a%b\"", "sink.rocketmq.namespace"),
            ("access_key = \"AK\"", "sink.rocketmq.access_key"),
            ("secret_key_env = \"HOME\"", "without `access_key`"),
            (
                "access_key = \"AK\"\nsecret_key_env = \"SLUICE_NO_SUCH_VARIABLE\"",
                "sink.rocketmq.secret_key_env",
            ),
            (
                "access_key = \"AK\"\nsecret_key_env = \"HOME\"\nsecret_key_file = \"/x\"",
                "not both",
            ),
            ("batch_max = 0", "sink.rocketmq.batch_max"),
        ] {
            let e = cfg(text).expect_err(text);
            assert!(e.to_string().contains(words), "{text}: {e}");
        }
    }

    /// The secret key is read from where the config points and never printed, in the
    /// settings' debug form or in an error about the file.
    #[test]
    fn the_acl_secret_comes_from_a_file_and_is_never_printed() {
        let f = std::env::temp_dir().join(format!("sluice-rocketmq-sk-{}", std::process::id()));
        std::fs::write(&f, "sk-very-secret-1\n").expect("write");
        let c = cfg(&format!(
            "access_key = \"AK1\"\nsecret_key_file = \"{}\"\nnamespace = \"prod\"",
            f.display()
        ))
        .expect("acl");
        let (ak, sk) = c.acl.clone().expect("acl set");
        assert_eq!((ak.as_str(), sk.expose()), ("AK1", "sk-very-secret-1"));
        assert!(!format!("{c:?}").contains("sk-very-secret"), "{c:?}");
        assert_eq!(c.topic("shop.orders"), "prod%shop_orders");
        assert_eq!(c.batch_max, 1, "batches are off by default");
        let _ = std::fs::remove_file(&f);
        let e = cfg(&format!(
            "access_key = \"AK1\"\nsecret_key_file = \"{}\"",
            f.display()
        ))
        .expect_err("the file is gone");
        assert!(
            format!("{e:#}").contains("sink.rocketmq.secret_key_file"),
            "{e:#}"
        );
    }

    #[test]
    fn only_send_ok_is_stored_unless_accepted() {
        let strict = cfg("").expect("defaults");
        assert_eq!(strict.stored("SEND_OK"), Stored::Yes);
        for s in ACCEPTABLE {
            assert_eq!(strict.stored(s), Stored::No, "{s}");
        }
        let lax = cfg("accept = [\"FLUSH_DISK_TIMEOUT\"]").expect("lax");
        assert_eq!(lax.stored("FLUSH_DISK_TIMEOUT"), Stored::Yes);
        assert_eq!(lax.stored("SLAVE_NOT_AVAILABLE"), Stored::No);
    }

    #[test]
    fn queues_follow_canal_partitions_and_keys() {
        // Canal: partition < size ? partition : partition % size.
        assert_eq!(queue_index(Some(3), None, 8), 3);
        assert_eq!(queue_index(Some(11), None, 8), 3);
        assert_eq!(queue_index(Some(5), Some(b"k"), 4), 1);
        // A key alone always lands in one queue.
        let a = queue_index(None, Some(b"order-42"), 8);
        assert_eq!(a, queue_index(None, Some(b"order-42"), 8));
        assert!(a < 8);
        assert_eq!(queue_index(None, None, 8), 0);
        assert_eq!(queue_index(Some(7), None, 0), 0);
    }
}
