//! The Kafka publisher's settings: `brokers` and `[sink.librdkafka]` in `[sink]`. Checked
//! here: librdkafka properties that Sluice's delivery guarantees depend on cannot be
//! overridden, and secret-looking properties never print.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

/// librdkafka properties Sluice sets itself; the config may not override them.
pub const RESERVED_KAFKA_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "partitioner",
    "max.in.flight.requests.per.connection",
    "message.max.bytes",
    "enable.gapless.guarantee",
];

/// `[sink]` keys of `kind = "kafka"`.
#[derive(schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct KafkaKeys {
    /// Bootstrap servers, `HOST:PORT,...` (required).
    pub brokers: String,
    /// librdkafka producer properties as strings (`"compression.type" = "zstd"`,
    /// `"security.protocol"`, `"sasl.*"`...). Sluice sets idempotence, `acks=all`, the
    /// partitioner, in-flight and size limits itself; setting those is an error.
    /// Default: none beyond librdkafka's defaults.
    pub librdkafka: Option<BTreeMap<String, String>>,
}

/// Validated Kafka settings.
#[derive(Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers.
    pub brokers: String,
    /// Extra librdkafka properties.
    pub properties: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// From `sink.brokers` and `[sink.librdkafka]`.
    pub fn from_section(
        brokers: Option<&str>,
        librdkafka: &BTreeMap<String, String>,
    ) -> anyhow::Result<Self> {
        let brokers = brokers
            .map(str::to_string)
            .context("sink.brokers: required with kind = \"kafka\"")?;
        for key in librdkafka.keys() {
            if RESERVED_KAFKA_PROPERTIES.contains(&key.as_str()) {
                bail!(
                    "sink.librdkafka.\"{key}\": Sluice sets this itself (delivery guarantees depend on it); remove it"
                );
            }
        }
        Ok(KafkaConfig {
            brokers,
            properties: librdkafka.clone(),
        })
    }
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let v = if crate::secret::is_secret_key(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("Kafka")
            .field("brokers", &self.brokers)
            .field("properties", &shown)
            .finish()
    }
}
