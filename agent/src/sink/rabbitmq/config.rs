//! `[sink.rabbitmq]`: where and how the RabbitMQ publisher connects and routes. Parsed
//! and checked here, so a bad setting is an error naming its key before anything
//! connects; the password comes from the environment or a file, never the config.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use crate::secret::Secret;

/// The RabbitMQ publisher: nodes, credentials, exchange and routing key. Publishes
/// with confirms; a message counts as stored when every queue it routed to confirmed.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRabbit {
    /// `host:port` of every node, tried in turn (default `127.0.0.1:5672`).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Virtual host (default `/`).
    pub vhost: Option<String>,
    /// User (default `guest`).
    pub user: Option<String>,
    /// Environment variable holding the password (absent with `password_file` too:
    /// `guest`).
    pub password_env: Option<String>,
    /// File holding the password (default: see `password_env`).
    pub password_file: Option<std::path::PathBuf>,
    /// Exchange messages are published to (required).
    pub exchange: String,
    /// Its type when Sluice declares it: `topic` (default), `direct`, `fanout`, `headers`.
    pub exchange_type: Option<String>,
    /// Declare the exchange (durable) at startup (default true); false: it must exist.
    pub declare_exchange: Option<bool>,
    /// Routing key template: `{topic}`, `{topic_}` (dots as underscores, Canal's
    /// mapping of a dynamic topic), `{database}`, `{table}`, `{partition}`
    /// (default `{topic}`).
    pub routing_key: Option<String>,
    /// Seconds to wait for a node to accept a connection (default 5).
    pub connect_timeout_secs: Option<u64>,
    /// `http://HOST:PORT` of the management API (plugin `rabbitmq_management`), same
    /// user and password: `sluice check` and startup then warn about routing keys no
    /// binding takes (absent: no such check).
    pub management_url: Option<String>,
}

/// The exchange types Sluice can declare.
const EXCHANGE_TYPES: &[&str] = &["topic", "direct", "fanout", "headers"];

/// A routing key template's placeholders.
const PLACEHOLDERS: &[&str] = &[
    "{topic}",
    "{topic_}",
    "{database}",
    "{table}",
    "{partition}",
];

/// Validated RabbitMQ settings.
#[derive(Clone)]
pub struct RabbitConfig {
    /// Nodes, tried in turn.
    pub addresses: Vec<String>,
    /// Virtual host.
    pub vhost: String,
    /// User.
    pub user: String,
    /// Password.
    pub password: Secret,
    /// Exchange.
    pub exchange: String,
    /// Exchange type.
    pub exchange_type: String,
    /// Declare it (else check it exists).
    pub declare_exchange: bool,
    /// Routing key template.
    pub routing_key: String,
    /// Connection timeout per node.
    pub connect_timeout: Duration,
    /// Management API, for the bindings check.
    pub management_url: Option<String>,
}

impl std::fmt::Debug for RabbitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitConfig")
            .field("addresses", &self.addresses)
            .field("vhost", &self.vhost)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("exchange", &self.exchange)
            .field("exchange_type", &self.exchange_type)
            .field("declare_exchange", &self.declare_exchange)
            .field("routing_key", &self.routing_key)
            .field("management_url", &self.management_url)
            .finish()
    }
}

