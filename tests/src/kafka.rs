//! The Kafka-protocol broker the tests use (tansu, started by `scripts/tansu.sh` on
//! loopback) and a real rdkafka consumer to read back what the agent published.

use std::cell::RefCell;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::agent::Published;

/// Broker address.
pub const BROKERS: &str = "127.0.0.1:19092";

fn script(args: &[&str]) {
    let path = crate::repo_root().join("scripts/tansu.sh");
    let out = Command::new("bash")
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    assert!(
        out.status.success(),
        "tansu.sh {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the broker if it is not running (keeps its topics).
pub fn broker() {
    script(&["start"]);
}

/// Restarts the broker empty and creates `topics` with `partitions` each.
pub fn fresh_broker(topics: &[&str], partitions: u32) {
    script(&["restart"]);
    for t in topics {
        script(&["topic", t, &partitions.to_string()]);
    }
}

/// Reads every message of some topics from the beginning, incrementally.
pub struct Reader {
    consumer: BaseConsumer,
    seen: RefCell<Vec<Published>>,
}

impl Reader {
    /// Assigns all partitions of `topics` from offset 0.
    pub fn new(topics: &[&str], partitions: i32) -> Reader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", BROKERS)
            .set("group.id", "sluice-tests")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for t in topics {
            for p in 0..partitions {
                tpl.add_partition_offset(t, p, Offset::Beginning)
                    .expect("partition");
            }
        }
        consumer.assign(&tpl).expect("assign");
        Reader {
            consumer,
            seen: RefCell::new(Vec::new()),
        }
    }

    /// All messages so far (polls until the broker has nothing more for 300 ms).
    pub fn read(&self) -> Vec<Published> {
        let mut idle = Instant::now();
        while idle.elapsed() < Duration::from_millis(300) {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    idle = Instant::now();
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|x| {
                                    (
                                        x.key.to_string(),
                                        String::from_utf8_lossy(x.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let value = m
                        .payload()
                        .and_then(|p| serde_json::from_slice(p).ok())
                        .unwrap_or(serde_json::Value::Null);
                    self.seen.borrow_mut().push(Published {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        headers,
                        value,
                    });
                }
                Some(Err(e)) => panic!("consumer error: {e}"),
                None => {}
            }
        }
        self.seen.borrow().clone()
    }
}
