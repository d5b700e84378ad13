//! The test RabbitMQ cluster (`scripts/rabbitmq.sh`, three nodes on loopback) as the
//! tests use it: its AMQP ports, queue setup and a consumer, both through pika
//! (`tests/py/rabbit.py`), a client Sluice did not write.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::agent::Published;

/// The nodes' AMQP ports (as `scripts/rabbitmq.sh` starts them).
pub fn ports() -> Vec<u16> {
    let base: u16 = std::env::var("SLUICE_RABBIT_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(35672);
    (0..3).map(|i| base + i).collect()
}

/// Node 1's management API (`scripts/rabbitmq.sh management`).
pub fn management_url() -> String {
    format!("http://127.0.0.1:{}", ports()[0] + 1000)
}

/// Deletes exchange or queue `name` of vhost `/` (`kind`: `exchanges` or `queues`)
/// through the management API, if it exists: a test that binds or declares starts
/// from nothing, whatever an earlier run left.
pub fn delete(kind: &str, name: &str) {
    let url = format!("{}/api/{kind}/%2F/{name}", management_url());
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let resp = agent
        .delete(&url)
        .header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")
        .call()
        .unwrap_or_else(|e| panic!("DELETE {url}: {e} (is the management API up?)"));
    let status = resp.status().as_u16();
    assert!(
        status == 204 || status == 404,
        "DELETE {url}: answered {status}"
    );
}

/// `ports()` as `127.0.0.1:P` TOML strings.
pub fn addresses_toml() -> String {
    ports()
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ports_arg() -> String {
    ports()
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn script() -> PathBuf {
    crate::repo_root().join("tests/py/rabbit.py")
}

/// Runs `scripts/rabbitmq.sh ARGS`; panics (naming what failed) unless it succeeds.
pub fn cluster(args: &[&str]) {
    let out = Command::new("bash")
        .arg(crate::repo_root().join("scripts/rabbitmq.sh"))
        .args(args)
        .output()
        .expect("scripts/rabbitmq.sh runs");
    assert!(
        out.status.success(),
        "scripts/rabbitmq.sh {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fails loudly unless all three nodes are up (the test command starts them).
pub fn require_cluster() {
    for p in ports() {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", p)).is_ok(),
            "no RabbitMQ node on 127.0.0.1:{p}: start the test cluster with scripts/rabbitmq.sh start"
        );
    }
}

/// A durable topic exchange and one quorum queue per name, bound with its own name as
/// routing key, emptied.
pub fn setup(exchange: &str, queues: &[String]) {
    let out = Command::new("python3")
        .arg(script())
        .arg("setup")
        .arg(ports_arg())
        .arg(exchange)
        .args(queues)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "queue setup failed (is pika installed?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pika consumer of `queues`, writing what it receives to a file until dropped.
pub struct Consumer {
    child: Child,
    out: PathBuf,
}

impl Consumer {
    /// Starts consuming; `out` receives one JSON line per message.
    pub fn start(out: &Path, queues: &[String]) -> Consumer {
        let log = std::fs::File::create(out.with_extension("log")).expect("consumer log");
        let child = Command::new("python3")
            .arg(script())
            .arg("consume")
            .arg(ports_arg())
            .arg(out)
            .args(queues)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("python3 runs");
        Consumer {
            child,
            out: out.to_path_buf(),
        }
    }

    /// Every message received so far, in the order received (per queue: the order the
    /// queue delivered). The topic and partition come from the queue's name
    /// (`TOPIC.PARTITION`).
    pub fn read(&self) -> Vec<Published> {
        read_lines(&self.out)
    }

    /// The raw lines (queue, message id, content type, delivery mode, headers, body).
    pub fn raw(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_lines(path: &Path) -> Vec<Published> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let queue = v["queue"].as_str().unwrap_or_default();
        let (topic, partition) = match queue.rsplit_once('.') {
            Some((t, p)) if p.parse::<i32>().is_ok() => (t.to_string(), p.parse().unwrap_or(-1)),
            _ => (queue.to_string(), -1),
        };
        out.push(Published {
            topic,
            partition,
            headers: crate::agent::headers_of(&v["headers"]),
            value: serde_json::from_str(v["body"].as_str().unwrap_or_default())
                .unwrap_or(serde_json::Value::Null),
        });
    }
    out
}
