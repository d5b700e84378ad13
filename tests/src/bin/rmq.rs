//! `rmq`: the RocketMQ side of the tests and benchmarks, through `rocketmq-client-rust`
//! (a client Sluice did not write): creates topics, and reads everything a topic holds.
//!
//!   rmq create NAMESRV CLUSTER TOPIC QUEUES
//!   rmq dump NAMESRV TOPIC TAG_EXPRESSION OUT.jsonl IDLE_MS
//!   rmq queues NAMESRV TOPIC          (prints the topic's writable queue count)
//!
//! `dump` pulls every queue of TOPIC from its first offset with the tag expression
//! (`*`, or `a || b`) and appends one JSON line per message — topic, queue, offset,
//! tags, keys, user properties, body — until no queue has had anything new for IDLE_MS.
//! Invariant: within one queue, lines are in queue order.

// Classic Pull (deprecated upstream in favour of lite pull) is kept on purpose: it reads
// each queue from an explicit offset, in queue order, which is what the tests check.
#![allow(deprecated)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocketmq_client_rust::{
    ClientRuntime, ClientRuntimeConfig, DefaultMQProducer, DefaultMQPullConsumer,
};
use rocketmq_model::common::message::MessageTrait;
use rocketmq_model::result::PullStatus;

fn runtime() -> anyhow::Result<(rocketmq_runtime::RuntimeOwner, Arc<ClientRuntime>)> {
    let owner = rocketmq_runtime::RuntimeOwner::plan(
        rocketmq_runtime::RuntimeConfig::for_parallelism("rmq", 1),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?
    .build()
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = ClientRuntime::try_new(
        owner.root_context().component("client"),
        ClientRuntimeConfig::default(),
        rocketmq_observability::TelemetryHandle::default(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((owner, rt))
}

async fn create(namesrv: &str, cluster: &str, topic: &str, queues: i32) -> anyhow::Result<()> {
    let (owner, rt) = runtime()?;
    let mut p = DefaultMQProducer::builder(rt)
        .producer_group("sluice_tests_admin")
        .name_server_addr(namesrv)
        .build();
    p.start().await.map_err(|e| anyhow::anyhow!("start: {e}"))?;
    // Creating a topic that exists only updates it; a route shows up once the broker
    // registers it with the name server.
    p.create_topic(cluster, topic, queues, HashMap::new())
        .await
        .map_err(|e| anyhow::anyhow!("create {topic}: {e}"))?;
    let t = Instant::now();
    loop {
        match p.fetch_publish_message_queues(topic).await {
            Ok(q) if q.len() == queues as usize => break,
            _ if t.elapsed() > Duration::from_secs(30) => {
                anyhow::bail!("topic {topic} has no route with {queues} queues after 30 s")
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    p.shutdown().await;
    owner.shutdown_background();
    Ok(())
}

async fn queues(namesrv: &str, topic: &str) -> anyhow::Result<()> {
    let (owner, rt) = runtime()?;
    let mut p = DefaultMQProducer::builder(rt)
        .producer_group("sluice_tests_admin")
        .name_server_addr(namesrv)
        .build();
    p.start().await.map_err(|e| anyhow::anyhow!("start: {e}"))?;
    let q = p
        .fetch_publish_message_queues(topic)
        .await
        .map_err(|e| anyhow::anyhow!("route of {topic}: {e}"))?;
    println!("{}", q.len());
    p.shutdown().await;
    owner.shutdown_background();
    Ok(())
}

async fn dump(
    namesrv: &str,
    topic: &str,
    expr: &str,
    out: &str,
    idle: Duration,
) -> anyhow::Result<()> {
    let (owner, rt) = runtime()?;
    let c = DefaultMQPullConsumer::builder(rt)
        .consumer_group(format!("sluice_tests_dump_{}", std::process::id()))
        .name_server_addr(namesrv)
        .build()
        .map_err(|e| anyhow::anyhow!("consumer: {e}"))?;
    c.start().await.map_err(|e| anyhow::anyhow!("start: {e}"))?;
    let queues = c
        .fetch_subscribe_message_queues(topic)
        .await
        .map_err(|e| anyhow::anyhow!("queues of {topic}: {e}"))?;
    let mut offsets = vec![0i64; queues.len()];
    let mut file = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)?,
    );
    let mut last_new = Instant::now();
    while last_new.elapsed() < idle {
        let mut got = false;
        for (i, q) in queues.iter().enumerate() {
            let r = match c.pull(q, expr, offsets[i], 64).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("rmq: pull {topic}/{}: {e}", q.queue_id());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            offsets[i] = r.next_begin_offset() as i64;
            if *r.pull_status() != PullStatus::Found {
                continue;
            }
            for m in r.msg_found_list().unwrap_or_default() {
                got = true;
                let props: serde_json::Map<String, serde_json::Value> = m
                    .properties()
                    .iter()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
                    .collect();
                let line = serde_json::json!({
                    "topic": m.topic().as_str(),
                    "queue": m.queue_id(),
                    "offset": m.queue_offset(),
                    "tags": m.get_tags().map(|t| t.to_string()),
                    "keys": m.get_keys().map(|k| k.to_string()),
                    "properties": props,
                    "body": String::from_utf8_lossy(&m.body().unwrap_or_default()),
                });
                writeln!(file, "{line}")?;
            }
        }
        file.flush()?;
        if got {
            last_new = Instant::now();
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let _ = c.shutdown().await;
    owner.shutdown_background();
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    match a(0) {
        "create" => create(a(1), a(2), a(3), a(4).parse()?).await,
        "dump" => dump(a(1), a(2), a(3), a(4), Duration::from_millis(a(5).parse()?)).await,
        "queues" => queues(a(1), a(2)).await,
        _ => anyhow::bail!(
            "usage: rmq create NAMESRV CLUSTER TOPIC QUEUES | rmq dump NAMESRV TOPIC EXPR OUT IDLE_MS | rmq queues NAMESRV TOPIC"
        ),
    }
}
