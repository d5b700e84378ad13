//! The RabbitMQ floor for `bench/rabbitmq.sh`: publishes the messages a file-sink run
//! of the agent wrote (the same payloads, headers and routing keys the agent publishes)
//! straight to RabbitMQ with lapin, publisher confirms on one channel and a window of
//! unconfirmed messages like the agent's. Prints `messages seconds`.
//!
//! `rabbit-bench FILE.jsonl PORT EXCHANGE [WINDOW]`

use std::collections::VecDeque;
use std::io::BufRead;
use std::time::Instant;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};

struct Message {
    routing_key: String,
    payload: Vec<u8>,
    properties: BasicProperties,
}

/// Reads the file sink's lines as the agent would publish them.
fn load(path: &str) -> anyhow::Result<Vec<Message>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    let mut out = Vec::new();
    for line in std::io::BufReader::new(f).lines() {
        let line = line?;
        let v: serde_json::Value = serde_json::from_str(&line).context("a file-sink line")?;
        let topic = v["topic"].as_str().unwrap_or_default();
        let routing_key = match v["partition"].as_i64() {
            Some(p) => format!("{topic}.{p}"),
            None => format!("{topic}."),
        };
        let mut headers = FieldTable::default();
        if let Some(h) = v["headers"].as_object() {
            for (k, val) in h {
                headers.insert(
                    ShortString::from(k.as_str()),
                    AMQPValue::LongString(LongString::from(
                        val.as_str().unwrap_or_default().as_bytes().to_vec(),
                    )),
                );
            }
        }
        let position = v["headers"]["sluice.position"].as_str().unwrap_or_default();
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(position.into())
            .with_headers(headers);
        out.push(Message {
            routing_key,
            payload: serde_json::to_vec(&v["value"])?,
            properties,
        });
    }
    Ok(out)
}

async fn publish(
    msgs: &[Message],
    port: u16,
    exchange: &str,
    window: usize,
) -> anyhow::Result<f64> {
    let conn = Connection::connect(
        &format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        ConnectionProperties::default(),
    )
    .await?;
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let started = Instant::now();
    let mut confirms = FuturesOrdered::new();
    let mut pending: VecDeque<usize> = VecDeque::new();
    for (i, m) in msgs.iter().enumerate() {
        while pending.len() >= window {
            check(confirms.next().await)?;
            pending.pop_front();
        }
        let c = channel
            .basic_publish(
                exchange.into(),
                m.routing_key.as_str().into(),
                options,
                &m.payload,
                m.properties.clone(),
            )
            .await?;
        confirms.push_back(c);
        pending.push_back(i);
    }
    while let Some(c) = confirms.next().await {
        check(Some(c))?;
    }
    let secs = started.elapsed().as_secs_f64();
    conn.close(200, "done".into()).await?;
    Ok(secs)
}

fn check(c: Option<lapin::Result<Confirmation>>) -> anyhow::Result<()> {
    match c {
        Some(Ok(Confirmation::Ack(None))) => Ok(()),
        Some(Ok(other)) => bail!("not confirmed: {other:?}"),
        Some(Err(e)) => Err(e.into()),
        None => bail!("confirm stream ended early"),
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        bail!("usage: rabbit-bench FILE.jsonl PORT EXCHANGE [WINDOW]");
    }
    let msgs = load(&args[1])?;
    let port: u16 = args[2].parse().context("PORT")?;
    let window: usize = args
        .get(4)
        .map_or(Ok(20_000), |w| w.parse())
        .context("WINDOW")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let secs = rt.block_on(publish(&msgs, port, &args[3], window))?;
    println!("{} {secs:.3}", msgs.len());
    Ok(())
}
