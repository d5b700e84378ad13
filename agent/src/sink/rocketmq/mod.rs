//! The RocketMQ publisher: Canal's RocketMQ mode (`canal.serverMode = rocketMQ`) on the
//! remoting protocol, through `rocketmq-client-rust`.
//!
//! Invariants:
//! - a message counts as acknowledged only when the broker answers `SEND_OK` (or a
//!   status `accept` lists); any other answer or a failed send is sent again, so the
//!   checkpoint never passes a message the broker did not store;
//! - messages of one message queue are sent one after another, each only once the one
//!   before it was stored, so per-queue order holds even across retries (one worker per
//!   queue; queues proceed in parallel);
//! - a broker or name-server outage holds the queue's messages and fills the window
//!   (backpressure into the reader), with retries backing off up to 5 s, never a spin;
//! - what the broker refuses for good (too large, a topic that does not exist, a
//!   property it cannot carry) goes back to the pipeline for the deciding module's
//!   policy, never into a retry loop.

pub mod config;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocketmq_client_rust::{
    AclClientRPCHook, ClientError, ClientRuntime, ClientRuntimeConfig, DefaultMQProducer,
    SessionCredentials,
};
use rocketmq_model::common::message::message_single::Message;
use rocketmq_model::message::MessageQueue;
use rocketmq_model::result::SendStatus;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use config::{RawRocket, RocketConfig};

use super::config::{PublisherConfig, Registration, SinkConfig};
use super::window::{Window, first_outcome};
use super::{OutMessage, Publisher, RefusalReason, Refused, Sink, SinkError, TopicAdmin};
use crate::event::Checkpoint;

/// `kind = "rocketmq"`: `[sink.rocketmq]` ([`RawRocket`]).
pub const REGISTRATION: Registration = Registration {
    kind: "rocketmq",
    keys: <SinkKeys as schemars::JsonSchema>::json_schema,
    section: |s| {
        let raw: RawRocket = s.take("rocketmq")?.unwrap_or_default();
        Ok(Arc::new(raw.validate(s.resolver())?))
    },
};

/// `[sink]` keys of `kind = "rocketmq"`.
#[derive(schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct SinkKeys {
    /// `[sink.rocketmq]`: name servers, producer group, topic and tag mapping.
    pub rocketmq: config::RawRocket,
}

impl PublisherConfig for RocketConfig {
    fn kind(&self) -> &'static str {
        "rocketmq"
    }

    fn open(&self, sink: &SinkConfig) -> Result<Sink, SinkError> {
        Ok(Box::new(RocketSink::new(self, sink.max_in_flight)?))
    }
}

/// The soft bound on bytes in flight.
const SOFT_BYTES: u64 = 12 << 20;
/// The longest wait between two tries of one message.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One message on its way to a queue.
struct Outgoing {
    txn: u64,
    /// RocketMQ topic (after the name mapping).
    topic: String,
    partition: Option<i32>,
    key: Option<String>,
    tag: Option<String>,
    properties: Vec<(String, String)>,
    body: Vec<u8>,
    /// What it counts against the in-flight byte bound.
    bytes: u64,
    /// For a [`Refused`].
    decision_topic: String,
    position: String,
    module: String,
    headers: Vec<(String, Vec<u8>)>,
    key_bytes: usize,
}

impl Outgoing {
    fn refused(&self, reason: RefusalReason, detail: String) -> Refused {
        Refused {
            txn: self.txn,
            reason,
            topic: self.decision_topic.clone(),
            position: self.position.clone(),
            module: self.module.clone(),
            headers: self.headers.clone(),
            payload_bytes: self.body.len(),
            key_bytes: self.key_bytes,
            in_flight_bytes: self.bytes,
            detail,
        }
    }

    fn message(&self) -> Result<Message, String> {
        let mut b = Message::builder()
            .topic(self.topic.as_str())
            .body_slice(&self.body);
        if let Some(t) = &self.tag {
            b = b.tags(t.as_str());
        }
        if let Some(k) = &self.key {
            b = b.key(k.as_str());
        }
        for (k, v) in &self.properties {
            b = b
                .raw_property(k.as_str(), v.as_str())
                .map_err(|e| format!("property `{k}`: {e}"))?;
        }
        b.build().map_err(|e| e.to_string())
    }
}

