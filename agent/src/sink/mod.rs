//! Sinks: where routed messages go. A local sink (stdout or a JSON-lines file) for trying
//! Sluice out, Kafka, and RabbitMQ.
//!
//! Invariant: [`Publisher::safe_checkpoint`] only returns a transaction boundary whose
//! messages and all earlier ones were acknowledged (written and flushed, or acked by
//! the broker with `acks=all`); the pipeline writes nothing else to the checkpoint file.

pub mod acks;
pub mod canal_server;
pub mod config;
pub mod kafka;
pub mod local;
pub mod rabbitmq;
pub mod rocketmq;
pub mod window;

use std::time::{Duration, Instant};

use crate::event::Checkpoint;
use config::SinkConfig;

/// A header value. Shared, so the values most messages repeat (database, table, type,
/// module name and version) are rendered once and only counted per message.
pub type HeaderValue = std::sync::Arc<[u8]>;

/// The header carrying a message's binlog position (`file:offset[/sub]:n`, n the
/// message's index among those made from that binlog event).
pub const POSITION_HEADER: &str = "sluice.position";

/// Whether a reference sent in a message's place (oversize, refused) keeps this
/// header: Sluice's own (position, table, module...), which are small; the key and the
/// module's own headers may be what made the message too large.
pub fn kept_on_reference(name: &str, value: &[u8]) -> bool {
    name.starts_with("sluice.") && value.len() <= 4096
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct OutMessage {
    /// Topic.
    pub topic: std::sync::Arc<str>,
    /// Explicit partition (else the key is hashed as the Java client does).
    pub partition: Option<i32>,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Headers (Sluice's own names are static: no allocation per message).
    pub headers: Vec<(std::borrow::Cow<'static, str>, HeaderValue)>,
    /// Body (JSON).
    pub payload: Vec<u8>,
    /// Transaction sequence number it belongs to.
    pub txn: u64,
}

impl OutMessage {
    /// The value of header `name`, if set.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| &**v)
    }

    /// What the broker stores of it: payload, key, and header names and values.
    pub fn wire_bytes(&self) -> usize {
        self.payload.len()
            + self.key.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }

    /// Sluice's own headers (`sluice.*`, each at most 4 KiB): what a reference sent in
    /// a refused message's place keeps of it.
    pub fn sluice_headers(&self) -> Vec<(String, Vec<u8>)> {
        self.headers
            .iter()
            .filter(|(k, v)| kept_on_reference(k, v))
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    /// The binlog position the message carries, for errors and logs.
    pub fn position(&self) -> String {
        self.header(POSITION_HEADER)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(|| "(no position)".into())
    }
}

/// Why a broker refused a message for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// Too large for the broker (its limit is below `sink.max_message_bytes`).
    TooLarge,
    /// No queue is bound for its routing key (RabbitMQ returned it: `mandatory`).
    Unroutable,
    /// Every node closes the connection whenever it is published.
    Rejected,
}

/// A message the broker refused for good: too large (its limit below
/// `sink.max_message_bytes`) or unroutable. It still counts as in flight for its
/// transaction, so the checkpoint cannot pass it, until the pipeline applies the
/// deciding module's policy (or, for size, the sink's oversize policy) and calls
/// [`Publisher::settle`]: a refusal is never an exit that would repeat at every restart from
/// the same checkpoint.
#[derive(Debug, Clone)]
pub struct Refused {
    /// Its transaction.
    pub txn: u64,
    /// Why.
    pub reason: RefusalReason,
    /// Its topic.
    pub topic: String,
    /// Its `sluice.position`.
    pub position: String,
    /// The deciding module (`sluice.module`; empty without modules).
    pub module: String,
    /// Its `sluice.*` headers (small; kept on a dead-letter reference).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Payload bytes.
    pub payload_bytes: usize,
    /// Key bytes.
    pub key_bytes: usize,
    /// What it counted against the in-flight byte bound.
    pub in_flight_bytes: u64,
    /// The broker's or client's words.
    pub detail: String,
}

impl Refused {
    /// The value of `sluice.*` header `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Why publishing stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Writing locally failed.
    #[error("writing {target}: {source}")]
    Io {
        /// File or stream.
        target: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The broker refused a message for good (after librdkafka's own retries).
    #[error("kafka refused a message for `{topic}` ({position}): {detail}")]
    Delivery {
        /// Topic.
        topic: String,
        /// Event position.
        position: String,
        /// The error.
        detail: String,
    },
    /// A message (payload, key and headers) is larger than allowed and the policy is to
    /// halt.
    #[error(
        "message for `{topic}` at {position} from module `{module}` is {bytes} bytes (payload, key and headers), over the {limit}-byte limit; the module's on_error and sink.on_oversize are both halt: set either to skip or dead-letter to let such messages through the policy"
    )]
    Oversize {
        /// Topic.
        topic: String,
        /// Event position.
        position: String,
        /// The deciding module (empty: none).
        module: String,
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The broker (or the client) refused a message as too large: its limit is below
    /// `sink.max_message_bytes`, so the oversize policy could not apply. Sending it again
    /// cannot help, so this stops the agent instead of restarting it.
    #[error(
        "the broker refused a message for `{topic}` ({position}) as too large ({detail}); set sink.max_message_bytes at or below the topic's max.message.bytes (and the broker's message.max.bytes) so that sink.on_oversize applies to such messages"
    )]
    TooLarge {
        /// Topic.
        topic: String,
        /// Event position.
        position: String,
        /// The error.
        detail: String,
    },
    /// A message no queue is bound for (RabbitMQ returned it) and its module's policy
    /// is to halt.
    #[error(
        "{detail} ({position}, module `{module}`); bind a queue for it, or set the module's on_error to skip or dead-letter"
    )]
    Unroutable {
        /// Event position.
        position: String,
        /// The deciding module (empty: none).
        module: String,
        /// Exchange, routing key and the broker's words.
        detail: String,
    },
    /// A message every node refuses for good (closing the connection whenever it is
    /// published) and its module's policy is to halt.
    #[error(
        "the broker refuses the message for `{topic}` at {position} for good: {detail}; set the module's on_error to skip or dead-letter to let it through its policy"
    )]
    Rejected {
        /// Topic.
        topic: String,
        /// Event position.
        position: String,
        /// What the broker said.
        detail: String,
    },
    /// A topic does not exist on the broker, and Sluice does not create topics.
    #[error(
        "topic `{topic}` does not exist on the broker{}; create it: `sluice topics create -c CONFIG` creates every topic the config and its modules declare (with `--tables`, also those the source's tables route to), `sluice ctl create-topic {topic}` creates it through a running agent",
        context.as_deref().map(|c| format!(" ({c})")).unwrap_or_default()
    )]
    MissingTopic {
        /// Topic.
        topic: String,
        /// Who asked for it (a module and a binlog position), when known.
        context: Option<String>,
    },
    /// A topic to create exists already.
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    /// Configuration or setup problem (missing topic, bad property).
    #[error("{0}")]
    Setup(String),
    /// Acknowledgements did not arrive in time during shutdown.
    #[error("{in_flight} messages still unacknowledged after {waited:?}")]
    Timeout {
        /// Messages in flight.
        in_flight: u64,
        /// Time waited.
        waited: Duration,
    },
}