impl RawRabbit {
    /// Checks every key; `rel` resolves a relative password file.
    pub fn validate(
        &self,
        rel: &dyn Fn(&Path) -> std::path::PathBuf,
    ) -> anyhow::Result<RabbitConfig> {
        let addresses = if self.addresses.is_empty() {
            vec!["127.0.0.1:5672".to_string()]
        } else {
            self.addresses.clone()
        };
        for a in &addresses {
            let ok = a
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                bail!("sink.rabbitmq.addresses: `{a}` is not HOST:PORT");
            }
        }
        let password_file = self.password_file.as_deref().map(rel);
        let password = crate::secret::from_env_or_file(
            "sink.rabbitmq.password",
            self.password_env.as_deref(),
            password_file.as_deref(),
        )?
        // RabbitMQ's default user, which only connects over loopback.
        .unwrap_or_else(|| Secret::new("guest"));
        if self.exchange.is_empty() {
            bail!("sink.rabbitmq.exchange: the default exchange (\"\") cannot be used; name one");
        }
        let exchange_type = self.exchange_type.clone().unwrap_or_else(|| "topic".into());
        if !EXCHANGE_TYPES.contains(&exchange_type.as_str()) {
            bail!(
                "sink.rabbitmq.exchange_type: `{exchange_type}` is not one of {}",
                EXCHANGE_TYPES.join(", ")
            );
        }
        let routing_key = self.routing_key.clone().unwrap_or_else(|| "{topic}".into());
        check_template(&routing_key)?;
        if let Some(u) = &self.management_url {
            if u.starts_with("https://") {
                bail!(
                    "sink.rabbitmq.management_url: https is not supported; use the plugin's \
                     http listener (loopback or a trusted network)"
                );
            }
            if !u.starts_with("http://") || u.len() <= "http://".len() {
                bail!("sink.rabbitmq.management_url: `{u}` is not http://HOST:PORT");
            }
        }
        Ok(RabbitConfig {
            addresses,
            vhost: self.vhost.clone().unwrap_or_else(|| "/".into()),
            user: self.user.clone().unwrap_or_else(|| "guest".into()),
            password,
            exchange: self.exchange.clone(),
            exchange_type,
            declare_exchange: self.declare_exchange.unwrap_or(true),
            routing_key,
            connect_timeout: Duration::from_secs(self.connect_timeout_secs.unwrap_or(5).max(1)),
            management_url: self.management_url.clone(),
        })
    }
}

/// Every `{...}` in the template must be a known placeholder.
fn check_template(t: &str) -> anyhow::Result<()> {
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        let Some(j) = rest[i..].find('}') else {
            bail!("sink.rabbitmq.routing_key: `{t}` has an unclosed `{{`");
        };
        let p = &rest[i..i + j + 1];
        if !PLACEHOLDERS.contains(&p) {
            bail!(
                "sink.rabbitmq.routing_key: `{p}` is not one of {}",
                PLACEHOLDERS.join(", ")
            );
        }
        rest = &rest[i + j + 1..];
    }
    if t.len() > 255 {
        bail!("sink.rabbitmq.routing_key: longer than AMQP's 255 bytes");
    }
    Ok(())
}

/// The routing key of one message. A message without a partition renders
/// `{partition}` as empty.
pub fn routing_key(
    template: &str,
    topic: &str,
    database: &str,
    table: &str,
    partition: Option<i32>,
) -> String {
    if template == "{topic}" {
        return topic.to_string();
    }
    let mut out = String::with_capacity(template.len() + topic.len());
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let j = rest[i..].find('}').map_or(rest.len() - i, |j| j + 1);
        match &rest[i..i + j] {
            "{topic}" => out.push_str(topic),
            "{topic_}" => out.extend(topic.chars().map(|c| if c == '.' { '_' } else { c })),
            "{database}" => out.push_str(database),
            "{table}" => out.push_str(table),
            "{partition}" => {
                if let Some(p) = partition {
                    out.push_str(&p.to_string());
                }
            }
            other => out.push_str(other),
        }
        rest = &rest[i + j..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_keys_render_as_canal_and_per_partition() {
        assert_eq!(
            routing_key("{topic}", "shop.orders", "shop", "orders", Some(3)),
            "shop.orders"
        );
        // Canal's RabbitMQ producer publishes a dynamic topic with dots as underscores.
        assert_eq!(
            routing_key("{topic_}", "shop.orders", "shop", "orders", None),
            "shop_orders"
        );
        assert_eq!(
            routing_key("{topic}.{partition}", "t", "d", "x", Some(7)),
            "t.7"
        );
        assert_eq!(
            routing_key("cdc.{database}.{table}", "t", "d", "x", None),
            "cdc.d.x"
        );
        assert!(check_template("{topic}.{partiton}").is_err());
        assert!(check_template("{topic").is_err());
        assert!(check_template("{topic_}.{partition}").is_ok());
    }
}