/// What the publisher task is asked.
enum Cmd {
    Send(Box<Outgoing>),
    /// Every topic exists; the reply names the first that does not.
    Check(Vec<String>, oneshot::Sender<Result<(), SinkError>>),
    /// Create a topic with this many queues on every master of the cluster.
    Create(String, i32, oneshot::Sender<Result<(), SinkError>>),
}

/// The client's own runtime (one worker thread), kept for the publisher's lifetime.
struct Client {
    owner: Option<rocketmq_runtime::RuntimeOwner>,
    runtime: Arc<ClientRuntime>,
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(o) = self.owner.take() {
            // Never blocks: the publisher may be dropped on an async worker.
            o.shutdown_background();
        }
    }
}

fn client() -> Result<Client, SinkError> {
    let setup = |e: &dyn std::fmt::Display| SinkError::Setup(format!("rocketmq client: {e}"));
    let mut config = rocketmq_runtime::RuntimeConfig::for_parallelism("sluice-rocketmq", 1);
    config.thread_name = "sluice-rocketmq".into();
    let owner = rocketmq_runtime::RuntimeOwner::plan(config)
        .map_err(|e| setup(&e))?
        .build()
        .map_err(|e| setup(&e))?;
    let runtime = ClientRuntime::try_new(
        owner.root_context().component("client"),
        ClientRuntimeConfig::default(),
        rocketmq_observability::TelemetryHandle::default(),
    )
    .map_err(|e| setup(&e))?;
    Ok(Client {
        owner: Some(owner),
        runtime,
    })
}

/// The publisher: the pipeline's side. A task of its own drives the client.
pub struct RocketSink {
    window: Arc<Window>,
    tx: mpsc::UnboundedSender<Cmd>,
    cfg: Arc<RocketConfig>,
    stop: CancellationToken,
    first: Mutex<Option<std::sync::mpsc::Receiver<Result<(), SinkError>>>>,
    _client: Client,
}

impl Drop for RocketSink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl RocketSink {
    /// Starts the publisher task (it connects in the background; a name server that is
    /// down is waited for, with messages held in the window).
    pub fn new(cfg: &RocketConfig, max_in_flight: usize) -> Result<Self, SinkError> {
        let client = client()?;
        let mut producer = DefaultMQProducer::builder(client.runtime.clone())
            .producer_group(cfg.producer_group.as_str())
            .name_server_addr(cfg.namesrv.join(";"))
            .send_msg_timeout(cfg.send_timeout.as_millis() as u32);
        if let Some((access, secret)) = &cfg.acl {
            // Signs every request as Java's AclClientRPCHook does; the secret stays in
            // the hook, whose Debug form the client masks.
            producer = producer.rpc_hook(Arc::new(AclClientRPCHook::new(
                SessionCredentials::with_keys(access.as_str(), secret.expose()),
            )));
        }
        let producer = producer.build();
        let window = Arc::new(Window::new(max_in_flight, SOFT_BYTES));
        let (tx, rx) = mpsc::unbounded_channel();
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let stop = CancellationToken::new();
        let cfg = Arc::new(cfg.clone());
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| SinkError::Setup(format!("rocketmq publisher: {e}")))?;
        runtime.spawn(run(
            cfg.clone(),
            window.clone(),
            producer,
            rx,
            stop.clone(),
            first_tx,
        ));
        Ok(RocketSink {
            window,
            tx,
            cfg,
            stop,
            first: Mutex::new(Some(first_rx)),
            _client: client,
        })
    }

    fn ask(
        &self,
        cmd: impl FnOnce(oneshot::Sender<Result<(), SinkError>>) -> Cmd,
    ) -> oneshot::Receiver<Result<(), SinkError>> {
        let (reply, answer) = oneshot::channel();
        // A stopped task drops the reply: the receiver then says so.
        let _ = self.tx.send(cmd(reply));
        answer
    }
}

fn gone() -> SinkError {
    SinkError::Setup("rocketmq: the publisher task stopped".into())
}