/// A publisher: where the pipeline's messages go. One implementation per folder under
/// `sink/` (its own config section type, checks and client); adding one is its folder
/// and a line in [`config::PUBLISHERS`].
///
/// The contract the pipeline relies on: [`Publisher::send`] queues a message (waiting
/// only on the client's own hard bound); [`Publisher::safe_checkpoint`] returns only a
/// transaction boundary whose messages, and all earlier ones, the broker acknowledged;
/// a message refused for good comes back through [`Publisher::take_refused`] and holds
/// its transaction until [`Publisher::settle`]; any other failure is an error from
/// `check`/`send`, after which the pipeline starts over from the checkpoint with a new
/// publisher.
pub trait Publisher: Send {
    /// Queues one message.
    fn send(&mut self, msg: OutMessage) -> Result<(), SinkError>;

    /// Transaction `txn` is fully sent; `cp` is the boundary after it; `seen` is when
    /// its first event reached the pipeline (the start of its delivery latency).
    fn commit(&mut self, txn: u64, cp: Checkpoint, seen: Instant) -> Result<(), SinkError>;

    /// The newest boundary whose messages (and all earlier ones) were acknowledged.
    fn safe_checkpoint(&mut self) -> Result<Option<Checkpoint>, SinkError>;

    /// Waits (at most `timeout`) until everything sent is acknowledged or refused.
    fn drain(&mut self, timeout: Duration) -> Result<(), SinkError>;

    /// (in flight, acknowledged) message counts.
    fn counts(&self) -> (u64, u64);

    /// Fails if an earlier message could not be delivered.
    fn check(&self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Whether there is room for more messages (the pipeline reads no further events
    /// while there is not, but keeps checkpointing and serving commands).
    fn has_room(&self) -> bool {
        true
    }

    /// Startup check (`sluice check` and `sluice run`): the broker is reachable and the
    /// configured topics (or their equivalent) exist; a missing one is a clear error.
    fn check_topics(&self, _topics: &[String]) -> Result<(), SinkError> {
        Ok(())
    }

    /// Advisory startup checks: what does not stop publishing but would lose or divert
    /// messages unseen (a RabbitMQ routing key no binding takes). `sluice check` prints
    /// them; `sluice run` logs them at startup.
    fn warnings(&self, _topics: &[String]) -> Vec<String> {
        Vec::new()
    }

    /// Moves along messages held for a topic that did not exist, once it does.
    fn release_held(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Whether messages are held for a reason [`Publisher::waiting_for`] gives.
    fn holding(&self) -> bool {
        false
    }

    /// Why messages are held, if they are (a topic that does not exist).
    fn waiting_for(&self) -> Option<SinkError> {
        None
    }

    /// Messages the broker refused for good since the last call, for the pipeline to
    /// put through their policy.
    fn take_refused(&mut self) -> Vec<Refused> {
        Vec::new()
    }

    /// A refused message's policy was applied (skipped, or a reference sent in its
    /// place): it no longer holds its transaction back.
    fn settle(&mut self, _r: &Refused) {}

    /// Topic administration, where the broker has topics to create.
    fn topic_admin(&self) -> Option<Box<dyn TopicAdmin>> {
        None
    }

    /// What the publisher reports of itself for `GET /v1/publisher` (`None`: nothing
    /// beyond the counts).
    fn status(&self) -> Option<serde_json::Value> {
        None
    }
}

/// Creates topics (`POST /v1/topics`, `sluice ctl create-topic`) off the pipeline.
pub trait TopicAdmin: Send {
    /// Creates `name`; [`SinkError::TopicExists`] when it exists.
    fn create(
        self: Box<Self>,
        name: String,
        partitions: i32,
        replication: i32,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SinkError>> + Send>>;
}

/// The configured publisher.
pub type Sink = Box<dyn Publisher>;

/// Opens the configured publisher.
pub fn open(cfg: &SinkConfig) -> Result<Sink, SinkError> {
    cfg.publisher.open(cfg)
}
