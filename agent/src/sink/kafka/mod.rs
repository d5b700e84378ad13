//! The Kafka sink: an idempotent producer (`acks=all`, `enable.idempotence=true`), the
//! Java client's partitioner for keyed messages (`murmur2_random`, so Java consumers and
//! producers agree on partitions), bounded in-flight messages, and acknowledgement
//! tracking that feeds the checkpoint.
//!
//! Delivery reports are served by a polling thread of the sink's own, so
//! acknowledgements, the checkpoint watermark and the delivery latency histogram move as
//! soon as the broker answers, not when the pipeline next calls into the sink. (rdkafka's
//! `ThreadedProducer` polls in 100 ms slices, and each slice ends in up to a millisecond
//! of busy-waiting: ~1% of a core on an idle agent. Longer slices cost 0.2%.)
//!
//! In-flight messages are bounded twice: softly by [`KafkaSink::has_room`], which the
//! pipeline asks before it takes the next binlog event (so while the window is full it
//! keeps persisting acknowledged checkpoints, serving commands and signals), and hard by
//! librdkafka's queue limits, past which a send waits (one event's messages can
//! overshoot the soft bound).
//!
//! A topic is looked up once, on first use, off the pipeline's thread; its messages,
//! and everything after them, are held until the answer. A topic the broker does not
//! have holds them until it is created (looked up again every 2 s); meanwhile the
//! window counts as full and the pipeline reports why.
//!
//! Invariants: a message counts as acknowledged only in librdkafka's delivery report
//! with no error; a message refused as too large (the topic's limit below
//! `sink.max_message_bytes`) stays in flight until the pipeline has applied its policy
//! ([`super::Refused`]); any other delivery error (after librdkafka's own retries, within
//! `message.timeout.ms`) or a fatal producer error stops the pipeline, which then
//! resumes from the last safe checkpoint with a new producer: nothing is lost, and what
//! is sent again carries its binlog position for deduplication.

pub mod config;

pub use config::KafkaConfig;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};

use super::acks::Acks;
use super::config::{PublisherConfig, Registration, SinkConfig};
use super::{OutMessage, Publisher, RefusalReason, Refused, Sink, SinkError, TopicAdmin};
use crate::event::Checkpoint;

/// Delivery reports land here.
pub struct AckContext {
    acks: Mutex<Acks>,
    failure: Mutex<Option<SinkError>>,
    refused: Mutex<Vec<Refused>>,
}

/// Whether the broker or client refused a message for its size: no retry can help,
/// but the message's policy can.
fn too_large(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge)
    )
}

/// A refused message as the pipeline needs it: where it was going, what it came from.
fn refused<'a>(
    txn: u64,
    topic: &str,
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    payload_bytes: usize,
    key: Option<&[u8]>,
    detail: String,
) -> Refused {
    let headers: Vec<(String, Vec<u8>)> = headers
        .filter(|(k, v)| super::kept_on_reference(k, v))
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    Refused {
        txn,
        reason: RefusalReason::TooLarge,
        topic: topic.to_string(),
        position: find(super::POSITION_HEADER).unwrap_or_else(|| format!("transaction #{txn}")),
        module: find("sluice.module").unwrap_or_default(),
        headers,
        payload_bytes,
        key_bytes: key.map_or(0, <[u8]>::len),
        in_flight_bytes: message_bytes(payload_bytes, key),
        detail,
    }
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, txn: usize) {
        match result {
            Ok(msg) => {
                if let Ok(mut a) = self.acks.lock() {
                    a.acked(txn as u64, message_bytes(msg.payload_len(), msg.key()));
                }
            }
            Err((e, msg)) if too_large(e) => {
                let headers = msg.headers();
                let r = refused(
                    txn as u64,
                    msg.topic(),
                    headers
                        .into_iter()
                        .flat_map(|h| h.iter())
                        .map(|h| (h.key, h.value.unwrap_or_default())),
                    msg.payload_len(),
                    msg.key(),
                    e.to_string(),
                );
                if let Ok(mut q) = self.refused.lock() {
                    q.push(r);
                }
            }
            Err((e, msg)) => {
                if let Ok(mut f) = self.failure.lock()
                    && f.is_none()
                {
                    let position = msg
                        .headers()
                        .and_then(|h| {
                            h.iter()
                                .find(|x| x.key == super::POSITION_HEADER)
                                .and_then(|x| x.value)
                                .map(|v| String::from_utf8_lossy(v).into_owned())
                        })
                        .unwrap_or_else(|| format!("transaction #{txn}"));
                    *f = Some(delivery_error(e, msg.topic(), position));
                }
            }
        }
    }
}

