//! Whether the routing keys Sluice will publish reach a queue: the exchange's bindings
//! read from RabbitMQ's management API (`sink.rabbitmq.management_url`), matched against
//! the routing key of every topic the configuration declares.
//!
//! Advisory only: a key nothing is bound to is a warning (`sluice check` prints it,
//! `sluice run` logs it at startup), never a refusal to start, since bindings can be
//! added later and a message that finds no queue comes back (`mandatory`) and goes
//! through its module's policy anyway. Parts of a key that depend on the row
//! (`{database}`, `{table}`, `{partition}`) match any one word.

use std::time::Duration;

use super::config::RabbitConfig;
use crate::secret::Secret;

/// One word of a routing key as the template renders it for a declared topic.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Word {
    /// Known text.
    Lit(String),
    /// Filled per message (database, table, partition): any one word.
    Any,
}

/// The routing key `template` gives messages of `topic`, as words.
fn key_words(template: &str, topic: &str) -> Vec<Word> {
    const ANY: &str = "\u{0}";
    let rendered = template
        .replace("{topic_}", &topic.replace('.', "_"))
        .replace("{topic}", topic)
        .replace("{database}", ANY)
        .replace("{table}", ANY)
        .replace("{partition}", ANY);
    rendered
        .split('.')
        .map(|w| {
            if w.contains(ANY) {
                Word::Any
            } else {
                Word::Lit(w.to_string())
            }
        })
        .collect()
}

/// Whether a topic-exchange binding key (`*` one word, `#` zero or more) can match a
/// key made of `key` words.
fn topic_matches(binding: &[&str], key: &[Word]) -> bool {
    match binding.split_first() {
        None => key.is_empty(),
        Some((&"#", rest)) => {
            topic_matches(rest, key) || (!key.is_empty() && topic_matches(binding, &key[1..]))
        }
        Some((b, rest)) => match key.split_first() {
            None => false,
            Some((k, krest)) => {
                let word = *b == "*"
                    || match k {
                        Word::Any => true,
                        Word::Lit(w) => w == b,
                    };
                word && topic_matches(rest, krest)
            }
        },
    }
}

/// Whether a direct-exchange binding key equals some key made of `key` words.
fn direct_matches(binding: &str, key: &[Word]) -> bool {
    let words: Vec<&str> = binding.split('.').collect();
    words.len() == key.len()
        && words.iter().zip(key).all(|(b, k)| match k {
            Word::Any => true,
            Word::Lit(w) => w == b,
        })
}

/// Whether some binding (its routing key) can take messages of `topic`.
fn bound(exchange_type: &str, template: &str, topic: &str, bindings: &[String]) -> bool {
    let key = key_words(template, topic);
    match exchange_type {
        "topic" => bindings.iter().any(|b| {
            let words: Vec<&str> = b.split('.').collect();
            topic_matches(&words, &key)
        }),
        "direct" => bindings.iter().any(|b| direct_matches(b, &key)),
        // Fanout ignores keys; headers exchanges route on headers, which a key cannot
        // show: any binding may take the message.
        _ => !bindings.is_empty(),
    }
}

/// `/` in a vhost or exchange name, and anything else outside unreserved characters,
/// percent-encoded for a URL path segment.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The routing keys of the exchange's bindings, from the management API.
fn fetch(cfg: &RabbitConfig, url: &str) -> Result<Vec<String>, String> {
    let api = format!(
        "{}/api/exchanges/{}/{}/bindings/source",
        url.trim_end_matches('/'),
        segment(&cfg.vhost),
        segment(&cfg.exchange)
    );
    let mut auth = Vec::new();
    crate::json::push_base64(
        &mut auth,
        format!("{}:{}", cfg.user, cfg.password.expose()).as_bytes(),
    );
    let auth = Secret::new(format!("Basic {}", String::from_utf8_lossy(&auth)));
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let resp = agent
        .get(&api)
        .header("Authorization", auth.expose())
        .call()
        .map_err(|e| format!("GET {api}: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp
        .into_body()
        .read_to_string()
        .map_err(|e| format!("reading the answer of {api}: {e}"))?;
    match status {
        200 => {}
        401 => return Err(format!("{api}: user `{}` was refused", cfg.user)),
        404 => {
            return Err(format!(
                "{api}: no exchange `{}` in vhost `{}`",
                cfg.exchange, cfg.vhost
            ));
        }
        s => return Err(format!("{api}: answered {s}")),
    }
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{api}: not JSON: {e}"))?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|b| b.get("routing_key").and_then(|k| k.as_str()))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default())
}

/// Warnings for the declared `topics` whose routing keys no binding takes, or why the
/// bindings could not be read. Nothing when no management URL is configured.
pub fn warnings(cfg: &RabbitConfig, topics: &[String]) -> Vec<String> {
    let Some(url) = &cfg.management_url else {
        return Vec::new();
    };
    let bindings = match fetch(cfg, url) {
        Ok(b) => b,
        Err(e) => return vec![format!("sink.rabbitmq: cannot check bindings: {e}")],
    };
    topics
        .iter()
        .filter(|t| !bound(&cfg.exchange_type, &cfg.routing_key, t, &bindings))
        .map(|t| {
            format!(
                "sink.rabbitmq: no binding of exchange `{}` takes routing key `{}` (topic `{t}`): \
                 RabbitMQ would return its messages as unroutable, and they would go through \
                 their module's policy",
                cfg.exchange,
                cfg.routing_key
                    .replace("{topic_}", &t.replace('.', "_"))
                    .replace("{topic}", t)
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn topic_bindings_match_as_rabbitmq_matches() {
        let t = |bindings: &[&str], template: &str, topic: &str| {
            bound("topic", template, topic, &b(bindings))
        };
        assert!(t(&["orders"], "{topic}", "orders"));
        assert!(!t(&["orders"], "{topic}", "orders.eu"));
        assert!(t(&["orders.*"], "{topic}", "orders.eu"));
        assert!(t(&["orders.#"], "{topic}", "orders"));
        assert!(t(&["#"], "{topic}", "anything.at.all"));
        assert!(!t(&["payments.#"], "{topic}", "orders"));
        // Per-partition keys: one queue per partition binds `orders.0`, `orders.1`...
        assert!(t(&["orders.3"], "{topic}.{partition}", "orders"));
        assert!(!t(&["orders"], "{topic}.{partition}", "orders"));
        assert!(t(&["*.*.orders"], "cdc.{database}.{table}", "x"));
        assert!(!t(&["cdc.*"], "cdc.{database}.{table}", "x"));
        // Canal's mapping: dots as underscores.
        assert!(t(&["shop_orders"], "{topic_}", "shop.orders"));
        assert!(!t(&[], "{topic}", "orders"));
    }

    #[test]
    fn direct_and_fanout_bindings() {
        assert!(bound("direct", "{topic}", "orders", &b(&["orders"])));
        assert!(!bound("direct", "{topic}", "orders", &b(&["orders.*"])));
        assert!(bound("direct", "{topic}.{partition}", "o", &b(&["o.2"])));
        assert!(bound("fanout", "{topic}", "orders", &b(&[""])));
        assert!(!bound("fanout", "{topic}", "orders", &[]));
    }

    #[test]
    fn names_are_encoded_for_the_url() {
        assert_eq!(segment("/"), "%2F");
        assert_eq!(segment("cdc.events"), "cdc.events");
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }
}
