//! The RabbitMQ publisher (AMQP 0-9-1 through `lapin`): publisher confirms on one
//! channel, persistent messages with `mandatory` set, Sluice's headers as AMQP headers
//! and the binlog position as the message id.
//!
//! Invariants:
//! - a message counts as acknowledged only when the broker confirmed it (`basic.ack`
//!   without a return); the checkpoint therefore never passes an unconfirmed message;
//! - messages are published on one channel in the order the pipeline sends them, and
//!   confirms are taken in that order, so each queue receives them in order;
//! - unconfirmed messages are kept: after a connection or channel failure (or a nack)
//!   the publisher connects again (every node in turn, backing off up to 5 s, no
//!   spinning) and publishes them again, in order, before anything new. lapin's own
//!   recovery is not used for correctness. Delivery is at least once: a message the
//!   broker took just before a failure is published twice, with the same position;
//! - a message the broker returns as unroutable is not lost silently: it goes back to
//!   the pipeline as [`Refused`], which applies the deciding module's policy;
//! - the in-flight window is bounded in messages and bytes: the pipeline stops reading
//!   while it is full, so a broker that is down or slow backpressures the binlog reader.

pub mod bindings;
pub mod config;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use config::{RabbitConfig, RawRabbit};

/// `kind = "rabbitmq"`: `[sink.rabbitmq]` ([`RawRabbit`]).
pub const REGISTRATION: Registration = Registration {
    kind: "rabbitmq",
    keys: <SinkKeys as schemars::JsonSchema>::json_schema,
    section: |s| {
        let raw: RawRabbit = s.require("rabbitmq", "at least `exchange`")?;
        Ok(Arc::new(raw.validate(s.resolver())?))
    },
};

/// `[sink]` keys of `kind = "rabbitmq"`.
#[derive(schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SinkKeys {
    /// `[sink.rabbitmq]`: where the publisher connects and how it routes (required).
    pub rabbitmq: config::RawRabbit,
}

impl PublisherConfig for RabbitConfig {
    fn kind(&self) -> &'static str {
        "rabbitmq"
    }

    fn open(&self, sink: &SinkConfig) -> Result<Sink, SinkError> {
        Ok(Box::new(RabbitSink::new(self, sink.max_in_flight)?))
    }
}

use super::config::{PublisherConfig, Registration, SinkConfig};
use super::window::{Window, first_outcome};
use super::{OutMessage, Publisher, RefusalReason, Refused, Sink, SinkError};
use crate::event::Checkpoint;

/// The soft bound on bytes in flight.
const SOFT_BYTES: u64 = 12 << 20;
/// Headers (and the key, carried as one) beyond this are refused: AMQP sends a
/// message's properties in a single frame, and RabbitMQ's frames are 128 KiB.
const MAX_HEADER_BYTES: usize = 64 << 10;
/// The longest wait between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One message as AMQP sees it.
struct Outgoing {
    txn: u64,
    routing_key: ShortString,
    payload: Vec<u8>,
    properties: BasicProperties,
    /// What it counts against the in-flight byte bound.
    bytes: u64,
    /// For a [`Refused`] if the broker returns it.
    topic: String,
    headers: Vec<(String, Vec<u8>)>,
    key_bytes: usize,
}

/// The publisher: the pipeline's side. A task of its own does the AMQP work.
pub struct RabbitSink {
    shared: Arc<Window>,
    tx: mpsc::UnboundedSender<Outgoing>,
    cfg: Arc<RabbitConfig>,
    stop: CancellationToken,
    /// The first connection's outcome, for [`RabbitSink::check_topics`].
    first: Mutex<Option<std::sync::mpsc::Receiver<Result<(), SinkError>>>>,
}

impl Drop for RabbitSink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl RabbitSink {
    /// Starts the publisher task (it connects in the background; a broker that is down
    /// is waited for, with messages held in the window).
    pub fn new(cfg: &RabbitConfig, max_in_flight: usize) -> Result<Self, SinkError> {
        let shared = Arc::new(Window::new(max_in_flight, SOFT_BYTES));
        let (tx, rx) = mpsc::unbounded_channel();
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let stop = CancellationToken::new();
        let cfg = Arc::new(cfg.clone());
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| SinkError::Setup(format!("rabbitmq publisher: {e}")))?;
        runtime.spawn(run(cfg.clone(), shared.clone(), rx, stop.clone(), first_tx));
        Ok(RabbitSink {
            shared,
            tx,
            cfg,
            stop,
            first: Mutex::new(Some(first_rx)),
        })
    }
}