/// A refused message as an error: too large (no retry can help) or otherwise.
fn delivery_error(e: &KafkaError, topic: &str, position: String) -> SinkError {
    let (topic, detail) = (topic.to_string(), e.to_string());
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => SinkError::TooLarge {
            topic,
            position,
            detail,
        },
        _ => SinkError::Delivery {
            topic,
            position,
            detail,
        },
    }
}

/// What a message weighs against the in-flight bound: its payload and key, as
/// librdkafka counts it against `queue.buffering.max.kbytes`.
fn message_bytes(payload: usize, key: Option<&[u8]>) -> u64 {
    (payload + key.map_or(0, <[u8]>::len)) as u64
}

/// The soft bound on bytes in flight; librdkafka's hard one (`queue.buffering.max.kbytes`)
/// is [`HARD_KBYTES`], leaving room for the overshoot of one binlog event's messages.
const SOFT_BYTES: u64 = 12 << 20;
const HARD_KBYTES: u64 = 16 << 10;

/// How long a topic lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the topic held messages wait for is looked up again.
const HELD_RETRY: Duration = Duration::from_secs(2);
/// How often a topic that still does not exist is logged again.
const HELD_LOG_EVERY: Duration = Duration::from_secs(60);

/// How long one poll of the delivery-report queue may block; also the longest a
/// dropped sink waits for its polling thread.
const POLL_SLICE: Duration = Duration::from_millis(500);