impl Publisher for RocketSink {
    /// Waits (at most 30 s) for the producer to start, then checks that every declared
    /// topic exists on the cluster (topics are never created by a send).
    fn check_topics(&self, topics: &[String]) -> Result<(), SinkError> {
        if let Some(rx) = self.first.lock().ok().and_then(|mut f| f.take()) {
            first_outcome(
                &rx,
                &format!("rocketmq: name servers {}", self.cfg.namesrv.join(", ")),
            )?;
        }
        let topics = topics.iter().map(|t| self.cfg.topic(t)).collect();
        let answer = self.ask(|r| Cmd::Check(topics, r));
        let wait = || answer.blocking_recv().unwrap_or_else(|_| Err(gone()));
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        }
    }
    fn has_room(&self) -> bool {
        self.window.has_room()
    }
    fn check(&self) -> Result<(), SinkError> {
        self.window.check()
    }
    /// Maps the message (topic name, tag, key, properties) and hands it to the task.
    fn send(&mut self, m: OutMessage) -> Result<(), SinkError> {
        let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
        let header = |name: &str| m.header(name).map(text);
        let tag = header(&self.cfg.tag_header).or_else(|| self.cfg.tag.clone());
        let properties: Vec<(String, String)> = m
            .headers
            .iter()
            .filter(|(k, _)| **k != *self.cfg.tag_header)
            .map(|(k, v)| (k.to_string(), text(v)))
            .collect();
        let out = Outgoing {
            txn: m.txn,
            topic: self.cfg.topic(&m.topic),
            partition: m.partition,
            key: m.key.as_deref().map(text),
            tag,
            bytes: (m.payload.len() + m.key.as_ref().map_or(0, Vec::len)) as u64,
            decision_topic: m.topic.to_string(),
            position: m.position(),
            module: header("sluice.module").unwrap_or_default(),
            headers: m.sluice_headers(),
            key_bytes: m.key.as_ref().map_or(0, Vec::len),
            properties,
            body: m.payload,
        };
        self.window.sent(out.txn, out.bytes)?;
        // RocketMQ joins properties with \u0001 and \u0002: a value holding either would
        // corrupt every property after it. Refused here, for the module's policy.
        let bad = out
            .properties
            .iter()
            .map(|(k, v)| (k, v))
            .chain(out.tag.iter().map(|t| (&self.cfg.tag_header, t)))
            .find(|(k, v)| k.contains(['\u{1}', '\u{2}']) || v.contains(['\u{1}', '\u{2}']));
        if let Some((k, _)) = bad {
            let detail = format!(
                "header `{k}` holds a \\u0001 or \\u0002 byte, which RocketMQ uses to separate properties"
            );
            self.window
                .refuse(out.refused(RefusalReason::Rejected, detail));
            return self.check();
        }
        self.tx.send(Cmd::Send(Box::new(out))).map_err(|_| gone())?;
        self.check()
    }
    fn commit(&mut self, txn: u64, cp: Checkpoint, seen: Instant) -> Result<(), SinkError> {
        self.window.commit(txn, cp, seen);
        self.check()
    }
    fn safe_checkpoint(&mut self) -> Result<Option<Checkpoint>, SinkError> {
        self.check()?;
        Ok(self.window.safe())
    }
    fn drain(&mut self, timeout: Duration) -> Result<(), SinkError> {
        self.window.drain(timeout)
    }
    fn counts(&self) -> (u64, u64) {
        self.window.counts()
    }
    fn take_refused(&mut self) -> Vec<Refused> {
        self.window.take_refused()
    }
    fn settle(&mut self, r: &Refused) {
        self.window.settle(r);
    }
    fn topic_admin(&self) -> Option<Box<dyn TopicAdmin>> {
        Some(Box::new(Topics {
            tx: self.tx.clone(),
            cfg: self.cfg.clone(),
        }))
    }
}

/// Topic creation through the publisher task.
struct Topics {
    tx: mpsc::UnboundedSender<Cmd>,
    cfg: Arc<RocketConfig>,
}

impl TopicAdmin for Topics {
    fn create(
        self: Box<Self>,
        name: String,
        partitions: i32,
        _replication: i32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SinkError>> + Send>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let topic = self.cfg.topic(&name);
            self.tx
                .send(Cmd::Create(topic, partitions, reply))
                .map_err(|_| gone())?;
            answer.await.unwrap_or_else(|_| Err(gone()))
        })
    }
}

/// How a failed send is handled.
enum Failure {
    /// For good: the module's policy.
    Refuse(RefusalReason, String),
    /// Try again after a pause.
    Retry(String),
}

/// Whether the client could not reach a name server or broker (or waited too long):
/// worth trying again, unlike an answer.
fn unreachable(e: &ClientError) -> bool {
    let code = e.descriptor().code().as_str();
    code.starts_with("transport.") || code.contains("timeout")
}