impl Publisher for RabbitSink {
    /// Waits (at most 30 s) for the first connection: the exchange exists (or was
    /// declared) and the credentials and vhost work. Called by `sluice check` and at
    /// startup; topics are routing keys here and need no check.
    fn check_topics(&self, _topics: &[String]) -> Result<(), SinkError> {
        let Some(rx) = self.first.lock().ok().and_then(|mut f| f.take()) else {
            return Ok(());
        };
        first_outcome(
            &rx,
            &format!("rabbitmq: nodes {}", self.cfg.addresses.join(", ")),
        )
    }
    /// Routing keys of declared topics that no binding takes (with `management_url`).
    fn warnings(&self, topics: &[String]) -> Vec<String> {
        let check = || bindings::warnings(&self.cfg, topics);
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(check)
            }
            _ => check(),
        }
    }
    /// Whether the window has room.
    fn has_room(&self) -> bool {
        self.shared.has_room()
    }
    /// Fails with what the task could not get past.
    fn check(&self) -> Result<(), SinkError> {
        self.shared.check()
    }
    /// Hands a message to the publisher task.
    fn send(&mut self, m: OutMessage) -> Result<(), SinkError> {
        let bytes = (m.payload.len() + m.key.as_ref().map_or(0, Vec::len)) as u64;
        let text = |name: &str| {
            m.header(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let routing_key = config::routing_key(
            &self.cfg.routing_key,
            &m.topic,
            &text("sluice.db"),
            &text("sluice.table"),
            m.partition,
        );
        // What AMQP cannot carry is refused here, before it reaches a connection: the
        // broker would close the connection each time it is published (a loop).
        let header_bytes: usize = m
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>()
            + m.key.as_ref().map_or(0, |k| k.len() + 16);
        let cannot = if header_bytes > MAX_HEADER_BYTES {
            Some((
                RefusalReason::TooLarge,
                format!(
                    "its headers and key are {header_bytes} bytes; AMQP carries them in one frame, \
                     so at most {MAX_HEADER_BYTES} are sent"
                ),
            ))
        } else if routing_key.len() > 255 {
            Some((
                RefusalReason::Unroutable,
                format!(
                    "its routing key is {} bytes, over AMQP's 255 (sink.rabbitmq.routing_key)",
                    routing_key.len()
                ),
            ))
        } else {
            None
        };
        if let Some((reason, detail)) = cannot {
            self.shared.sent(m.txn, bytes)?;
            let r = Refused {
                txn: m.txn,
                reason,
                topic: m.topic.to_string(),
                position: m.position(),
                module: text("sluice.module"),
                headers: m.sluice_headers(),
                payload_bytes: m.payload.len(),
                key_bytes: m.key.as_ref().map_or(0, Vec::len),
                in_flight_bytes: bytes,
                detail,
            };
            self.shared.refuse(r);
            return self.check();
        }
        let mut table = FieldTable::default();
        for (k, v) in &m.headers {
            table.insert(
                ShortString::from(&**k),
                AMQPValue::LongString(LongString::from(v.to_vec())),
            );
        }
        if let Some(k) = &m.key {
            // The key has no AMQP field of its own; consumers find it here.
            table.insert(
                "sluice.key".into(),
                AMQPValue::LongString(LongString::from(k.clone())),
            );
        }
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(m.position().into())
            .with_headers(table);
        let out = Outgoing {
            txn: m.txn,
            routing_key: routing_key.into(),
            bytes,
            topic: m.topic.to_string(),
            headers: m.sluice_headers(),
            key_bytes: m.key.as_ref().map_or(0, Vec::len),
            payload: m.payload,
            properties,
        };
        self.shared.sent(out.txn, bytes)?;
        self.tx
            .send(out)
            .map_err(|_| SinkError::Setup("rabbitmq: the publisher task stopped".into()))?;
        self.check()
    }
    /// Transaction `txn` is fully sent.
    fn commit(&mut self, txn: u64, cp: Checkpoint, seen: Instant) -> Result<(), SinkError> {
        self.shared.commit(txn, cp, seen);
        self.check()
    }
    /// The newest confirmed boundary.
    fn safe_checkpoint(&mut self) -> Result<Option<Checkpoint>, SinkError> {
        self.check()?;
        Ok(self.shared.safe())
    }
    /// Waits until every message is confirmed (or returned and so taken back).
    fn drain(&mut self, timeout: Duration) -> Result<(), SinkError> {
        self.shared.drain(timeout)
    }
    /// (in flight, acknowledged).
    fn counts(&self) -> (u64, u64) {
        self.shared.counts()
    }
    /// Messages returned as unroutable since the last call.
    fn take_refused(&mut self) -> Vec<Refused> {
        self.shared.take_refused()
    }
    /// A returned message's policy was applied.
    fn settle(&mut self, r: &Refused) {
        self.shared.settle(r);
    }
}

/// Why a connection ended.
enum Ended {
    /// Stopped by the pipeline.
    Stop,
    /// A node or channel failure: connect again, publish the unconfirmed.
    Retry(String),
    /// The broker nacked a message: it is up but cannot store now (a quorum queue
    /// without its majority while nodes restart, a resource alarm). Not the message's
    /// fault: wait, then publish the unconfirmed again.
    Nacked,
    /// Nothing a reconnect can fix.
    Fatal(SinkError),
}

/// The publisher task: connect, publish, take confirms in order; on failure connect
/// again and publish what is unconfirmed first.
async fn run(
    cfg: Arc<RabbitConfig>,
    shared: Arc<Window>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    stop: CancellationToken,
    first: std::sync::mpsc::Sender<Result<(), SinkError>>,
) {
    let mut unconfirmed: VecDeque<Outgoing> = VecDeque::new();
    let mut first = Some(first);
    let mut backoff = Duration::from_millis(100);
    let mut node = 0usize;
    let mut logged_down = false;
    // Connections in a row that ended before a single confirm.
    let mut stuck = 0usize;
    // Wait after a nack before publishing again; doubles to 5 s, reset by progress.
    let mut nack_pause = Duration::from_millis(100);
    loop {
        let addr = cfg.addresses[node % cfg.addresses.len()].clone();
        node += 1;
        let conn = tokio::select! {
            _ = stop.cancelled() => return,
            c = connect(&cfg, &addr) => c,
        };
        let (conn, channel) = match conn {
            Ok(c) => c,
            Err(Ended::Fatal(e)) => {
                report_fatal(&shared, &mut first, e);
                return;
            }
            Err(Ended::Stop) => return,
            // Connecting publishes nothing, so nothing can be nacked.
            Err(Ended::Nacked) => continue,
            Err(Ended::Retry(why)) => {
                if !logged_down {
                    tracing::warn!(message = "RabbitMQ node not reachable; trying the next.", node = %addr, error = %why);
                }
                // A round over every node without success: back off, then say so once.
                if node.is_multiple_of(cfg.addresses.len()) {
                    logged_down = true;
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                continue;
            }
        };
        if let Some(f) = first.take() {
            let _ = f.send(Ok(()));
        }
        if logged_down || !unconfirmed.is_empty() {
            tracing::info!(
                message = "Connected to RabbitMQ; publishing unconfirmed messages again.",
                node = %addr,
                unconfirmed = unconfirmed.len(),
            );
        }
        logged_down = false;
        backoff = Duration::from_millis(100);
        let mut progressed = false;
        let ended = publish(
            &cfg,
            &shared,
            &channel,
            &mut rx,
            &mut unconfirmed,
            &stop,
            &mut progressed,
        )
        .await;
        let _ = conn.close(200, "sluice publisher".into()).await;
        if progressed {
            nack_pause = Duration::from_millis(100);
        }
        match ended {
            Ended::Stop => return,
            Ended::Nacked => {
                // A nack is an answer from a live broker, not a connection the message
                // broke: it does not count towards handing the message to its policy.
                tracing::warn!(
                    message = "RabbitMQ nacked a message (it cannot store it now); publishing the unconfirmed again after a pause.",
                    node = %addr,
                    unconfirmed = unconfirmed.len(),
                    pause_ms = nack_pause.as_millis() as u64,
                );
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(nack_pause) => {}
                }
                nack_pause = (nack_pause * 2).min(Duration::from_secs(5));
            }
            Ended::Fatal(e) => {
                report_fatal(&shared, &mut first, e);
                return;
            }
            Ended::Retry(why) => {
                // Every node accepting the connection and then failing before confirming
                // anything, again and again: a message no node takes. Publishing it
                // again would loop for ever; stop, naming it.
                stuck = if progressed || unconfirmed.is_empty() {
                    0
                } else {
                    stuck + 1
                };
                if stuck >= 2 * cfg.addresses.len()
                    && let Some(m) = unconfirmed.pop_front()
                {
                    stuck = 0;
                    tracing::error!(
                        message = "Every RabbitMQ node closes the connection when this message is published; handing it to its module's policy.",
                        error = %why,
                    );
                    let r = refused_from(
                        m,
                        RefusalReason::Rejected,
                        format!("every node closed the connection before confirming it: {why}"),
                    );
                    shared.refuse(r);
                    continue;
                }
                tracing::warn!(
                    message = "RabbitMQ connection lost; reconnecting (unconfirmed messages are kept and published again).",
                    node = %addr,
                    error = %why,
                    unconfirmed = unconfirmed.len(),
                );
            }
        }
    }
}

fn report_fatal(
    shared: &Window,
    first: &mut Option<std::sync::mpsc::Sender<Result<(), SinkError>>>,
    e: SinkError,
) {
    match first.take() {
        Some(f) => {
            let _ = f.send(Err(e));
        }
        None => shared.fail(e),
    }
}

/// Opens a connection and a confirming channel, and declares or checks the exchange.
async fn connect(cfg: &RabbitConfig, addr: &str) -> Result<(Connection, lapin::Channel), Ended> {
    let (host, port) = addr
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)))
        .ok_or_else(|| Ended::Fatal(SinkError::Setup(format!("rabbitmq: bad address `{addr}`"))))?;
    let uri = lapin::uri::AMQPUri {
        authority: lapin::uri::AMQPAuthority {
            userinfo: lapin::uri::AMQPUserInfo {
                username: cfg.user.clone(),
                password: cfg.password.expose().to_string(),
            },
            host,
            port,
        },
        vhost: cfg.vhost.clone(),
        ..Default::default()
    };
    let props = ConnectionProperties::default().with_connection_name("sluice".into());
    let conn = match tokio::time::timeout(cfg.connect_timeout, Connection::connect_uri(uri, props))
        .await
    {
        Err(_) => {
            return Err(Ended::Retry(format!(
                "no answer within {:?}",
                cfg.connect_timeout
            )));
        }
        Ok(Err(e)) => return Err(classify_connect(cfg, &e)),
        Ok(Ok(c)) => c,
    };
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| Ended::Retry(format!("opening a channel: {e}")))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| Ended::Retry(format!("enabling publisher confirms: {e}")))?;
    let kind = match cfg.exchange_type.as_str() {
        "direct" => ExchangeKind::Direct,
        "fanout" => ExchangeKind::Fanout,
        "headers" => ExchangeKind::Headers,
        _ => ExchangeKind::Topic,
    };
    let options = ExchangeDeclareOptions {
        passive: !cfg.declare_exchange,
        durable: true,
        ..Default::default()
    };
    if let Err(e) = channel
        .exchange_declare(
            cfg.exchange.as_str().into(),
            kind,
            options,
            FieldTable::default(),
        )
        .await
    {
        let what = if cfg.declare_exchange {
            format!(
                "cannot declare exchange `{}` as a durable {} exchange (it may exist with other settings): {e}",
                cfg.exchange, cfg.exchange_type
            )
        } else {
            format!(
                "exchange `{}` does not exist in vhost `{}` (sink.rabbitmq.declare_exchange = false): {e}",
                cfg.exchange, cfg.vhost
            )
        };
        return Err(Ended::Fatal(SinkError::Setup(format!("rabbitmq: {what}"))));
    }
    Ok((conn, channel))
}