/// Serves delivery reports until stopped.
struct Poller {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    fn start(producer: Arc<BaseProducer<AckContext>>) -> Result<Self, SinkError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("sluice-acks".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    producer.poll(POLL_SLICE);
                }
            })
            .map_err(setup)?;
        Ok(Poller {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The producer.
pub struct KafkaSink {
    // Declared first: dropped (stopped and joined) before the producer it polls. Only
    // held for that.
    _poller: Poller,
    producer: Arc<BaseProducer<AckContext>>,
    max_in_flight: u64,
    client: ClientConfig,
    /// Topics the broker said exist (each looked up once, on first use).
    known: HashSet<Arc<str>>,
    /// Messages held back, in order, from the first one whose topic is not known to
    /// exist yet: nothing behind it is produced either, so per-key order holds and the
    /// checkpoint stays before it.
    held: VecDeque<OutMessage>,
    /// The lookup of the first held message's topic, on a thread of its own so that a
    /// broker that does not answer never blocks the pipeline.
    lookup: Option<Lookup>,
    /// Why the first held message is still held, once a lookup said so.
    held_because: Option<SinkError>,
    /// When the first held message's topic is looked up again.
    retry_at: Instant,
    /// When the hold was last logged.
    held_logged: Option<Instant>,
}

/// A topic lookup in progress.
struct Lookup {
    topic: Arc<str>,
    answer: std::sync::mpsc::Receiver<Result<bool, KafkaError>>,
}

/// Creates topics through the broker's admin API (for `POST /v1/topics` and
/// `sluice ctl create-topic`).
pub struct TopicCreator {
    client: ClientConfig,
}

impl TopicAdmin for TopicCreator {
    fn create(
        self: Box<Self>,
        name: String,
        partitions: i32,
        replication: i32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SinkError>> + Send>> {
        Box::pin(async move { self.create_topic(&name, partitions, replication).await })
    }
}

impl TopicCreator {
    /// Creates `name`; an existing topic is an error naming it.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication: i32,
    ) -> Result<(), SinkError> {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        let admin: AdminClient<DefaultClientContext> = self.client.create().map_err(setup)?;
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(replication));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics([&topic], &opts)
            .await
            .map_err(|e| SinkError::Setup(format!("creating topic `{name}`: {e}")))?;
        for r in results {
            match r {
                Ok(_) => {}
                Err((t, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    return Err(SinkError::TopicExists(t));
                }
                Err((t, code)) => {
                    return Err(SinkError::Setup(format!("creating topic `{t}`: {code}")));
                }
            }
        }
        Ok(())
    }
}

/// Whether the broker has `topic` with partitions. `Ok(false)` only on the broker's
/// word; a broker that does not answer is an error.
fn topic_exists(
    producer: &BaseProducer<AckContext>,
    topic: &str,
    timeout: Duration,
) -> Result<bool, KafkaError> {
    let md = producer.client().fetch_metadata(Some(topic), timeout)?;
    Ok(md
        .topics()
        .iter()
        .any(|mt| mt.name() == topic && mt.error().is_none() && !mt.partitions().is_empty()))
}

/// `kind = "kafka"`: `brokers` and `[sink.librdkafka]` ([`KafkaConfig`]).
pub const REGISTRATION: Registration = Registration {
    kind: "kafka",
    keys: <super::kafka::config::KafkaKeys as schemars::JsonSchema>::json_schema,
    section: |s| {
        let brokers: String = s.require("brokers", "bootstrap servers, HOST:PORT,...")?;
        let properties: BTreeMap<String, String> = s.take("librdkafka")?.unwrap_or_default();
        Ok(std::sync::Arc::new(KafkaConfig::from_section(
            Some(&brokers),
            &properties,
        )?))
    },
};

impl PublisherConfig for KafkaConfig {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn open(&self, sink: &SinkConfig) -> Result<Sink, SinkError> {
        Ok(Box::new(KafkaSink::new(
            &self.brokers,
            &self.properties,
            sink,
        )?))
    }
}

fn setup(e: impl std::fmt::Display) -> SinkError {
    SinkError::Setup(format!("kafka producer: {e}"))
}

impl KafkaSink {
    /// Creates the producer. `properties` were checked not to override Sluice's own.
    pub fn new(
        brokers: &str,
        properties: &BTreeMap<String, String>,
        cfg: &SinkConfig,
    ) -> Result<Self, SinkError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .set(
                "queue.buffering.max.messages",
                (cfg.max_in_flight.max(1000) * 2).to_string(),
            )
            .set("message.timeout.ms", "300000")
            // A topic a module names that does not exist is an error, not a new topic
            // (librdkafka's producer default is to ask the broker to create it).
            .set("allow.auto.create.topics", "false")
            // In-flight bytes are bounded too, not just messages: memory stays flat
            // whatever the message size (a full queue backpressures the reader).
            .set("queue.buffering.max.kbytes", HARD_KBYTES.to_string());
        for (k, v) in properties {
            c.set(k, v);
        }
        // Sluice's own settings last: delivery guarantees depend on them.
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("partitioner", "murmur2_random")
            .set(
                "message.max.bytes",
                (cfg.max_message_bytes + 64 * 1024).to_string(),
            );
        let client = c.clone();
        let producer: Arc<BaseProducer<AckContext>> = Arc::new(
            c.create_with_context(AckContext {
                acks: Mutex::new(Acks::default()),
                failure: Mutex::new(None),
                refused: Mutex::new(Vec::new()),
            })
            .map_err(setup)?,
        );
        let sink = KafkaSink {
            _poller: Poller::start(producer.clone())?,
            producer,
            max_in_flight: cfg.max_in_flight as u64,
            client,
            known: HashSet::new(),
            held: VecDeque::new(),
            lookup: None,
            held_because: None,
            retry_at: Instant::now(),
            held_logged: None,
        };
        sink.warm_up(&cfg.default_topic);
        Ok(sink)
    }

    /// Connects to the cluster now rather than on the first message. An idempotent
    /// producer may not send before it holds a producer id, and librdkafka asks for one
    /// on a 500 ms timer, or at once when a metadata answer arrives from a connected
    /// broker. The bootstrap connection is dropped once the cluster's own brokers are
    /// known, so a first lookup learns them and a second, answered by one of them,
    /// gets the id: the first transaction after a (re)start is published ~1 s sooner.
    /// A broker that does not answer is not an error here (messages wait for it, and
    /// `check_topics` reports it where topics are declared).
    fn warm_up(&self, topic: &str) {
        for _ in 0..2 {
            if let Err(e) = self
                .producer
                .client()
                .fetch_metadata(Some(topic), Duration::from_secs(2))
            {
                tracing::debug!(message = "Broker not reachable yet.", error = %e);
                return;
            }
        }
    }

    /// Starts looking up `topic` on a thread of its own.
    fn look_up(&mut self, topic: Arc<str>) {
        let (tx, answer) = std::sync::mpsc::channel();
        let producer = self.producer.clone();
        let name = topic.clone();
        let spawned = std::thread::Builder::new()
            .name("sluice-topic".into())
            .spawn(move || {
                let _ = tx.send(topic_exists(&producer, &name, LOOKUP_TIMEOUT));
            });
        match spawned {
            Ok(_) => self.lookup = Some(Lookup { topic, answer }),
            Err(e) => {
                self.held_because = Some(SinkError::Setup(format!(
                    "cannot look up topic `{topic}`: {e}"
                )));
                self.retry_at = Instant::now() + HELD_RETRY;
            }
        }
    }

    /// Records why the first held message stays held, and says so (once a minute).
    fn hold_because(&mut self, why: SinkError) {
        self.retry_at = Instant::now() + HELD_RETRY;
        if self
            .held_logged
            .is_none_or(|t| t.elapsed() >= HELD_LOG_EVERY)
        {
            self.held_logged = Some(Instant::now());
            let position = self.held.front().map(OutMessage::position);
            tracing::error!(
                message = "Holding messages until their topic can be published to.",
                reason = %why,
                position = %position.unwrap_or_default(),
            );
        }
        self.held_because = Some(why);
    }

    fn in_flight(&self) -> u64 {
        self.producer
            .context()
            .acks
            .lock()
            .map(|a| a.in_flight())
            .unwrap_or(0)
    }

    fn produce(&mut self, m: OutMessage) -> Result<(), SinkError> {
        let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
        for (k, v) in &m.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(&**v),
            });
        }
        let mut record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&m.topic, m.txn as usize)
                .payload(m.payload.as_slice())
                .headers(headers);
        if let Some(k) = &m.key {
            record = record.key(k.as_slice());
        }
        if let Some(p) = m.partition {
            record = record.partition(p);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                    self.check()?;
                }
                Err((e, _)) if too_large(&e) => {
                    // The client's own size check: the same policy as the broker's.
                    let r = refused(
                        m.txn,
                        &m.topic,
                        m.headers.iter().map(|(k, v)| (&**k, &**v)),
                        m.payload.len(),
                        m.key.as_deref(),
                        e.to_string(),
                    );
                    if let Ok(mut q) = self.producer.context().refused.lock() {
                        q.push(r);
                    }
                    break;
                }
                Err((e, _)) => return Err(delivery_error(&e, &m.topic, m.position())),
            }
        }
        self.check()
    }
}

