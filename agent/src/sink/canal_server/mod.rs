//! The Canal server publisher (`kind = "canal-server"`): Sluice speaks Canal's TCP
//! protocol itself, so services built on Canal's client (`CanalConnector`:
//! `subscribe`, `getWithoutAck`, `ack`, `rollback`) consume from the agent unchanged.
//! A destination is a topic: what modules route to topic `X` is what a client of
//! destination `X` receives, in binlog order.
//!
//! Invariants:
//! - a message is acknowledged (for the checkpoint) only when a client acknowledged
//!   the batch holding it, so the binlog checkpoint never passes a transaction some
//!   destination has not acknowledged, and a restarted agent delivers again everything
//!   not acknowledged;
//! - each destination's acknowledged position (its cursor) is written atomically
//!   (temporary file, then rename) after each acknowledgement, and entries at or before
//!   it are not delivered again after a restart, so a client resumes exactly after its
//!   last acknowledgement even when another destination held the checkpoint back;
//! - memory is bounded by the window (`sink.max_in_flight` messages, 12 MiB soft): while
//!   a destination's client does not acknowledge, the binlog reader waits.

pub mod auth;
pub mod config;
pub mod destination;
pub mod packet;
mod server;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use config::{CanalServerConfig, RawCanalServer};
use destination::{AckError, Destination, Fetched, PosKey};

use super::config::{PublisherConfig, Registration, SinkConfig};
use super::window::Window;
use super::{OutMessage, Publisher, RefusalReason, Refused, Sink, SinkError};
use crate::event::Checkpoint;
use crate::format::Format;

/// `kind = "canal-server"`: `[sink.canal_server]` ([`RawCanalServer`]).
pub const REGISTRATION: Registration = Registration {
    kind: "canal-server",
    keys: <SinkKeys as schemars::JsonSchema>::json_schema,
    section: |s| {
        let raw: RawCanalServer = s.require("canal_server", "at least `destinations`")?;
        Ok(Arc::new(raw.validate(s.resolver())?))
    },
};

/// `[sink]` keys of `kind = "canal-server"`.
#[derive(schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SinkKeys {
    /// `[sink.canal_server]`: the listener Canal's TCP clients connect to.
    pub canal_server: config::RawCanalServer,
}

impl PublisherConfig for CanalServerConfig {
    fn kind(&self) -> &'static str {
        "canal-server"
    }

    fn format(&self) -> Option<Format> {
        Some(Format::CanalProtobuf)
    }

    fn open(&self, sink: &SinkConfig) -> Result<Sink, SinkError> {
        Ok(Box::new(CanalServer::new(self, sink.max_in_flight)?))
    }
}

/// The soft bound on bytes held.
const SOFT_BYTES: u64 = 12 << 20;

/// One destination and who is on it.
struct Served {
    stream: Destination,
    notify: Arc<Notify>,
    /// The session holding it.
    session: Option<u64>,
    /// Who that is: (peer address, client id, since).
    client: Option<(String, String, std::time::SystemTime)>,
    /// The last position a client acknowledged (this run or an earlier one).
    cursor: Option<PosKey>,
}

/// What the pipeline side and the connections share.
pub struct Shared {
    cfg: CanalServerConfig,
    window: Arc<Window>,
    destinations: Mutex<HashMap<String, Served>>,
}