/// Sorts a failed connection: refused credentials or vhost are for the operator to fix
/// (fatal); anything else is the network or the node (retry).
fn classify_connect(cfg: &RabbitConfig, e: &lapin::Error) -> Ended {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("access_refused")
        || lower.contains("authentication")
        || lower.contains("login")
    {
        return Ended::Fatal(SinkError::Setup(format!(
            "rabbitmq: user `{}` was refused (check sink.rabbitmq.user and its password): {text}",
            cfg.user
        )));
    }
    if lower.contains("not_allowed") || lower.contains("vhost") {
        return Ended::Fatal(SinkError::Setup(format!(
            "rabbitmq: vhost `{}` does not exist or user `{}` may not use it: {text}",
            cfg.vhost, cfg.user
        )));
    }
    Ended::Retry(text)
}

/// A message handed back to the pipeline for its policy.
fn refused_from(m: Outgoing, reason: RefusalReason, detail: String) -> Refused {
    let header = |name: &str| {
        m.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    Refused {
        txn: m.txn,
        reason,
        position: header(super::POSITION_HEADER),
        module: header("sluice.module"),
        topic: m.topic,
        payload_bytes: m.payload.len(),
        key_bytes: m.key_bytes,
        in_flight_bytes: m.bytes,
        headers: m.headers,
        detail,
    }
}

/// A failure while publishing: reconnect. A message no node takes (over the broker's
/// `max_message_size`, say) is caught by the run loop's count of connections that end
/// before a confirm, and handed to its policy.
fn failed(doing: &str, e: &lapin::Error) -> Ended {
    Ended::Retry(format!("{doing}: {e}"))
}

/// Publishes on one channel until it fails: first what is unconfirmed, then new
/// messages, taking confirms in order.
async fn publish(
    cfg: &RabbitConfig,
    shared: &Window,
    channel: &lapin::Channel,
    rx: &mut mpsc::UnboundedReceiver<Outgoing>,
    unconfirmed: &mut VecDeque<Outgoing>,
    stop: &CancellationToken,
    progressed: &mut bool,
) -> Ended {
    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let send = async |m: &Outgoing| {
        channel
            .basic_publish(
                cfg.exchange.as_str().into(),
                m.routing_key.clone(),
                options,
                &m.payload,
                m.properties.clone(),
            )
            .await
    };
    let mut confirms = FuturesOrdered::new();
    for m in unconfirmed.iter() {
        match send(m).await {
            Ok(c) => confirms.push_back(c),
            Err(e) => return failed("publishing", &e),
        }
    }
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Ended::Stop,
            Some(confirmation) = confirms.next() => {
                if matches!(confirmation, Ok(Confirmation::Ack(_))) {
                    *progressed = true;
                }
                let Some(m) = unconfirmed.pop_front() else {
                    return Ended::Retry("a confirm without a message".into());
                };
                match confirmation {
                    Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => {
                        shared.acked(m.txn, m.bytes);
                    }
                    Ok(Confirmation::Ack(Some(returned))) => {
                        let detail = format!(
                            "exchange `{}` returned it as unroutable with routing key `{}` ({} {})",
                            cfg.exchange, m.routing_key, returned.reply_code, returned.reply_text
                        );
                        let refused = refused_from(m, RefusalReason::Unroutable, detail);
                        shared.refuse(refused);
                    }
                    Ok(Confirmation::Nack(_)) => {
                        // Publish it and everything after it again, in order, on a new
                        // channel: per-queue order holds (with duplicates).
                        unconfirmed.push_front(m);
                        return Ended::Nacked;
                    }
                    Err(e) => {
                        unconfirmed.push_front(m);
                        return failed("waiting for a confirm", &e);
                    }
                }
            }
            next = rx.recv() => {
                let Some(m) = next else { return Ended::Stop };
                match send(&m).await {
                    Ok(c) => {
                        confirms.push_back(c);
                        unconfirmed.push_back(m);
                    }
                    Err(e) => {
                        unconfirmed.push_back(m);
                        return failed("publishing", &e);
                    }
                }
            }
        }
    }
}
