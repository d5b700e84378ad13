//! The Canal server's connections: handshake, authentication, then the session
//! (subscribe, get, ack, rollback) of one client on one destination.
//!
//! Invariants:
//! - a connection that does not authenticate within 10 s, sends a frame over the limit,
//!   garbage, an unknown packet, an out-of-order acknowledgement or an oversized fetch
//!   gets an ACK with Canal's error code and is closed; nothing it does reaches another
//!   connection or the pipeline beyond its own destination's batches;
//! - one client per destination at a time; whatever a client fetched and did not
//!   acknowledge comes again to the next one (its connection closing rolls it back);
//! - a GET that waits holds no lock: it sleeps on the destination's notification.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::auth;
use super::packet::{
    self, ClientAck, ClientAuth, ClientRollback, Get, Handshake, Messages, Sub, kind,
};

/// How long a client has to authenticate.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a session may be silent when the client names no timeout (Canal: 1 hour).
const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Connections open at once; one more is answered with an error and closed, so a flood
/// of connections cannot take the agent's file descriptors.
const MAX_CONNECTIONS: usize = 256;

/// Accepts connections until `stop`.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let ids = AtomicU64::new(1);
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(message = "Canal server: accept failed.", error = %e);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = open.clone().try_acquire_owned() else {
            crate::metrics::global()
                .canal_errors
                .get_or_create(&[("reason", "connections".to_string())])
                .inc();
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    packet::write(
                        &mut stream,
                        &packet::ack(
                            400,
                            &format!("too many connections (at most {MAX_CONNECTIONS})"),
                        ),
                    ),
                )
                .await;
            });
            continue;
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let (mut r, mut w) = stream.into_split();
            let mut s = Session {
                id,
                peer: peer.to_string(),
                shared: &shared,
                destination: None,
            };
            let outcome = tokio::select! {
                _ = stop.cancelled() => Ok(()),
                o = s.run(&mut r, &mut w) => o,
            };
            s.release();
            if let Err(e) = outcome {
                crate::metrics::global()
                    .canal_errors
                    .get_or_create(&[("reason", e.reason().to_string())])
                    .inc();
                tracing::info!(message = "Canal client closed with an error.", peer = %peer, error = %e);
            }
        });
    }
}

/// Why a session ended early: the error code and message the client was sent.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    code: i32,
    message: String,
}

impl Refusal {
    /// The metric label of the refusal.
    fn reason(&self) -> &'static str {
        let m = self.message.as_str();
        if m.starts_with("auth failed") || m.starts_with("no authentication") {
            "auth"
        } else if m.contains("batchId") {
            "ack"
        } else if m.starts_with("fetch_size") || m.starts_with("timeout") || m.starts_with("unit") {
            "fetch"
        } else if m.contains("destination") || m.contains("subscribed") {
            "destination"
        } else {
            "protocol"
        }
    }
}

fn refuse<T>(code: i32, message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        code,
        message: message.into(),
    })
}

/// A subscription: the destination, the client id, the client's table filter.
struct Subscription {
    name: String,
    filter: Option<sluice_sdk::canal::TableFilter>,
}

struct Session<'a> {
    id: u64,
    peer: String,
    shared: &'a Shared,
    destination: Option<Subscription>,
}