impl Publisher for KafkaSink {
    /// Fails naming the first topic that does not exist.
    fn check_topics(&self, topics: &[String]) -> Result<(), SinkError> {
        for t in topics {
            match topic_exists(&self.producer, t, Duration::from_secs(10)) {
                Ok(true) => {}
                Ok(false) => {
                    return Err(SinkError::MissingTopic {
                        topic: t.clone(),
                        context: None,
                    });
                }
                Err(e) => {
                    return Err(SinkError::Setup(format!(
                        "cannot read metadata of topic `{t}`: {e}"
                    )));
                }
            }
        }
        Ok(())
    }
    /// Whether messages are held and a lookup said why (what [`KafkaSink::waiting_for`]
    /// describes), without building the description.
    fn holding(&self) -> bool {
        !self.held.is_empty() && self.held_because.is_some()
    }
    /// The topic held messages wait for, if a lookup said it is missing or could not be
    /// made.
    fn waiting_for(&self) -> Option<SinkError> {
        let m = self.held.front()?;
        match self.held_because.as_ref()? {
            SinkError::MissingTopic { topic, .. } => {
                let module = m
                    .header("sluice.module")
                    .map(|v| format!("routed by module `{}`, ", String::from_utf8_lossy(v)))
                    .unwrap_or_default();
                Some(SinkError::MissingTopic {
                    topic: topic.clone(),
                    context: Some(format!(
                        "{module}{} message(s) held from binlog position {}; nothing after it is published until it exists",
                        self.held.len(),
                        m.position()
                    )),
                })
            }
            other => Some(SinkError::Setup(other.to_string())),
        }
    }
    /// Moves held messages along: takes a lookup's answer, produces what is held (in
    /// order) once its topic is known, starts the next lookup when one is due.
    fn release_held(&mut self) -> Result<(), SinkError> {
        if let Some(l) = &self.lookup {
            let answer = match l.answer.try_recv() {
                Ok(a) => a,
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(()),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    Err(KafkaError::MetadataFetch(RDKafkaErrorCode::Fail))
                }
            };
            let topic = l.topic.clone();
            self.lookup = None;
            match answer {
                Ok(true) => {
                    if self.held_because.take().is_some() {
                        tracing::info!(message = "Topic found; publishing held messages.", topic = %topic);
                    }
                    self.known.insert(topic);
                }
                Ok(false) => self.hold_because(SinkError::MissingTopic {
                    topic: topic.to_string(),
                    context: None,
                }),
                Err(e) => self.hold_because(SinkError::Setup(format!(
                    "cannot look up topic `{topic}`: {e}"
                ))),
            }
        }
        while let Some(m) = self.held.front() {
            if !self.known.contains(&m.topic) {
                if self.lookup.is_none() && Instant::now() >= self.retry_at {
                    let topic = m.topic.clone();
                    self.look_up(topic);
                }
                return Ok(());
            }
            if let Some(m) = self.held.pop_front() {
                self.produce(m)?;
            }
        }
        Ok(())
    }
    /// Fails if a delivery or the producer failed.
    fn check(&self) -> Result<(), SinkError> {
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            return Err(SinkError::Setup(format!(
                "fatal producer error {code:?}: {reason}"
            )));
        }
        match self.producer.context().failure.lock() {
            Ok(mut f) => match f.take() {
                Some(e) => Err(e),
                None => Ok(()),
            },
            Err(_) => Err(SinkError::Setup("delivery state poisoned".into())),
        }
    }
    /// Whether the soft in-flight bound (messages and bytes) has room for more.
    fn has_room(&self) -> bool {
        self.producer
            .context()
            .acks
            .lock()
            .map(|a| {
                self.held.is_empty()
                    && a.in_flight() < self.max_in_flight
                    && a.in_flight_bytes() < SOFT_BYTES
            })
            .unwrap_or(true)
    }
    /// Queues a message, waiting only while librdkafka's own queue is full. A message
    /// for a topic that does not exist is held (see [`KafkaSink::release_held`]).
    fn send(&mut self, m: OutMessage) -> Result<(), SinkError> {
        match self.producer.context().acks.lock() {
            Ok(mut a) => a.sent(m.txn, message_bytes(m.payload.len(), m.key.as_deref())),
            Err(_) => return Err(SinkError::Setup("delivery state poisoned".into())),
        }
        if self.held.is_empty() && self.known.contains(&m.topic) {
            return self.produce(m);
        }
        if self.held.is_empty() {
            self.held_logged = None;
            self.retry_at = Instant::now();
        }
        self.held.push_back(m);
        self.release_held()?;
        self.check()
    }
    /// Marks transaction `txn`, first seen at `seen`, complete.
    fn commit(&mut self, txn: u64, cp: Checkpoint, seen: Instant) -> Result<(), SinkError> {
        if let Ok(mut a) = self.producer.context().acks.lock() {
            a.committed(txn, cp, seen);
        }
        self.check()
    }
    /// The newest acknowledged boundary.
    fn safe_checkpoint(&mut self) -> Result<Option<Checkpoint>, SinkError> {
        self.check()?;
        Ok(self
            .producer
            .context()
            .acks
            .lock()
            .ok()
            .and_then(|a| a.safe().cloned()))
    }
    /// Waits for every in-flight message's delivery report. Held messages are not
    /// waited for: they are an error naming their topic once the rest is acknowledged.
    fn drain(&mut self, timeout: Duration) -> Result<(), SinkError> {
        let start = Instant::now();
        loop {
            self.release_held()?;
            let unanswered = !self.held.is_empty() && self.held_because.is_none();
            // Refused messages wait for their policy, which the pipeline applies.
            let refused = self
                .producer
                .context()
                .refused
                .lock()
                .map(|q| q.len())
                .unwrap_or(0);
            if self.in_flight() <= (self.held.len() + refused) as u64 && !unanswered {
                break;
            }
            if start.elapsed() > timeout {
                return Err(SinkError::Timeout {
                    in_flight: self.in_flight(),
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
            self.check()?;
        }
        match self.waiting_for() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
    /// (in flight, acknowledged).
    fn counts(&self) -> (u64, u64) {
        self.producer
            .context()
            .acks
            .lock()
            .map(|a| (a.in_flight(), a.acked_total()))
            .unwrap_or((0, 0))
    }
    /// Messages refused as too large since the last call (see [`Refused`]).
    fn take_refused(&mut self) -> Vec<Refused> {
        self.producer
            .context()
            .refused
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default()
    }
    /// A refused message's policy was applied: it leaves the window.
    fn settle(&mut self, r: &Refused) {
        if let Ok(mut a) = self.producer.context().acks.lock() {
            a.settled(r.txn, r.in_flight_bytes);
        }
    }
    /// A topic creator using the producer's connection settings.
    fn topic_admin(&self) -> Option<Box<dyn TopicAdmin>> {
        let mut client = ClientConfig::new();
        // Only connection settings: the admin client rejects producer properties.
        for (k, v) in self.client.config_map() {
            if k == "bootstrap.servers"
                || k.starts_with("security.")
                || k.starts_with("sasl.")
                || k.starts_with("ssl.")
                || k == "client.id"
            {
                client.set(k, v);
            }
        }
        Some(Box::new(TopicCreator { client }))
    }
}