/// Sets destination `name`'s gauges from its stream.
fn gauges(name: &str, d: &Served) {
    let m = crate::metrics::global();
    let label = [("destination", name.to_string())];
    m.canal_pending
        .get_or_create(&label)
        .set(d.stream.pending() as i64);
    m.canal_outstanding
        .get_or_create(&label)
        .set(d.stream.outstanding() as i64);
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Served>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.destinations.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn claim(&self, name: &str, session: u64, peer: &str, client_id: &str) -> Result<(), String> {
        let mut ds = self.lock();
        let Some(d) = ds.get_mut(name) else {
            return Err(format!(
                "destination `{name}` is not served here (served: {})",
                self.cfg.destinations.join(", ")
            ));
        };
        match d.session {
            Some(s) if s != session => Err(format!(
                "destination `{name}` has a client already (one client per destination)"
            )),
            _ => {
                if d.session.is_none() {
                    // A new client: what the last one left unacknowledged comes first.
                    d.stream.rollback(0);
                    crate::metrics::global().canal_clients.inc();
                }
                d.session = Some(session);
                d.client = Some((
                    peer.to_string(),
                    client_id.to_string(),
                    std::time::SystemTime::now(),
                ));
                gauges(name, d);
                Ok(())
            }
        }
    }

    fn release(&self, name: &str, session: u64) {
        let mut ds = self.lock();
        if let Some(d) = ds.get_mut(name)
            && d.session == Some(session)
        {
            d.session = None;
            d.client = None;
            d.stream.rollback(0);
            crate::metrics::global().canal_clients.dec();
            gauges(name, d);
        }
    }

    /// Whether a destination with entries not yet acknowledged has a client.
    fn clients_with_work(&self) -> bool {
        self.lock()
            .values()
            .any(|d| d.session.is_some() && (d.stream.pending() > 0 || d.stream.outstanding() > 0))
    }

    fn notify(&self, name: &str) -> Arc<Notify> {
        self.lock()
            .get(name)
            .map_or_else(|| Arc::new(Notify::new()), |d| d.notify.clone())
    }

    fn pending(&self, name: &str) -> usize {
        self.lock().get(name).map_or(0, |d| d.stream.pending())
    }

    fn fetch(&self, name: &str, n: usize, keep: &dyn Fn(&str, &str) -> bool) -> Option<Fetched> {
        let mut ds = self.lock();
        let d = ds.get_mut(name)?;
        let f = d.stream.fetch(n, keep);
        gauges(name, d);
        f
    }

    fn rollback(&self, name: &str, id: i64) {
        if let Some(d) = self.lock().get_mut(name) {
            d.stream.rollback(id);
            gauges(name, d);
        }
    }

    /// Batch `id` of `name` is acknowledged: its messages leave the window and the
    /// destination's cursor is written.
    fn ack(&self, name: &str, id: i64) -> Result<(), AckError> {
        let acked = {
            let mut ds = self.lock();
            let Some(d) = ds.get_mut(name) else {
                return Err(AckError::Unknown(id));
            };
            let acked = d.stream.ack(id)?;
            if acked.cursor.is_some() {
                d.cursor = acked.cursor;
            }
            gauges(name, d);
            crate::metrics::global()
                .canal_acked
                .get_or_create(&[("destination", name.to_string())])
                .inc_by(acked.entries);
            acked
        };
        for (txn, bytes) in acked.messages {
            self.window.acked(txn, bytes);
        }
        if let Some(cursor) = acked.cursor
            && let Err(e) = write_cursor(&self.cfg, name, cursor)
        {
            // The checkpoint still holds: a restart delivers the batch again rather
            // than losing it.
            tracing::warn!(message = "Canal server: cannot write a destination's cursor.", destination = name, error = %e);
        }
        Ok(())
    }
}

fn cursor_path(cfg: &CanalServerConfig, name: &str) -> std::path::PathBuf {
    // Destination names may hold anything: hex keeps the file name safe.
    cfg.cursor_dir
        .join(format!("{}.cursor", auth::to_hex(name.as_bytes())))
}

fn write_cursor(
    cfg: &CanalServerConfig,
    name: &str,
    (file, offset): PosKey,
) -> std::io::Result<()> {
    std::fs::create_dir_all(&cfg.cursor_dir)?;
    let path = cursor_path(cfg, name);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{file} {offset}\n"))?;
    std::fs::rename(&tmp, &path)
}

fn read_cursor(cfg: &CanalServerConfig, name: &str) -> Option<PosKey> {
    let text = std::fs::read_to_string(cursor_path(cfg, name)).ok()?;
    let (f, o) = text.trim().split_once(' ')?;
    Some((f.parse().ok()?, o.parse().ok()?))
}

/// The publisher: the pipeline's side. The listener and its sessions run as tasks.
pub struct CanalServer {
    shared: Arc<Shared>,
    stop: CancellationToken,
    /// Destinations with entries in the open transaction.
    open: Vec<String>,
}

impl Drop for CanalServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl CanalServer {
    /// Listens (an address in use is an error naming it) and starts serving.
    pub fn new(cfg: &CanalServerConfig, max_in_flight: usize) -> Result<Self, SinkError> {
        let setup = |e: &dyn std::fmt::Display| {
            SinkError::Setup(format!("sink.canal_server.listen {}: {e}", cfg.listen))
        };
        let std_listener = std::net::TcpListener::bind(cfg.listen).map_err(|e| setup(&e))?;
        std_listener.set_nonblocking(true).map_err(|e| setup(&e))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| SinkError::Setup(format!("canal server: {e}")))?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(std_listener).map_err(|e| setup(&e))?
        };
        let destinations = cfg
            .destinations
            .iter()
            .map(|d| {
                let resume = read_cursor(cfg, d);
                (
                    d.clone(),
                    Served {
                        stream: Destination::new(resume),
                        notify: Arc::new(Notify::new()),
                        session: None,
                        client: None,
                        cursor: resume,
                    },
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            window: Arc::new(Window::new(max_in_flight, SOFT_BYTES)),
            destinations: Mutex::new(destinations),
        });
        let stop = CancellationToken::new();
        runtime.spawn(server::serve(listener, shared.clone(), stop.clone()));
        tracing::info!(message = "Canal server listening.", address = %cfg.listen, destinations = ?cfg.destinations, auth = cfg.auth.is_some());
        Ok(CanalServer {
            shared,
            stop,
            open: Vec::new(),
        })
    }

    fn refused(m: &OutMessage, bytes: u64, reason: RefusalReason, detail: String) -> Refused {
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        Refused {
            txn: m.txn,
            reason,
            topic: m.topic.to_string(),
            position: m.position(),
            module: m.header("sluice.module").map(text).unwrap_or_default(),
            headers: m.sluice_headers(),
            payload_bytes: bytes as usize,
            key_bytes: m.key.as_ref().map_or(0, Vec::len),
            in_flight_bytes: bytes,
            detail,
        }
    }
}