/// Sorts a send error: what no retry can fix (too large, no such topic, a bad
/// property) from what a retry may (connection, timeout, busy broker).
fn classify(e: &ClientError) -> Failure {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    // Broker codes: 13 MESSAGE_ILLEGAL, 17 TOPIC_NOT_EXIST.
    match e.broker_response_code() {
        Some(13) => return Failure::Refuse(RefusalReason::TooLarge, text),
        Some(17) => return Failure::Refuse(RefusalReason::Unroutable, text),
        _ => {}
    }
    if unreachable(e) {
        Failure::Retry(text)
    } else if lower.contains("over max value") || lower.contains("body size") {
        Failure::Refuse(RefusalReason::TooLarge, text)
    } else if lower.contains("route") || lower.contains("not exist") {
        Failure::Refuse(RefusalReason::Unroutable, text)
    } else {
        Failure::Retry(text)
    }
}

fn status_name(s: SendStatus) -> &'static str {
    match s {
        SendStatus::SendOk => "SEND_OK",
        SendStatus::FlushDiskTimeout => "FLUSH_DISK_TIMEOUT",
        SendStatus::FlushSlaveTimeout => "FLUSH_SLAVE_TIMEOUT",
        SendStatus::SlaveNotAvailable => "SLAVE_NOT_AVAILABLE",
    }
}

/// The publisher task: starts the producer, looks up each topic's queues, and hands
/// every message to its queue's worker.
async fn run(
    cfg: Arc<RocketConfig>,
    window: Arc<Window>,
    mut producer: DefaultMQProducer,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    stop: CancellationToken,
    first: std::sync::mpsc::Sender<Result<(), SinkError>>,
) {
    let started = tokio::select! {
        _ = stop.cancelled() => return,
        r = producer.start() => r,
    };
    if let Err(e) = started {
        let _ = first.send(Err(SinkError::Setup(format!(
            "rocketmq: cannot start the producer (name servers {}): {e}",
            cfg.namesrv.join(", ")
        ))));
        return;
    }
    let _ = first.send(Ok(()));
    let mut queues: HashMap<String, Vec<MessageQueue>> = HashMap::new();
    let mut workers: HashMap<(String, String, i32), mpsc::UnboundedSender<Box<Outgoing>>> =
        HashMap::new();
    loop {
        let cmd = tokio::select! {
            _ = stop.cancelled() => break,
            c = rx.recv() => c,
        };
        let Some(cmd) = cmd else { break };
        match cmd {
            Cmd::Check(topics, reply) => {
                let mut result = Ok(());
                for t in topics {
                    let Err(e) = producer.fetch_publish_message_queues(&t).await else {
                        continue;
                    };
                    let namesrv = cfg.namesrv.join(", ");
                    result = Err(if unreachable(&e) {
                        SinkError::Setup(format!(
                            "rocketmq: the name servers ({namesrv}) do not answer: {e}"
                        ))
                    } else {
                        SinkError::MissingTopic {
                            topic: t.clone(),
                            context: Some(format!(
                                "the name servers ({namesrv}) have no route for it: {e}"
                            )),
                        }
                    });
                    break;
                }
                let _ = reply.send(result);
            }
            Cmd::Create(topic, queue_count, reply) => {
                let r = if producer.fetch_publish_message_queues(&topic).await.is_ok() {
                    Err(SinkError::TopicExists(topic))
                } else {
                    producer
                        .create_topic(&cfg.cluster, &topic, queue_count, HashMap::new())
                        .await
                        .map_err(|e| {
                            SinkError::Setup(format!(
                                "rocketmq: creating topic `{topic}` on cluster `{}`: {e}",
                                cfg.cluster
                            ))
                        })
                };
                let _ = reply.send(r);
            }
            Cmd::Send(m) => {
                let qs = match queues.get(&m.topic) {
                    Some(q) => q.clone(),
                    None => match lookup(&mut producer, &m.topic, &stop).await {
                        Ok(q) => {
                            queues.insert(m.topic.clone(), q.clone());
                            q
                        }
                        Err(Some(detail)) => {
                            window.refuse(m.refused(RefusalReason::Unroutable, detail));
                            continue;
                        }
                        Err(None) => break,
                    },
                };
                let i =
                    config::queue_index(m.partition, m.key.as_deref().map(str::as_bytes), qs.len());
                let mq = qs[i].clone();
                let id = (m.topic.clone(), mq.broker_name().to_string(), mq.queue_id());
                let worker = workers.entry(id).or_insert_with(|| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    tokio::spawn(send_in_order(
                        cfg.clone(),
                        window.clone(),
                        producer.clone(),
                        mq,
                        rx,
                        stop.clone(),
                    ));
                    tx
                });
                if worker.send(m).is_err() {
                    window.fail(gone());
                }
            }
        }
    }
    producer.shutdown().await;
}