impl Session<'_> {
    /// The session; on a refusal, the client gets the error ACK before the close.
    async fn run<R, W>(&mut self, r: &mut R, w: &mut W) -> Result<(), Refusal>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let result = self.talk(r, w).await;
        if let Err(e) = &result
            && e.code != 0
        {
            // Best effort: the client may be gone already.
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                packet::write(w, &packet::ack(e.code, &e.message)),
            )
            .await;
        }
        match result {
            Err(e) if e.code == 0 => Ok(()),
            other => other,
        }
    }

    async fn talk<R, W>(&mut self, r: &mut R, w: &mut W) -> Result<(), Refusal>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let seed: [u8; 8] = rand_seed();
        let hello = Handshake {
            communication_encoding: Some("utf8".into()),
            seeds: seed.to_vec(),
            supported_compressions: packet::COMPRESSION_NONE,
        };
        send(w, &packet::frame(kind::HANDSHAKE, hello.encode_to_vec())).await?;
        let p = match tokio::time::timeout(AUTH_TIMEOUT, packet::read(r)).await {
            Err(_) => return refuse(400, "no authentication within 10 s"),
            Ok(p) => p.or_else(read_refusal)?,
        };
        if p.r#type != kind::CLIENT_AUTHENTICATION {
            return refuse(
                400,
                format!(
                    "expected CLIENTAUTHENTICATION, got packet type {}",
                    p.r#type
                ),
            );
        }
        let a = ClientAuth::decode(&p.body[..])
            .or_else(|e| refuse(400, format!("not a ClientAuth: {e}")))?;
        if let Some((user, stored)) = &self.shared.cfg.auth
            && (a.username != *user || !auth::verify(&a.password, stored, &seed))
        {
            return refuse(400, format!("auth failed for user:{}", a.username));
        }
        let idle = match a.net_read_timeout {
            // Canal's connector sends milliseconds in a field documented as seconds.
            Some(t) if t > 0 => Duration::from_millis(t as u64).max(Duration::from_secs(10)),
            _ => IDLE_TIMEOUT,
        };
        if !a.destination.is_empty() && !a.client_id.is_empty() {
            self.subscribe(&a.destination, &a.client_id, &a.filter)?;
        }
        send(w, &packet::ack(0, "")).await?;
        loop {
            let p = match tokio::time::timeout(idle, packet::read(r)).await {
                Err(_) => return refuse(400, "idle timeout"),
                Ok(Err(packet::ReadError::Closed)) => return Ok(()),
                Ok(p) => p.or_else(read_refusal)?,
            };
            match p.r#type {
                kind::SUBSCRIPTION => {
                    let s = Sub::decode(&p.body[..])
                        .or_else(|e| refuse(400, format!("not a Sub: {e}")))?;
                    self.subscribe(&s.destination, &s.client_id, &s.filter)?;
                    send(w, &packet::ack(0, "")).await?;
                }
                kind::UNSUBSCRIPTION => {
                    let s = Sub::decode(&p.body[..])
                        .or_else(|e| refuse(400, format!("not an Unsub: {e}")))?;
                    self.named(&s.destination, &s.client_id)?;
                    self.release();
                    send(w, &packet::ack(0, "")).await?;
                }
                kind::GET => {
                    let g = Get::decode(&p.body[..])
                        .or_else(|e| refuse(400, format!("not a Get: {e}")))?;
                    let framed = self.get(&g).await?;
                    send(w, &framed).await?;
                }
                kind::CLIENT_ACK => {
                    let a = ClientAck::decode(&p.body[..])
                        .or_else(|e| refuse(400, format!("not a ClientAck: {e}")))?;
                    self.named(&a.destination, &a.client_id)?;
                    match a.batch_id {
                        // The GET before it had nothing (Canal's rule).
                        -1 => {}
                        0 => return refuse(402, "batchId should assign value"),
                        id => self
                            .shared
                            .ack(&a.destination, id)
                            .or_else(|e| refuse(400, e.to_string()))?,
                    }
                }
                kind::CLIENT_ROLLBACK => {
                    let rb = ClientRollback::decode(&p.body[..])
                        .or_else(|e| refuse(400, format!("not a ClientRollback: {e}")))?;
                    // canal-python rolls back before it subscribes: nothing to do then.
                    if self.destination.is_some() {
                        self.named(&rb.destination, &rb.client_id)?;
                        self.shared.rollback(&rb.destination, rb.batch_id);
                    }
                }
                kind::HEARTBEAT => {}
                other => return refuse(400, format!("packet type={other} is NOT supported!")),
            }
        }
    }

    /// Takes `destination` for this session (rolling back what an earlier client left
    /// unacknowledged).
    fn subscribe(
        &mut self,
        destination: &str,
        client_id: &str,
        filter: &str,
    ) -> Result<(), Refusal> {
        if client_id.parse::<i16>().is_err() {
            return refuse(
                401,
                format!("clientId `{client_id}` is not a number (Canal's short)"),
            );
        }
        let filter = if filter.is_empty() {
            None
        } else {
            Some(
                sluice_sdk::canal::TableFilter::parse(filter)
                    .or_else(|e| refuse(400, format!("filter: {e}")))?,
            )
        };
        if let Some(s) = &self.destination
            && s.name != destination
        {
            return refuse(
                400,
                format!("this connection is subscribed to `{}`", s.name),
            );
        }
        self.shared
            .claim(destination, self.id, &self.peer, client_id)
            .or_else(|e| refuse(400, e))?;
        self.destination = Some(Subscription {
            name: destination.to_string(),
            filter,
        });
        Ok(())
    }

    /// Checks that a request names this session's destination.
    fn named(&self, destination: &str, client_id: &str) -> Result<(), Refusal> {
        if destination.is_empty() || client_id.is_empty() {
            return refuse(401, "destination or clientId is null");
        }
        match &self.destination {
            Some(s) if s.name == destination => Ok(()),
            _ => refuse(401, format!("not subscribed to `{destination}`")),
        }
    }

    /// Answers a GET: waits as it asks, then the next batch (`batch_id` -1: nothing).
    async fn get(&mut self, g: &Get) -> Result<Vec<u8>, Refusal> {
        self.named(&g.destination, &g.client_id)?;
        let max = self.shared.cfg.max_fetch_size;
        if g.fetch_size < 0 || g.fetch_size as usize > max {
            return refuse(
                400,
                format!("fetch_size {} is not between 1 and {max}", g.fetch_size),
            );
        }
        let fetch = (g.fetch_size as usize).max(1);
        let wait = match g.timeout {
            None | Some(-1) => Some(Duration::ZERO),
            Some(t) if t < 0 => {
                return refuse(400, format!("timeout {t} is not -1, 0 or positive"));
            }
            Some(0) => None,
            Some(t) => Some(unit(g.unit.unwrap_or(2), t as u64).or_else(|e| refuse(400, e))?),
        };
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        let filter = self.destination.as_ref().and_then(|s| s.filter.clone());
        let keep = |d: &str, t: &str| filter.as_ref().is_none_or(|f| f.matches(d, t));
        let notify = self.shared.notify(&g.destination);
        let batch = loop {
            let woken = notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let full = self.shared.pending(&g.destination) >= fetch;
            let due = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
            if full || due {
                break self.shared.fetch(&g.destination, fetch, &keep);
            }
            match deadline {
                Some(d) => {
                    let _ = tokio::time::timeout_at(d, woken).await;
                }
                None => woken.await,
            }
        };
        let (id, entries) = match batch {
            Some(f) => (f.id, f.entries),
            None => (-1, Vec::new()),
        };
        if id > 0 && g.auto_ack == Some(true) {
            self.shared
                .ack(&g.destination, id)
                .or_else(|e| refuse(400, e.to_string()))?;
        }
        Ok(packet::frame(
            kind::MESSAGES,
            Messages {
                batch_id: id,
                messages: entries,
            }
            .encode_to_vec(),
        ))
    }

    /// Lets go of the destination: what it fetched and did not acknowledge comes again.
    fn release(&mut self) {
        if let Some(s) = self.destination.take() {
            self.shared.release(&s.name, self.id);
        }
    }
}

