//! The Canal TCP clients the tests use: canal-python 0.4 (`py/canal_client.py`, a
//! client Sluice did not write, in its own venv) for what a real client sees, and a
//! raw client on the agent's own packet codec for what canal-python cannot send (a
//! scrambled password, garbage, out-of-order acknowledgements).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use prost::Message;
use sluice::sink::canal_server::{auth, packet};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The venv holding canal-python (`scripts/test.sh` makes it).
pub fn python() -> PathBuf {
    let venv = std::env::var("SLUICE_CANAL_VENV").map_or_else(
        |_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/sluice/canal-venv")
        },
        PathBuf::from,
    );
    let py = venv.join("bin/python");
    assert!(
        py.is_file(),
        "no canal-python venv at {}: scripts/test.sh makes it (python3 -m venv, pip install canal-python==0.4 protobuf==3.20.3)",
        venv.display()
    );
    py
}

/// A canal-python client process writing JSON lines to `out`, killed when dropped.
pub struct PyClient {
    child: Child,
    /// Where it writes.
    pub out: PathBuf,
}

impl PyClient {
    /// Starts `py/canal_client.py PORT DESTINATION OUT MODE [ROWS]`.
    pub fn start(
        dir: &Path,
        port: u16,
        destination: &str,
        mode: &str,
        rows: Option<usize>,
    ) -> PyClient {
        let out = dir.join(format!("canal-{destination}-{mode}.jsonl"));
        let _ = std::fs::remove_file(&out);
        let log = std::fs::File::create(out.with_extension("log")).expect("client log");
        let mut cmd = Command::new(python());
        cmd.arg(crate::repo_root().join("tests/py/canal_client.py"))
            .arg(port.to_string())
            .arg(destination)
            .arg(&out)
            .arg(mode)
            .env("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        if let Some(n) = rows {
            cmd.arg(n.to_string());
        }
        let child = cmd.spawn().expect("canal-python client runs");
        PyClient { child, out }
    }