/// A topic's queues. `Err(Some)`: the topic does not exist (for the module's policy);
/// `Err(None)`: stopped while the name servers did not answer.
async fn lookup(
    producer: &mut DefaultMQProducer,
    topic: &str,
    stop: &CancellationToken,
) -> Result<Vec<MessageQueue>, Option<String>> {
    let mut backoff = Duration::from_millis(100);
    let mut logged = false;
    loop {
        let r = tokio::select! {
            _ = stop.cancelled() => return Err(None),
            r = producer.fetch_publish_message_queues(topic) => r,
        };
        match r {
            Ok(q) if !q.is_empty() => return Ok(q),
            Ok(_) => return Err(Some(format!("topic `{topic}` has no writable queue"))),
            Err(e) if !unreachable(&e) => {
                return Err(Some(format!("topic `{topic}` does not exist: {e}")));
            }
            Err(e) => {
                if !logged {
                    tracing::warn!(message = "RocketMQ name servers do not answer; retrying.", topic, error = %e);
                    logged = true;
                }
                tokio::select! {
                    _ = stop.cancelled() => return Err(None),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One queue's worker: sends its messages one at a time (or, with `batch_max` > 1, the
/// ones waiting together as one batch), each until the broker stores it (or refuses it
/// for good), so the queue's order is the pipeline's order.
async fn send_in_order(
    cfg: Arc<RocketConfig>,
    window: Arc<Window>,
    producer: DefaultMQProducer,
    mq: MessageQueue,
    mut rx: mpsc::UnboundedReceiver<Box<Outgoing>>,
    stop: CancellationToken,
) {
    let q = Queue {
        cfg,
        window,
        producer,
        mq,
        stop,
    };
    let mut held: Option<Box<Outgoing>> = None;
    loop {
        let first = match held.take() {
            Some(m) => m,
            None => match tokio::select! {
                _ = q.stop.cancelled() => None,
                m = rx.recv() => m,
            } {
                Some(m) => m,
                None => return,
            },
        };
        let mut batch = vec![first];
        let mut bytes = batch[0].body.len();
        while batch.len() < q.cfg.batch_max {
            let Ok(m) = rx.try_recv() else { break };
            if bytes + m.body.len() > config::BATCH_BYTES {
                held = Some(m);
                break;
            }
            bytes += m.body.len();
            batch.push(m);
        }
        let done = if batch.len() == 1 {
            q.one(&batch[0]).await
        } else {
            q.batch(&batch).await
        };
        if !done {
            return;
        }
    }
}

/// What one queue's worker sends with.
struct Queue {
    cfg: Arc<RocketConfig>,
    window: Arc<Window>,
    producer: DefaultMQProducer,
    mq: MessageQueue,
    stop: CancellationToken,
}

impl Queue {
    /// Sends `m` until it is stored or refused for good; false when stopped.
    async fn one(&self, m: &Outgoing) -> bool {
        let timeout = self.cfg.send_timeout.as_millis() as u64;
        let mut backoff = Duration::from_millis(100);
        let mut logged = false;
        loop {
            let msg = match m.message() {
                Ok(msg) => msg,
                Err(detail) => {
                    self.window
                        .refuse(m.refused(RefusalReason::Rejected, detail));
                    return true;
                }
            };
            let r = tokio::select! {
                _ = self.stop.cancelled() => return false,
                r = self.producer.send_to_queue_with_timeout(msg, self.mq.clone(), timeout) => r,
            };
            let why = match r {
                Ok(Some(res)) => match self.status(res.send_status) {
                    Ok(()) => {
                        self.window.acked(m.txn, m.bytes);
                        return true;
                    }
                    Err(why) => why,
                },
                Ok(None) => "the send returned no result".to_string(),
                Err(e) => match classify(&e) {
                    Failure::Refuse(reason, detail) => {
                        self.window.refuse(m.refused(reason, detail));
                        return true;
                    }
                    Failure::Retry(why) => why,
                },
            };
            if !self.pause(m, &why, &mut logged, &mut backoff).await {
                return false;
            }
        }
    }

    /// Sends `ms` as one batch until the broker stores it; a batch the broker refuses
    /// for good is sent again one message at a time, so the refusal lands on the message
    /// it is about and the others are still delivered in order. False when stopped.
    async fn batch(&self, ms: &[Box<Outgoing>]) -> bool {
        let timeout = self.cfg.send_timeout.as_millis() as u64;
        let mut backoff = Duration::from_millis(100);
        let mut logged = false;
        loop {
            let Ok(msgs) = ms
                .iter()
                .map(|m| m.message())
                .collect::<Result<Vec<_>, _>>()
            else {
                return self.singly(ms).await;
            };
            let r = tokio::select! {
                _ = self.stop.cancelled() => return false,
                r = self.producer.send_batch_to_queue_with_timeout(msgs, self.mq.clone(), timeout) => r,
            };
            let why = match r {
                Ok(res) => match self.status(res.send_status) {
                    Ok(()) => {
                        for m in ms {
                            self.window.acked(m.txn, m.bytes);
                        }
                        return true;
                    }
                    Err(why) => why,
                },
                Err(e) => match classify(&e) {
                    Failure::Refuse(..) => return self.singly(ms).await,
                    Failure::Retry(why) => why,
                },
            };
            if !self.pause(&ms[0], &why, &mut logged, &mut backoff).await {
                return false;
            }
        }
    }

    async fn singly(&self, ms: &[Box<Outgoing>]) -> bool {
        for m in ms {
            if !self.one(m).await {
                return false;
            }
        }
        true
    }

    /// `Ok` when `status` counts as stored.
    fn status(&self, status: SendStatus) -> Result<(), String> {
        let name = status_name(status);
        match self.cfg.stored(name) {
            config::Stored::Yes => Ok(()),
            config::Stored::No => Err(format!("the broker answered {name}")),
        }
    }

    /// Logs the first failed try of `m` and waits before the next; false when stopped.
    async fn pause(
        &self,
        m: &Outgoing,
        why: &str,
        logged: &mut bool,
        backoff: &mut Duration,
    ) -> bool {
        if !*logged {
            tracing::warn!(
                message = "RocketMQ send not stored; sending again (later messages of this queue wait).",
                topic = %m.topic,
                queue = self.mq.queue_id(),
                position = %m.position,
                reason = %why,
            );
            *logged = true;
        }
        tokio::select! {
            _ = self.stop.cancelled() => return false,
            _ = tokio::time::sleep(*backoff) => {}
        }
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::HeaderValue;

    fn message(headers: Vec<(&'static str, &[u8])>) -> OutMessage {
        OutMessage {
            topic: Arc::from("shop.orders"),
            partition: Some(1),
            key: Some(b"42".to_vec()),
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.into(), HeaderValue::from(v)))
                .collect(),
            payload: b"{}".to_vec(),
            txn: 1,
        }
    }

    /// A header RocketMQ cannot carry (its property separators inside) is refused before
    /// it reaches a broker, for the module's policy; the window lets it go once settled.
    /// No broker needed: nothing is sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_header_rocketmq_cannot_carry_is_refused_not_sent() {
        let cfg = RawRocket {
            namesrv: vec!["127.0.0.1:1".into()],
            ..RawRocket::default()
        }
        .validate(&|p| p.to_path_buf())
        .expect("config");
        let mut sink = RocketSink::new(&cfg, 10).expect("publisher");
        sink.send(message(vec![
            ("sluice.position", b"f:4:0"),
            ("sluice.module", b"m"),
            ("team", b"a\x01b"),
        ]))
        .expect("refused, not failed");
        let refused = sink.take_refused();
        assert_eq!(refused.len(), 1);
        let r = &refused[0];
        assert_eq!(r.reason, RefusalReason::Rejected);
        assert!(r.detail.contains("header `team`"), "{}", r.detail);
        assert_eq!(r.position, "f:4:0");
        assert_eq!(r.module, "m");
        assert_eq!(sink.counts().0, 1, "held until its policy is applied");
        sink.settle(r);
        assert_eq!(sink.counts().0, 0);
    }
}
