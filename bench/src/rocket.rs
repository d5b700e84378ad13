//! The RocketMQ floor for `bench/rocketmq.sh`: sends the messages a file-sink run of the
//! agent wrote (the same bodies, tags, keys and properties, to the same queues) straight
//! to RocketMQ with `rocketmq-client-rust`, with the agent's ordering: one sender per
//! message queue sending one message at a time, queues in parallel. Prints
//! `messages seconds`.
//!
//! `rocket-bench FILE.jsonl NAMESRV`

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rocketmq_client_rust::{ClientRuntime, ClientRuntimeConfig, DefaultMQProducer};
use rocketmq_model::common::message::message_single::Message;

/// One message as the agent sends it: its topic (dots as underscores), partition and
/// the parts of a RocketMQ message.
struct Outgoing {
    topic: String,
    partition: usize,
    key: Option<String>,
    properties: Vec<(String, String)>,
    body: Vec<u8>,
}

fn load(path: &str) -> anyhow::Result<Vec<Outgoing>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    let mut out = Vec::new();
    for line in std::io::BufReader::new(f).lines() {
        let v: serde_json::Value = serde_json::from_str(&line?).context("a file-sink line")?;
        out.push(Outgoing {
            topic: v["topic"].as_str().unwrap_or_default().replace('.', "_"),
            partition: v["partition"].as_u64().unwrap_or(0) as usize,
            key: v["key"].as_str().map(str::to_string),
            properties: v["headers"]
                .as_object()
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            body: serde_json::to_vec(&v["value"])?,
        });
    }
    Ok(out)
}

fn message(m: &Outgoing) -> anyhow::Result<Message> {
    let mut b = Message::builder()
        .topic(m.topic.as_str())
        .body_slice(&m.body);
    if let Some(k) = &m.key {
        b = b.key(k.as_str());
    }
    for (k, v) in &m.properties {
        b = b
            .raw_property(k.as_str(), v.as_str())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    b.build().map_err(|e| anyhow::anyhow!("{e}"))
}

async fn send(msgs: Vec<Outgoing>, namesrv: &str, rt: Arc<ClientRuntime>) -> anyhow::Result<f64> {
    let mut p = DefaultMQProducer::builder(rt)
        .producer_group("sluice_bench_floor")
        .name_server_addr(namesrv)
        .build();
    p.start().await.map_err(|e| anyhow::anyhow!("start: {e}"))?;
    // Queues looked up before the clock starts, as the agent's are after its first
    // message of a topic.
    let mut queues = HashMap::new();
    for m in &msgs {
        if !queues.contains_key(&m.topic) {
            let q = p
                .fetch_publish_message_queues(&m.topic)
                .await
                .map_err(|e| anyhow::anyhow!("queues of {}: {e}", m.topic))?;
            queues.insert(m.topic.clone(), q);
        }
    }
    let mut per_queue: HashMap<(String, usize), Vec<Outgoing>> = HashMap::new();
    for m in msgs {
        let n = queues[&m.topic].len().max(1);
        per_queue
            .entry((m.topic.clone(), m.partition % n))
            .or_default()
            .push(m);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for ((topic, i), list) in per_queue {
        let mq = queues[&topic][i].clone();
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            for m in &list {
                loop {
                    let r = p
                        .send_to_queue_with_timeout(message(m)?, mq.clone(), 3000)
                        .await;
                    match r {
                        Ok(Some(res))
                            if matches!(
                                res.send_status,
                                rocketmq_model::result::SendStatus::SendOk
                            ) =>
                        {
                            break;
                        }
                        _ => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    p.shutdown().await;
    Ok(secs)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        bail!("usage: rocket-bench FILE.jsonl NAMESRV");
    }
    let msgs = load(&args[1])?;
    let count = msgs.len();
    // The client's own runtime, one worker, as the agent gives it.
    let owner = rocketmq_runtime::RuntimeOwner::plan(
        rocketmq_runtime::RuntimeConfig::for_parallelism("rocket-bench", 1),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?
    .build()
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let client = ClientRuntime::try_new(
        owner.root_context().component("client"),
        ClientRuntimeConfig::default(),
        rocketmq_observability::TelemetryHandle::default(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let secs = rt.block_on(send(msgs, &args[2], client))?;
    println!("{count} {secs:.3}");
    owner.shutdown_background();
    Ok(())
}
