//! Canal's TCP protocol on the wire (`CanalProtocol.proto`): a 4-byte big-endian
//! length, then a serialised `Packet` whose `body` is the request or answer.
//!
//! Invariants: a frame longer than [`MAX_FRAME`] is refused before its body is read
//! (a client cannot make the agent allocate more); every packet the server writes sets
//! `magic_number` 17, `version` 1 and `compression` NONE, which Canal's Java connector
//! checks.

use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The largest request frame accepted. Requests are small (a GET is ~40 bytes, an
/// authentication a few hundred); 1 MiB leaves room for long filters.
pub const MAX_FRAME: usize = 1 << 20;

/// `PacketType` values.
pub mod kind {
    /// Server → client, first: the seed.
    pub const HANDSHAKE: i32 = 1;
    /// Client → server: user, scrambled password, optionally destination.
    pub const CLIENT_AUTHENTICATION: i32 = 2;
    /// Server → client: success or an error code.
    pub const ACK: i32 = 3;
    /// Client → server.
    pub const SUBSCRIPTION: i32 = 4;
    /// Client → server.
    pub const UNSUBSCRIPTION: i32 = 5;
    /// Client → server.
    pub const GET: i32 = 6;
    /// Server → client: a batch.
    pub const MESSAGES: i32 = 7;
    /// Client → server, no answer.
    pub const CLIENT_ACK: i32 = 8;
    /// Client → server, no answer.
    pub const CLIENT_ROLLBACK: i32 = 12;
    /// Client → server: keep-alive, no answer.
    pub const HEARTBEAT: i32 = 11;
}

/// `Compression::NONE`.
pub const COMPRESSION_NONE: i32 = 1;

/// `Packet`.
#[derive(Clone, PartialEq, Message)]
pub struct Packet {
    /// 17.
    #[prost(int32, optional, tag = "1")]
    pub magic_number: Option<i32>,
    /// 1.
    #[prost(int32, optional, tag = "2")]
    pub version: Option<i32>,
    /// See [`kind`].
    #[prost(int32, tag = "3")]
    pub r#type: i32,
    /// NONE.
    #[prost(int32, optional, tag = "4")]
    pub compression: Option<i32>,
    /// The request or answer.
    #[prost(bytes = "vec", tag = "5")]
    pub body: Vec<u8>,
}

/// `Handshake`.
#[derive(Clone, PartialEq, Message)]
pub struct Handshake {
    /// `utf8`.
    #[prost(string, optional, tag = "1")]
    pub communication_encoding: Option<String>,
    /// The seed the password is scrambled with.
    #[prost(bytes = "vec", tag = "2")]
    pub seeds: Vec<u8>,
    /// NONE.
    #[prost(int32, tag = "3")]
    pub supported_compressions: i32,
}

/// `ClientAuth`.
#[derive(Clone, PartialEq, Message)]
pub struct ClientAuth {
    /// User.
    #[prost(string, tag = "1")]
    pub username: String,
    /// Hex of `scramble411(password, seed)` (empty without a password).
    #[prost(bytes = "vec", tag = "2")]
    pub password: Vec<u8>,
    /// Seconds (Canal's connector sends milliseconds).
    #[prost(int32, optional, tag = "3")]
    pub net_read_timeout: Option<i32>,
    /// Seconds.
    #[prost(int32, optional, tag = "4")]
    pub net_write_timeout: Option<i32>,
    /// Subscribe at once to this destination (optional).
    #[prost(string, tag = "5")]
    pub destination: String,
    /// Numeric client id.
    #[prost(string, tag = "6")]
    pub client_id: String,
    /// Table filter.
    #[prost(string, tag = "7")]
    pub filter: String,
    /// Unused.
    #[prost(int64, tag = "8")]
    pub start_timestamp: i64,
}

/// `Ack`.
#[derive(Clone, PartialEq, Message)]
pub struct Ack {
    /// 0 (or absent): success.
    #[prost(int32, optional, tag = "1")]
    pub error_code: Option<i32>,
    /// What went wrong.
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// `ClientAck`.
#[derive(Clone, PartialEq, Message)]
pub struct ClientAck {
    /// Destination.
    #[prost(string, tag = "1")]
    pub destination: String,
    /// Client id.
    #[prost(string, tag = "2")]
    pub client_id: String,
    /// The batch acknowledged.
    #[prost(int64, tag = "3")]
    pub batch_id: i64,
}

/// `Sub` and `Unsub` (the same fields).
#[derive(Clone, PartialEq, Message)]
pub struct Sub {
    /// Destination.
    #[prost(string, tag = "1")]
    pub destination: String,
    /// Client id.
    #[prost(string, tag = "2")]
    pub client_id: String,
    /// Table filter (Canal's regex list).
    #[prost(string, tag = "7")]
    pub filter: String,
}

/// `Get`.
#[derive(Clone, PartialEq, Message)]
pub struct Get {
    /// Destination.
    #[prost(string, tag = "1")]
    pub destination: String,
    /// Client id.
    #[prost(string, tag = "2")]
    pub client_id: String,
    /// Entries wanted.
    #[prost(int32, tag = "3")]
    pub fetch_size: i32,
    /// -1 (default): answer at once; 0: until the batch is full; > 0: at most this long.
    #[prost(int64, optional, tag = "4")]
    pub timeout: Option<i64>,
    /// Java `TimeUnit` ordinal (default 2, milliseconds).
    #[prost(int32, optional, tag = "5")]
    pub unit: Option<i32>,
    /// Acknowledge as sent.
    #[prost(bool, optional, tag = "6")]
    pub auto_ack: Option<bool>,
}

/// `Messages`.
#[derive(Clone, PartialEq, Message)]
pub struct Messages {
    /// The batch (-1: nothing).
    #[prost(int64, tag = "1")]
    pub batch_id: i64,
    /// Serialised entries.
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub messages: Vec<Vec<u8>>,
}

/// `ClientRollback`.
#[derive(Clone, PartialEq, Message)]
pub struct ClientRollback {
    /// Destination.
    #[prost(string, tag = "1")]
    pub destination: String,
    /// Client id.
    #[prost(string, tag = "2")]
    pub client_id: String,
    /// 0: every batch not acknowledged; else this batch and the ones after it.
    #[prost(int64, tag = "3")]
    pub batch_id: i64,
}

/// A packet of `kind` carrying `body`, framed.
pub fn frame(kind: i32, body: Vec<u8>) -> Vec<u8> {
    let p = Packet {
        magic_number: Some(17),
        version: Some(1),
        r#type: kind,
        compression: Some(COMPRESSION_NONE),
        body,
    };
    let len = p.encoded_len();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    // Encoding into a Vec with room cannot fail.
    let _ = p.encode(&mut out);
    out
}

/// An ACK: success (`code` 0) or an error with Canal's code and a message.
pub fn ack(code: i32, message: &str) -> Vec<u8> {
    frame(
        kind::ACK,
        Ack {
            error_code: (code != 0).then_some(code),
            error_message: message.to_string(),
        }
        .encode_to_vec(),
    )
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The client closed the connection between packets.
    #[error("closed")]
    Closed,
    /// A frame over the limit (length, limit).
    #[error("a frame of {0} bytes is over the {1}-byte limit")]
    TooLarge(usize, usize),
    /// Not a `Packet`.
    #[error("not a Canal packet: {0}")]
    Garbage(#[from] prost::DecodeError),
    /// The connection failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads one request (at most [`MAX_FRAME`] bytes).
pub async fn read<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<Packet, ReadError> {
    read_at_most(r, MAX_FRAME).await
}

/// Reads one packet of at most `max` bytes (a client reading batches sets its own).
pub async fn read_at_most<R: AsyncReadExt + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Packet, ReadError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(ReadError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(ReadError::TooLarge(len, max));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(Packet::decode(&buf[..])?)
}

/// Writes framed bytes.
pub async fn write<W: AsyncWriteExt + Unpin>(w: &mut W, framed: &[u8]) -> std::io::Result<()> {
    w.write_all(framed).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversize_is_refused_before_reading() {
        let bytes = frame(
            kind::GET,
            Get {
                destination: "example".into(),
                client_id: "1001".into(),
                fetch_size: 100,
                timeout: Some(-1),
                unit: None,
                auto_ack: None,
            }
            .encode_to_vec(),
        );
        let p = read(&mut &bytes[..]).await.expect("a packet");
        assert_eq!(
            (p.r#type, p.version, p.magic_number),
            (kind::GET, Some(1), Some(17))
        );
        let g = Get::decode(&p.body[..]).expect("get");
        assert_eq!(
            (g.destination.as_str(), g.fetch_size, g.timeout),
            ("example", 100, Some(-1))
        );

        // A length of 2 GiB with nothing after it: refused without waiting for a body.
        let huge = [0x80u8, 0, 0, 0];
        assert!(matches!(
            read(&mut &huge[..]).await,
            Err(ReadError::TooLarge(..))
        ));
        // Bytes that are no packet.
        let junk = [0, 0, 0, 3, 0xff, 0xff, 0xff];
        assert!(matches!(
            read(&mut &junk[..]).await,
            Err(ReadError::Garbage(_))
        ));
        assert!(matches!(read(&mut &[][..]).await, Err(ReadError::Closed)));
    }

    #[test]
    fn an_error_ack_carries_its_code() {
        let bytes = ack(400, "auth failed for user:x");
        let p = Packet::decode(&bytes[4..]).expect("packet");
        let a = Ack::decode(&p.body[..]).expect("ack");
        assert_eq!(a.error_code, Some(400));
        assert_eq!(a.error_message, "auth failed for user:x");
        let ok = Ack::decode(&Packet::decode(&ack(0, "")[4..]).expect("p").body[..]).expect("a");
        assert_eq!(ok.error_code, None);
    }
}