impl Publisher for CanalServer {
    /// Every declared topic must be a destination served here.
    fn check_topics(&self, topics: &[String]) -> Result<(), SinkError> {
        for t in topics {
            if !self.shared.cfg.destinations.contains(t) {
                return Err(SinkError::MissingTopic {
                    topic: t.clone(),
                    context: Some(format!(
                        "it is not one of sink.canal_server.destinations ({})",
                        self.shared.cfg.destinations.join(", ")
                    )),
                });
            }
        }
        Ok(())
    }
    fn has_room(&self) -> bool {
        self.shared.window.has_room()
    }
    fn check(&self) -> Result<(), SinkError> {
        self.shared.window.check()
    }
    /// Queues the message's entry on its destination (a topic not served is refused,
    /// for the deciding module's policy).
    fn send(&mut self, mut m: OutMessage) -> Result<(), SinkError> {
        let bytes = m.payload.len() as u64;
        let payload = std::mem::take(&mut m.payload);
        self.shared.window.sent(m.txn, bytes)?;
        let name: &str = &m.topic;
        let result = {
            let mut ds = self.shared.lock();
            match ds.get_mut(name) {
                None => Err((
                    RefusalReason::Unroutable,
                    format!(
                        "topic `{name}` is not one of sink.canal_server.destinations ({})",
                        self.shared.cfg.destinations.join(", ")
                    ),
                )),
                Some(d) => match d.stream.push_row(m.txn, payload, bytes) {
                    Ok(done) => {
                        d.notify.notify_waiters();
                        gauges(name, d);
                        Ok(done)
                    }
                    Err(e) => Err((RefusalReason::Rejected, e)),
                },
            }
        };
        match result {
            Ok(done) => {
                if !self.open.iter().any(|o| o == name) {
                    self.open.push(name.to_string());
                }
                for (txn, b) in done {
                    self.shared.window.acked(txn, b);
                }
            }
            Err((reason, detail)) => self
                .shared
                .window
                .refuse(Self::refused(&m, bytes, reason, detail)),
        }
        self.check()
    }
    fn commit(&mut self, txn: u64, cp: Checkpoint, seen: Instant) -> Result<(), SinkError> {
        {
            let mut ds = self.shared.lock();
            for name in self.open.drain(..) {
                if let Some(d) = ds.get_mut(&name) {
                    d.stream.end(txn, &cp.file, cp.position);
                    d.notify.notify_waiters();
                    gauges(&name, d);
                }
            }
        }
        self.shared.window.commit(txn, cp, seen);
        self.check()
    }
    fn safe_checkpoint(&mut self) -> Result<Option<Checkpoint>, SinkError> {
        self.check()?;
        Ok(self.shared.window.safe())
    }
    /// Waits for clients to acknowledge what they can: while some destination holding
    /// unacknowledged entries has a client, at most `timeout`; with none connected, not
    /// at all — those entries are read again from the checkpoint at the next start.
    fn drain(&mut self, timeout: Duration) -> Result<(), SinkError> {
        let start = Instant::now();
        loop {
            let step = timeout
                .saturating_sub(start.elapsed())
                .min(Duration::from_millis(100));
            match self.shared.window.drain(step) {
                Err(SinkError::Timeout { .. }) if !self.shared.clients_with_work() => return Ok(()),
                Err(e @ SinkError::Timeout { .. }) if start.elapsed() >= timeout => return Err(e),
                Err(SinkError::Timeout { .. }) => {}
                other => return other,
            }
        }
    }
    fn counts(&self) -> (u64, u64) {
        self.shared.window.counts()
    }
    fn take_refused(&mut self) -> Vec<Refused> {
        self.shared.window.take_refused()
    }
    fn settle(&mut self, r: &Refused) {
        self.shared.window.settle(r);
    }
    /// Each destination: its client (peer, client id, connected since), entries not
    /// fetched, batches not acknowledged, and its cursor (binlog file number, offset).
    fn status(&self) -> Option<serde_json::Value> {
        let ds = self.shared.lock();
        let mut names: Vec<&String> = ds.keys().collect();
        names.sort();
        let list: Vec<serde_json::Value> = names
            .into_iter()
            .filter_map(|n| ds.get(n).map(|d| (n, d)))
            .map(|(n, d)| {
                serde_json::json!({
                    "destination": n,
                    "client": d.client.as_ref().map(|(peer, id, since)| serde_json::json!({
                        "peer": peer,
                        "client_id": id,
                        "connected_unix_ms": since
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |t| t.as_millis() as u64),
                    })),
                    "pending_entries": d.stream.pending(),
                    "outstanding_batches": d.stream.outstanding(),
                    "cursor": d.cursor.map(|(file, offset)| serde_json::json!({
                        "file_number": file,
                        "offset": offset,
                    })),
                })
            })
            .collect();
        Some(serde_json::json!({
            "kind": "canal-server",
            "listen": self.shared.cfg.listen.to_string(),
            "destinations": list,
        }))
    }
}