    /// The lines written so far.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Row lines only (no begin/end).
    pub fn rows(&self) -> Vec<serde_json::Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["row"].as_i64().is_some_and(|r| r >= 0))
            .collect()
    }

    /// Waits (at most `limit`) for the process to exit by itself; its exit status and
    /// stderr.
    pub fn wait(&mut self, limit: Duration) -> (Option<i32>, String) {
        let t = std::time::Instant::now();
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                let log =
                    std::fs::read_to_string(self.out.with_extension("log")).unwrap_or_default();
                return (s.code(), log);
            }
            if t.elapsed() > limit {
                let log =
                    std::fs::read_to_string(self.out.with_extension("log")).unwrap_or_default();
                return (None, log);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PyClient {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A raw Canal client.
pub struct Raw {
    stream: TcpStream,
    /// The seed of the handshake.
    pub seed: Vec<u8>,
}

/// What the server answered.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// An ACK: (error code, message); code 0 is success.
    Ack(i32, String),
    /// A MESSAGES packet: batch id and entries.
    Messages(i64, Vec<Vec<u8>>),
    /// Another packet type.
    Other(i32),
    /// The connection closed.
    Closed,
}

/// A connection whose first packet may be a handshake or a refusal.
pub struct Any {
    first: Option<packet::Packet>,
}

impl Any {
    /// Whether the server greeted it with a handshake.
    pub fn handshake_ok(&mut self) -> bool {
        self.first
            .as_ref()
            .is_some_and(|p| p.r#type == packet::kind::HANDSHAKE)
    }
}

impl Raw {
    /// Connects and reads whatever comes first.
    pub async fn connect_any(port: u16) -> Any {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
            return Any { first: None };
        };
        Any {
            first: packet::read(&mut stream).await.ok(),
        }
    }

    /// Connects and reads the handshake.
    pub async fn connect(port: u16) -> Raw {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let p = packet::read(&mut stream).await.expect("handshake");
        assert_eq!(p.r#type, packet::kind::HANDSHAKE);
        assert_eq!((p.version, p.magic_number), (Some(1), Some(17)));
        let h = packet::Handshake::decode(&p.body[..]).expect("handshake body");
        assert_eq!(h.seeds.len(), 8);
        Raw {
            stream,
            seed: h.seeds,
        }
    }

    /// Sends raw bytes.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Sends a packet of `kind` with `body`.
    pub async fn send<M: Message>(&mut self, kind: i32, body: &M) {
        let framed = packet::frame(kind, body.encode_to_vec());
        self.send_bytes(&framed).await;
    }

    /// Authenticates as `user` with `password` scrambled with the seed (as Canal's Java
    /// connector does), subscribing to `destination` when given.
    pub async fn auth(
        &mut self,
        user: &str,
        password: Option<&str>,
        destination: Option<&str>,
    ) -> Answer {
        let scrambled = password
            .map(|p| auth::to_hex(&auth::scramble411(p.as_bytes(), &self.seed)))
            .unwrap_or_default();
        let a = packet::ClientAuth {
            username: user.into(),
            password: scrambled.into_bytes(),
            net_read_timeout: Some(60_000),
            net_write_timeout: Some(60_000),
            destination: destination.unwrap_or_default().into(),
            client_id: if destination.is_some() {
                "1001".into()
            } else {
                String::new()
            },
            filter: String::new(),
            start_timestamp: 0,
        };
        self.send(packet::kind::CLIENT_AUTHENTICATION, &a).await;
        self.answer().await
    }

    /// Subscribes to `destination` as client 1001.
    pub async fn subscribe(&mut self, destination: &str) -> Answer {
        let s = packet::Sub {
            destination: destination.into(),
            client_id: "1001".into(),
            filter: String::new(),
        };
        self.send(packet::kind::SUBSCRIPTION, &s).await;
        self.answer().await
    }

    /// GET `fetch` entries, answering at once (timeout -1) or after `timeout_ms`.
    pub async fn get(&mut self, destination: &str, fetch: i32, timeout_ms: i64) -> Answer {
        let g = packet::Get {
            destination: destination.into(),
            client_id: "1001".into(),
            fetch_size: fetch,
            timeout: Some(timeout_ms),
            unit: Some(2),
            auto_ack: Some(false),
        };
        self.send(packet::kind::GET, &g).await;
        self.answer().await
    }

    /// CLIENTACK (no answer unless it is refused).
    pub async fn ack(&mut self, destination: &str, batch: i64) {
        let a = packet::ClientAck {
            destination: destination.into(),
            client_id: "1001".into(),
            batch_id: batch,
        };
        self.send(packet::kind::CLIENT_ACK, &a).await;
    }

    /// CLIENTROLLBACK (no answer).
    pub async fn rollback(&mut self, destination: &str, batch: i64) {
        let r = packet::ClientRollback {
            destination: destination.into(),
            client_id: "1001".into(),
            batch_id: batch,
        };
        self.send(packet::kind::CLIENT_ROLLBACK, &r).await;
    }

    /// The next packet (at most 10 s).
    pub async fn answer(&mut self) -> Answer {
        match tokio::time::timeout(
            Duration::from_secs(10),
            packet::read_at_most(&mut self.stream, 1 << 30),
        )
        .await
        {
            Err(_) => panic!("no answer within 10 s"),
            Ok(Err(_)) => Answer::Closed,
            Ok(Ok(p)) => match p.r#type {
                packet::kind::ACK => {
                    let a = packet::Ack::decode(&p.body[..]).expect("ack body");
                    Answer::Ack(a.error_code.unwrap_or(0), a.error_message)
                }
                packet::kind::MESSAGES => {
                    let m = packet::Messages::decode(&p.body[..]).expect("messages body");
                    Answer::Messages(m.batch_id, m.messages)
                }
                other => Answer::Other(other),
            },
        }
    }
}