/// A Java `TimeUnit` ordinal and an amount as a duration (at most a day).
fn unit(ordinal: i32, amount: u64) -> Result<Duration, String> {
    let d = match ordinal {
        0 => Duration::from_nanos(amount),
        1 => Duration::from_micros(amount),
        2 => Duration::from_millis(amount),
        3 => Duration::from_secs(amount),
        4 => Duration::from_secs(amount.saturating_mul(60)),
        5 => Duration::from_secs(amount.saturating_mul(3600)),
        6 => Duration::from_secs(amount.saturating_mul(86_400)),
        other => return Err(format!("unit {other} is not a TimeUnit (0 to 6)")),
    };
    Ok(d.min(Duration::from_secs(86_400)))
}

fn read_refusal<T>(e: packet::ReadError) -> Result<T, Refusal> {
    match e {
        // Closed mid-handshake: nothing to answer.
        packet::ReadError::Closed | packet::ReadError::Io(_) => refuse(0, ""),
        other => refuse(400, other.to_string()),
    }
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, framed: &[u8]) -> Result<(), Refusal> {
    match tokio::time::timeout(Duration::from_secs(60), packet::write(w, framed)).await {
        Ok(Ok(())) => Ok(()),
        // A client that stopped reading for a minute is gone; nothing to answer.
        _ => refuse(0, ""),
    }
}

/// Eight random bytes: the seed a password is scrambled with (fresh per connection, so
/// an answer cannot be replayed).
fn rand_seed() -> [u8; 8] {
    let mut seed = [0u8; 8];
    if getrandom::fill(&mut seed).is_err() {
        // No system randomness: still distinct per connection and unpredictable enough
        // to stop a replay from another connection.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        seed = (t ^ (std::process::id() as u64).rotate_left(32)).to_le_bytes();
    }
    seed
}
