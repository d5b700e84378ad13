//! The test RocketMQ (`scripts/rocketmq.sh`: the Rust name server and one broker on
//! loopback) as the tests use it: its address, topic creation and a consumer, both
//! through the `rmq` helper (`src/bin/rmq.rs`, on `rocketmq-client-rust`, a client
//! Sluice's publisher does not share code with).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::agent::Published;

/// The name server (as `scripts/rocketmq.sh` starts it).
pub fn namesrv() -> String {
    let port: u16 = std::env::var("SLUICE_ROCKETMQ_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(19876);
    format!("127.0.0.1:{port}")
}

/// The cluster the test broker belongs to.
pub const CLUSTER: &str = "SluiceCluster";

/// The `rmq` helper beside the test binary.
fn rmq() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
    let bin = dir.join("rmq");
    assert!(
        bin.is_file(),
        "{} not built (cargo build --workspace --bins builds it)",
        bin.display()
    );
    bin
}

/// Fails loudly unless the name server and the broker answer (the test command starts
/// them).
pub fn require_broker() {
    let port = |p: &str| p.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
    let ns = namesrv();
    let ns_port = port(&ns).unwrap_or(19876);
    for (what, p) in [
        ("name server", ns_port),
        ("broker", ns_port + 1035),
        ("SYNC_MASTER broker", ns_port + 1055),
    ] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", p)).is_ok(),
            "no RocketMQ {what} on 127.0.0.1:{p}: start it with scripts/rocketmq.sh start"
        );
    }
}

/// Runs `scripts/rocketmq.sh ARGS`; panics (naming what failed) unless it succeeds.
pub fn script(args: &[&str]) {
    let out = Command::new("bash")
        .arg(crate::repo_root().join("scripts/rocketmq.sh"))
        .args(args)
        .output()
        .expect("scripts/rocketmq.sh runs");
    assert!(
        out.status.success(),
        "scripts/rocketmq.sh {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The cluster of the second test broker: a SYNC_MASTER without a slave, which stores
/// each message but never answers `SEND_OK`.
pub const SYNC_CLUSTER: &str = "SyncCluster";

/// Creates (or updates) `topic` with `queues` queues and waits for its route.
pub fn create_topic(topic: &str, queues: i32) {
    create_topic_on(CLUSTER, topic, queues)
}

/// [`create_topic`] on the masters of `cluster`. Tried for up to 30 s: after a test
/// restarts the name server, a broker is unknown to it until its next registration
/// (every 10 s), and creating a topic on its cluster fails until then.
pub fn create_topic_on(cluster: &str, topic: &str, queues: i32) {
    let t = std::time::Instant::now();
    loop {
        let out = Command::new(rmq())
            .args(["create", &namesrv(), cluster, topic, &queues.to_string()])
            .output()
            .expect("rmq runs");
        if out.status.success() {
            return;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "creating topic {topic} on cluster {cluster}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// How many writable queues `topic` has (`None`: no route).
pub fn queues(topic: &str) -> Option<usize> {
    let out = Command::new(rmq())
        .args(["queues", &namesrv(), topic])
        .output()
        .expect("rmq runs");
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// A consumer of `topics` (each pulled from its first message, with a tag
/// expression), writing what it receives to files until dropped.
pub struct Consumer {
    children: Vec<Child>,
    outs: Vec<PathBuf>,
}

impl Consumer {
    /// Starts one puller per topic; `dir` receives `TOPIC.jsonl` files.
    pub fn start(dir: &Path, topics: &[&str], expression: &str) -> Consumer {
        let mut children = Vec::new();
        let mut outs = Vec::new();
        for t in topics {
            let out = dir.join(format!("{t}.{}.jsonl", expression.len()));
            let _ = std::fs::remove_file(&out);
            let log = std::fs::File::create(out.with_extension("log")).expect("consumer log");
            children.push(
                Command::new(rmq())
                    .args(["dump", &namesrv(), t, expression])
                    .arg(&out)
                    .arg("3600000")
                    .stdout(Stdio::null())
                    .stderr(Stdio::from(log))
                    .spawn()
                    .expect("rmq runs"),
            );
            outs.push(out);
        }
        Consumer { children, outs }
    }

    /// The raw lines received so far (topic, queue, offset, tags, keys, properties,
    /// body), per topic in queue order.
    pub fn raw(&self) -> Vec<serde_json::Value> {
        self.outs
            .iter()
            .flat_map(|o| {
                std::fs::read_to_string(o)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Every message received so far, as published: the topic with RocketMQ's `_`
    /// turned back into the decision's `.`, the queue as the partition, Sluice's
    /// headers from the user properties.
    pub fn read(&self) -> Vec<Published> {
        self.raw()
            .iter()
            .map(|v| Published {
                topic: v["topic"].as_str().unwrap_or_default().replace('_', "."),
                partition: v["queue"].as_i64().unwrap_or(-1) as i32,
                headers: crate::agent::headers_of(&v["properties"]),
                value: serde_json::from_str(v["body"].as_str().unwrap_or_default())
                    .unwrap_or(serde_json::Value::Null),
            })
            .collect()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
