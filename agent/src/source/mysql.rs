//! The replication connection: startup checks, start position, the dump stream, and
//! reconnection at transaction boundaries.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, OptsBuilder};

use super::config::{SourceConfig, StartPosition};
use super::dictionary;
use crate::binlog::{BinlogError, ChecksumAlg, Decoder, DecoderOptions, Location, event_type};
use crate::event::{Checkpoint, Flavor, SourceItem};
use crate::gtid::GtidState;

/// Why the source stopped or could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The server could not be reached or refused the login.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The driver error.
        #[source]
        source: mysql_async::Error,
    },
    /// A server setting makes row-based capture impossible or unsafe.
    #[error("server setting {name} is {value}, Sluice needs {expected}: {hint}")]
    ServerSetting {
        /// Variable name.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is required.
        expected: &'static str,
        /// How to fix it.
        hint: &'static str,
    },
    /// The replication user lacks privileges.
    #[error("user `{user}` lacks privileges: {detail}")]
    Privileges {
        /// The user.
        user: String,
        /// What is missing.
        detail: String,
    },
    /// Another replica uses this server id (MariaDB error 4052 / MySQL 1236 variant).
    #[error(
        "server_id {server_id} is used by another replica of this server ({detail}); give every \
         replica, Sluice agents included, a unique server_id"
    )]
    ServerIdConflict {
        /// The conflicting id.
        server_id: u32,
        /// What the server said.
        detail: String,
    },
    /// The requested start position is gone or invalid.
    #[error("cannot replicate from {position}: {detail}")]
    Position {
        /// The position asked for.
        position: String,
        /// What the server said.
        detail: String,
    },
    /// An event could not be decoded; decoding further would lose or misattribute data.
    #[error(transparent)]
    Decode(#[from] BinlogError),
    /// A query or the stream failed in a way retrying will not fix.
    #[error("{context}: {source}")]
    Server {
        /// What was being done.
        context: &'static str,
        /// The driver error.
        #[source]
        source: mysql_async::Error,
    },
    /// The server sent a packet the driver could not parse (a short or corrupt event).
    #[error("the server sent a malformed binlog event after {after}")]
    Malformed {
        /// The last transaction boundary handed out.
        after: String,
    },
}

/// Counters of a running source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Events received.
    pub events: u64,
    /// Event bytes received.
    pub bytes: u64,
    /// Reconnections after the first connect.
    pub reconnects: u64,
    /// Heartbeats received.
    pub heartbeats: u64,
    /// Reconnects that happened inside a partly handed-out transaction (its already
    /// handed-out changes were skipped when re-read).
    pub resumed_mid_transaction: u64,
}

/// Failures of one connection attempt or stream, sorted into retry or stop.
enum Failure {
    Transient(String),
    Fatal(SourceError),
}

impl From<SourceError> for Failure {
    fn from(e: SourceError) -> Self {
        Failure::Fatal(e)
    }
}

/// A live binlog source. Pull items with [`BinlogSource::next`].
pub struct BinlogSource {
    cfg: SourceConfig,
    flavor: Flavor,
    checksum: ChecksumAlg,
    decoder: Decoder,
    stream: Option<BinlogStream>,
    meta: Option<Conn>,
    /// Last transaction boundary: where a reconnect resumes.
    resume: Checkpoint,
    /// Position (file, offset, sub) of the last change handed out inside the open
    /// transaction; re-read changes up to it are dropped after a reconnect.
    emitted_in_txn: Option<(Arc<str>, u64, u32)>,
    /// Whether `Begin` of the open transaction was handed out.
    begun: bool,
    /// Set after a reconnect until the stream passes `emitted_in_txn`.
    replaying: bool,
    pending: VecDeque<SourceItem>,
    scratch: Vec<SourceItem>,
    raw: Vec<u8>,
    stats: SourceStats,
    backoff: Duration,
    last_rx: Instant,
    received: Received,
}

/// Where the stream is: the position just past the last event received from the
/// server, of any type (not only transaction boundaries, so a caught-up source sits
/// exactly at the server's end even when the file ends in non-transaction events).
/// Shared with the lag probe and the pipeline; one short lock per event.
#[derive(Debug, Clone, Default)]
pub struct Received(Arc<std::sync::Mutex<Option<StreamAt>>>);

/// A place in the binlog: (file, offset).
pub type StreamAt = (Arc<str>, u64);

impl Received {
    fn set(&self, file: &Arc<str>, end: u64) {
        if let Ok(mut g) = self.0.lock() {
            match g.as_mut() {
                Some((f, at)) if Arc::ptr_eq(f, file) => *at = end,
                _ => *g = Some((file.clone(), end)),
            }
        }
    }

    /// (file, offset) just past the last event received, once one was.
    pub fn get(&self) -> Option<StreamAt> {
        self.0.lock().ok().and_then(|g| g.clone())
    }
}

/// The server's binlog end as last listed by [`probe_lag`]: (last file, its size).
#[derive(Debug, Clone, Default)]
pub struct ServerEnd(Arc<std::sync::Mutex<Option<(String, u64)>>>);

impl ServerEnd {
    /// The last listed end, once listed.
    pub fn get(&self) -> Option<(String, u64)> {
        self.0.lock().ok().and_then(|g| g.clone())
    }

    fn set(&self, end: (String, u64)) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(end);
        }
    }

    /// Whether the server had written past `at` (file, offset) when it was last
    /// listed. Files compare by their number, so a source that has moved on to a file
    /// newer than the listing is not behind.
    pub fn is_ahead_of(&self, at: Option<&StreamAt>) -> bool {
        let (Some((end_file, end)), Some((file, pos))) = (self.get(), at) else {
            return false;
        };
        let index = crate::metrics::file_index;
        (index(&end_file), end) > (index(file), *pos)
    }
}

fn addr(cfg: &SourceConfig) -> String {
    format!("{}:{}", cfg.host, cfg.port)
}

fn opts(cfg: &SourceConfig) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(cfg.host.clone())
        .tcp_port(cfg.port)
        .user(Some(cfg.user.clone()))
        .pass(Some(cfg.password.expose().to_string()))
        .prefer_socket(false)
}

async fn connect(cfg: &SourceConfig) -> Result<Conn, SourceError> {
    let fut = Conn::new(opts(cfg));
    match tokio::time::timeout(cfg.connect_timeout, fut).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(source)) => Err(SourceError::Connect {
            addr: addr(cfg),
            source,
        }),
        Err(_) => Err(SourceError::Connect {
            addr: addr(cfg),
            source: mysql_async::Error::Other(
                format!("no answer within {:?}", cfg.connect_timeout).into(),
            ),
        }),
    }
}

/// The user tables `cfg` captures (its `include`/`exclude`), with their columns, read
/// from the server's `information_schema` on a plain connection.
pub async fn captured_tables(
    cfg: &SourceConfig,
) -> Result<Vec<(String, String, crate::binlog::schema::DictTable)>, SourceError> {
    let mut conn = connect(cfg).await?;
    let mut tables = super::dictionary::all_tables(&mut conn)
        .await
        .map_err(server_err("listing tables in information_schema"))?;
    tables.retain(|(db, t, _)| cfg.tables.captures(db, t));
    conn.disconnect().await.ok();
    Ok(tables)
}

fn server_err(context: &'static str) -> impl FnOnce(mysql_async::Error) -> SourceError {
    move |source| SourceError::Server { context, source }
}

async fn variable(conn: &mut Conn, name: &str) -> Result<Option<String>, SourceError> {
    let row: Option<(String, String)> = conn
        .exec_first("SHOW GLOBAL VARIABLES WHERE Variable_name = ?", (name,))
        .await
        .map_err(server_err("reading server variables"))?;
    Ok(row.map(|(_, v)| v))
}

/// Checks the server is set up for row-based capture and the user may replicate.
async fn check_server(
    conn: &mut Conn,
    cfg: &SourceConfig,
) -> Result<(Flavor, ChecksumAlg), SourceError> {
    let version = variable(conn, "version").await?.unwrap_or_default();
    let flavor = if version.contains("MariaDB") {
        Flavor::Mariadb
    } else {
        Flavor::Mysql
    };
    let need = |name: &'static str, value: Option<String>, ok: &[&str], expected, hint| {
        let v = value.unwrap_or_else(|| "unset".into());
        if ok.iter().any(|o| v.eq_ignore_ascii_case(o)) {
            Ok(())
        } else {
            Err(SourceError::ServerSetting {
                name,
                value: v,
                expected,
                hint,
            })
        }
    };
    need(
        "log_bin",
        variable(conn, "log_bin").await?,
        &["ON", "1"],
        "ON",
        "start the server with --log-bin",
    )?;
    need(
        "binlog_format",
        variable(conn, "binlog_format").await?,
        &["ROW"],
        "ROW",
        "SET GLOBAL binlog_format=ROW and set it in the server's config",
    )?;
    need(
        "binlog_row_image",
        variable(conn, "binlog_row_image").await?,
        &["FULL"],
        "FULL",
        "SET GLOBAL binlog_row_image=FULL: other images leave columns out of events",
    )?;
    let checksum = match variable(conn, "binlog_checksum").await?.as_deref() {
        Some(v) if v.eq_ignore_ascii_case("CRC32") => ChecksumAlg::Crc32,
        _ => ChecksumAlg::None,
    };
    if let Some(meta) = variable(conn, "binlog_row_metadata").await?
        && !meta.eq_ignore_ascii_case("FULL")
    {
        tracing::warn!(
            message = "binlog_row_metadata is not FULL; column names come from information_schema, which is wrong for events written before a later schema change.",
            binlog_row_metadata = %meta,
        );
    }
    let server_id: Option<String> = variable(conn, "server_id").await?;
    if server_id.as_deref() == Some(cfg.server_id.to_string().as_str()) {
        return Err(SourceError::ServerIdConflict {
            server_id: cfg.server_id,
            detail: "it is the server's own server_id".into(),
        });
    }
    // REPLICATION CLIENT (BINLOG MONITOR on MariaDB): needed for SHOW MASTER STATUS.
    if let Err(e) = conn.query_drop("SHOW MASTER STATUS").await {
        return Err(SourceError::Privileges {
            user: cfg.user.clone(),
            detail: format!(
                "SHOW MASTER STATUS failed ({e}); grant REPLICATION CLIENT (BINLOG MONITOR on MariaDB)"
            ),
        });
    }
    let grants: Vec<String> = conn
        .query("SHOW GRANTS")
        .await
        .map_err(server_err("reading grants"))?;
    let all = grants.join(" ").to_ascii_uppercase();
    if !(all.contains("REPLICATION SLAVE") || all.contains("ALL PRIVILEGES")) {
        return Err(SourceError::Privileges {
            user: cfg.user.clone(),
            detail: "REPLICATION SLAVE is not granted".into(),
        });
    }
    // Another registered replica with our id would lose its stream to us.
    let hosts_query = if flavor == Flavor::Mariadb {
        "SHOW SLAVE HOSTS"
    } else {
        "SHOW REPLICAS"
    };
    if let Ok(rows) = conn.query::<mysql_async::Row, _>(hosts_query).await {
        for row in rows {
            let id: Option<u32> = row.get_opt(0).and_then(Result::ok);
            if id == Some(cfg.server_id) {
                return Err(SourceError::ServerIdConflict {
                    server_id: cfg.server_id,
                    detail: format!("{hosts_query} lists it"),
                });
            }
        }
    }
    Ok((flavor, checksum))
}

/// Turns a start position into a concrete checkpoint.
async fn resolve_start(
    conn: &mut Conn,
    flavor: Flavor,
    start: &StartPosition,
) -> Result<Checkpoint, SourceError> {
    match start {
        StartPosition::FilePos { file, pos } => Ok(Checkpoint {
            file: Arc::from(file.as_str()),
            position: *pos,
            gtid: None,
        }),
        StartPosition::Gtid(g) => Ok(Checkpoint {
            file: Arc::from(""),
            position: 4,
            gtid: Some(g.clone()),
        }),
        StartPosition::Earliest => {
            let rows: Vec<mysql_async::Row> = conn
                .query("SHOW BINARY LOGS")
                .await
                .map_err(server_err("listing binary logs"))?;
            let first: Option<String> =
                rows.first().and_then(|r| r.get_opt(0)).and_then(Result::ok);
            let file = first.ok_or_else(|| SourceError::Position {
                position: "earliest".into(),
                detail: "the server lists no binary logs".into(),
            })?;
            Ok(Checkpoint {
                file: Arc::from(file.as_str()),
                position: 4,
                gtid: None,
            })
        }
        StartPosition::Latest => {
            let row: Option<mysql_async::Row> = conn
                .query_first("SHOW MASTER STATUS")
                .await
                .map_err(server_err("reading the binlog position"))?;
            let row = row.ok_or_else(|| SourceError::Position {
                position: "latest".into(),
                detail: "SHOW MASTER STATUS returned nothing (binary logging off?)".into(),
            })?;
            let file: Option<String> = row.get_opt(0).and_then(Result::ok);
            let pos: Option<u64> = row.get_opt(1).and_then(Result::ok);
            let gtid = match flavor {
                Flavor::Mariadb => {
                    let g: Option<String> = conn
                        .query_first("SELECT @@GLOBAL.gtid_binlog_pos")
                        .await
                        .map_err(server_err("reading gtid_binlog_pos"))?;
                    g.and_then(|g| GtidState::parse(&g).ok())
                }
                Flavor::Mysql => {
                    let g: Option<String> = row.get_opt(4).and_then(Result::ok);
                    g.filter(|g| !g.is_empty())
                        .and_then(|g| GtidState::parse(&g.replace('\n', "")).ok())
                }
            };
            Ok(Checkpoint {
                file: Arc::from(file.unwrap_or_default().as_str()),
                position: pos.unwrap_or(4),
                gtid,
            })
        }
    }
}

/// Sorts a driver error from the stream: transient (reconnect) or fatal.
fn classify(e: mysql_async::Error, cfg: &SourceConfig, resume: &Checkpoint) -> Failure {
    if let mysql_async::Error::Server(se) = &e {
        let msg = se.message.clone();
        return match se.code {
            4052 => Failure::Fatal(SourceError::ServerIdConflict {
                server_id: cfg.server_id,
                detail: format!("server error 4052: {msg}"),
            }),
            1236 if msg.contains("same server_uuid") || msg.contains("same server_id") => {
                Failure::Fatal(SourceError::ServerIdConflict {
                    server_id: cfg.server_id,
                    detail: format!("server error 1236: {msg}"),
                })
            }
            1236 => Failure::Fatal(SourceError::Position {
                position: resume.to_string(),
                detail: format!("server error 1236: {msg}"),
            }),
            1045 | 1227 | 1044 => Failure::Fatal(SourceError::Privileges {
                user: cfg.user.clone(),
                detail: format!("server error {}: {msg}", se.code),
            }),
            // Killed dump thread (1317 query interrupted, 1927 connection killed),
            // shutdown in progress (1053) and the like: reconnect.
            _ => Failure::Transient(format!("server error {}: {msg}", se.code)),
        };
    }
    Failure::Transient(e.to_string())
}

/// Binlog bytes the server has written after `at`: the rest of `at`'s file plus every
/// later file. `None` when `at`'s file is no longer listed (purged, or a GTID-only
/// position before the first event).
#[must_use]
pub fn bytes_behind(logs: &[(String, u64)], at: &Checkpoint) -> Option<u64> {
    let i = logs.iter().position(|(f, _)| **f == *at.file)?;
    let rest = logs[i].1.saturating_sub(at.position);
    Some(rest + logs[i + 1..].iter().map(|(_, n)| n).sum::<u64>())
}

/// Every `period`, lists the server's binary logs on a side connection, records their
/// end in `end` and publishes how many bytes the stream (`received`) trails them by,
/// until `cancel`. Failures are logged once and retried; they never stop replication.
pub async fn probe_lag(
    cfg: SourceConfig,
    period: Duration,
    received: Received,
    end: ServerEnd,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut conn: Option<Conn> = None;
    let mut warned = false;
    let mut catchup = super::catchup::CatchUp::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let Some((file, position)) = received.get() else {
            continue;
        };
        if conn.is_none() {
            conn = connect(&cfg).await.ok();
        }
        let Some(c) = conn.as_mut() else { continue };
        // MySQL 8 adds an `Encrypted` column: read the first two by position.
        match c.query::<mysql_async::Row, _>("SHOW BINARY LOGS").await {
            Ok(rows) => {
                let logs: Vec<(String, u64)> = rows
                    .iter()
                    .filter_map(|r| Some((r.get_opt(0)?.ok()?, r.get_opt(1)?.ok()?)))
                    .collect();
                if let Some(last) = logs.last() {
                    end.set(last.clone());
                }
                let at = Checkpoint {
                    file,
                    position,
                    gtid: None,
                };
                if let Some(n) = bytes_behind(&logs, &at) {
                    crate::metrics::global().source_lag_bytes.set(n as i64);
                    if let Some(r) = catchup.observe(n, std::time::Instant::now()) {
                        super::catchup::log(&r, &format!("{}:{}", at.file, at.position));
                    }
                }
            }
            Err(e) => {
                if !warned {
                    tracing::warn!(
                        message = "Cannot list binary logs to measure lag in bytes (needs BINLOG MONITOR or REPLICATION CLIENT).",
                        error = %e,
                    );
                    warned = true;
                }
                conn = None;
            }
        }
    }
}

impl Drop for BinlogSource {
    fn drop(&mut self) {
        crate::metrics::global().source_connected.set(0);
    }
}

impl BinlogSource {
    /// Connects, checks the server and opens the stream at `resume` (a checkpoint) or at
    /// the configured start position.
    pub async fn connect(
        cfg: SourceConfig,
        resume: Option<Checkpoint>,
    ) -> Result<Self, SourceError> {
        let mut conn = connect(&cfg).await?;
        let (flavor, checksum) = check_server(&mut conn, &cfg).await?;
        let resume = match resume {
            Some(c) => c,
            None => resolve_start(&mut conn, flavor, &cfg.start).await?,
        };
        let decoder = Decoder::new(
            &resume.file,
            DecoderOptions {
                tz_offset_secs: cfg.tz_offset_secs,
            },
        )
        .with_initial_checksum(checksum)
        .with_gtid_state(resume.gtid.clone());
        let backoff = cfg.min_backoff;
        let mut src = BinlogSource {
            cfg,
            flavor,
            checksum,
            decoder,
            stream: None,
            meta: Some(conn),
            resume,
            emitted_in_txn: None,
            begun: false,
            replaying: false,
            pending: VecDeque::new(),
            scratch: Vec::new(),
            raw: Vec::with_capacity(64 * 1024),
            stats: SourceStats::default(),
            backoff,
            last_rx: Instant::now(),
            received: Received::default(),
        };
        // The server answers a bad position only when the stream is read: read its first
        // event (the fake ROTATE) so such errors surface here, at startup.
        let opened = match src.open_stream().await {
            Ok(()) => src.pump().await,
            Err(e) => Err(e),
        };
        match opened {
            Ok(()) => {
                crate::metrics::global().source_connected.set(1);
                // The stream stands at its start until an event says otherwise, so the
                // lag probe measures a backlog the agent has not read anything of yet
                // (a fresh start from `earliest`, a start while paused).
                if src.received.get().is_none() {
                    let file = src.resume.file.clone();
                    src.received.set(&file, src.resume.position);
                }
                Ok(src)
            }
            Err(Failure::Fatal(e)) => Err(e),
            Err(Failure::Transient(detail)) => Err(SourceError::Position {
                position: src.resume.to_string(),
                detail,
            }),
        }
    }

    /// Server family.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The last transaction boundary handed out (where a restart should resume).
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.resume
    }

    /// Where the stream is (see [`Received`]); the handle stays valid as it moves.
    pub fn received(&self) -> Received {
        self.received.clone()
    }

    /// Counters.
    pub fn stats(&self) -> SourceStats {
        self.stats
    }

    async fn open_stream(&mut self) -> Result<(), Failure> {
        // A server that is restarting refuses connections for a while: that is a reason
        // to retry, not to stop; a refusal by the server (privileges) is not.
        let mut conn = connect(&self.cfg).await.map_err(|e| match e {
            SourceError::Connect { source, .. } => classify(source, &self.cfg, &self.resume),
            other => Failure::Fatal(other),
        })?;
        let hb_ns = self.cfg.heartbeat.as_nanos().min(u128::from(u64::MAX)) as u64;
        conn.query_drop(format!("SET @master_heartbeat_period = {hb_ns}"))
            .await
            .map_err(|e| classify(e, &self.cfg, &self.resume))?;
        let use_gtid = self.flavor == Flavor::Mariadb
            && matches!(self.resume.gtid, Some(GtidState::Mariadb(_)));
        if self.flavor == Flavor::Mariadb {
            // Capability 4 (GTID): without it MariaDB rewrites its GTID events into
            // fake BEGIN queries for old replicas.
            conn.query_drop("SET @mariadb_slave_capability = 4")
                .await
                .map_err(|e| classify(e, &self.cfg, &self.resume))?;
            if use_gtid && let Some(g) = &self.resume.gtid {
                conn.exec_drop("SET @slave_connect_state = ?", (g.to_string(),))
                    .await
                    .map_err(|e| classify(e, &self.cfg, &self.resume))?;
                conn.query_drop(
                    "SET @slave_gtid_strict_mode = 0, @slave_gtid_ignore_duplicates = 0",
                )
                .await
                .map_err(|e| classify(e, &self.cfg, &self.resume))?;
            }
        }
        let file = self.resume.file.to_string();
        let mut req = BinlogStreamRequest::new(self.cfg.server_id);
        let mysql_gtid = match (&self.flavor, &self.resume.gtid) {
            (Flavor::Mysql, Some(GtidState::Mysql(set))) if self.resume.file.is_empty() => {
                Some(set.clone())
            }
            _ => None,
        };
        let sids;
        if use_gtid {
            req = req.with_filename(b"").with_pos(4u64);
        } else if let Some(set) = &mysql_gtid {
            sids = mysql_sids(set);
            req = req.with_gtid().with_gtid_set(sids.iter().cloned());
        } else {
            req = req
                .with_filename(file.as_bytes())
                .with_pos(self.resume.position);
        }
        let stream = conn
            .get_binlog_stream(req)
            .await
            .map_err(|e| classify(e, &self.cfg, &self.resume))?;
        self.stream = Some(stream);
        let mut decoder = Decoder::new(
            &self.resume.file,
            DecoderOptions {
                tz_offset_secs: self.cfg.tz_offset_secs,
            },
        )
        .with_initial_checksum(self.checksum)
        .with_gtid_state(self.resume.gtid.clone());
        if !self.cfg.tables.is_all() {
            let tables = self.cfg.tables.clone();
            decoder = decoder
                .with_table_filter(Arc::new(move |db: &str, t: &str| tables.captures(db, t)));
        }
        self.decoder = decoder;
        self.last_rx = Instant::now();
        Ok(())
    }

    /// The next item. Reconnects on transient failures; returns an error only for
    /// failures a retry cannot fix.
    pub async fn next(&mut self) -> Result<SourceItem, SourceError> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                self.note_emitted(&item);
                return Ok(item);
            }
            match self.pump().await {
                Ok(()) => {}
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient(why)) => self.reconnect(why).await?,
            }
        }
    }

    fn note_emitted(&mut self, item: &SourceItem) {
        match item {
            SourceItem::Begin(_) => self.begun = true,
            SourceItem::Change(ev) => {
                self.emitted_in_txn = Some((
                    ev.position.file.clone(),
                    ev.position.offset,
                    ev.position.sub,
                ));
            }
            SourceItem::Commit { checkpoint, .. } => {
                self.resume = checkpoint.clone();
                self.emitted_in_txn = None;
                self.begun = false;
            }
        }
    }

    async fn reconnect(&mut self, why: String) -> Result<(), SourceError> {
        if let Some(s) = self.stream.take() {
            // Closing may block on a dead socket; the drop is enough.
            drop(s);
        }
        self.pending.clear();
        crate::metrics::global().source_connected.set(0);
        self.replaying = self.begun;
        if self.begun {
            self.stats.resumed_mid_transaction += 1;
        }
        loop {
            tracing::warn!(
                message = "Binlog stream lost; reconnecting.",
                reason = %why,
                resume = %self.resume,
                backoff_ms = self.backoff.as_millis() as u64,
            );
            tokio::time::sleep(self.backoff).await;
            self.backoff = (self.backoff * 2).min(self.cfg.max_backoff);
            match self.open_stream().await {
                Ok(()) => {
                    self.stats.reconnects += 1;
                    crate::metrics::global().source_reconnects.inc();
                    crate::metrics::global().source_connected.set(1);
                    return Ok(());
                }
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Transient(w)) => {
                    tracing::warn!(message = "Reconnect failed.", reason = %w);
                }
            }
        }
    }

    /// Reads one event from the stream and queues what it decodes to.
    async fn pump(&mut self) -> Result<(), Failure> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(Failure::Transient("no stream".into()));
        };
        // mysql_common's event parser indexes past short packets instead of returning an
        // error; a panic there must become an error that names the position, not a crash.
        let read = std::panic::AssertUnwindSafe(stream.next()).catch_unwind();
        let next = match tokio::time::timeout(self.cfg.read_timeout, read).await {
            Ok(Err(_panic)) => {
                return Err(Failure::Fatal(SourceError::Malformed {
                    after: self.resume.to_string(),
                }));
            }
            Ok(Ok(v)) => Ok(v),
            Err(e) => Err(e),
        };
        let ev = match next {
            Err(_) => {
                return Err(Failure::Transient(format!(
                    "nothing received for {:?} (heartbeat every {:?})",
                    self.cfg.read_timeout, self.cfg.heartbeat
                )));
            }
            Ok(None) => return Err(Failure::Transient("server closed the stream".into())),
            Ok(Some(Err(e))) => return Err(classify(e, &self.cfg, &self.resume)),
            Ok(Some(Ok(ev))) => ev,
        };
        self.last_rx = Instant::now();
        raw_event(&ev, &mut self.raw);
        let h = ev.header();
        self.stats.events += 1;
        self.stats.bytes += self.raw.len() as u64;
        let m = crate::metrics::global();
        m.source_events.inc();
        m.source_bytes.inc_by(self.raw.len() as u64);
        let etype = h.event_type_raw();
        if etype == event_type::HEARTBEAT || etype == event_type::HEARTBEAT_V2 {
            self.stats.heartbeats += 1;
            m.source_heartbeats.inc();
            self.backoff = self.cfg.min_backoff;
            return Ok(());
        }
        let offset = u64::from(h.log_pos()).saturating_sub(u64::from(h.event_size()));
        if h.log_pos() > 0 {
            // A rotate names the next file; the decoder switches to it as it decodes
            // the event, below, and the next event's end is recorded in it.
            self.received
                .set(self.decoder.file(), u64::from(h.log_pos()));
        }
        if let Some((db, table)) = self.decoder.peek_table_map(&self.raw)
            && !self.decoder.has_dictionary(&db, &table)
            && self.decoder.captures(&db, &table)
        {
            self.load_dictionary(&db, &table).await?;
        }
        self.scratch.clear();
        let location = Location {
            file: self.decoder.file().to_string(),
            offset,
            event_type: Some(event_type::name(etype)),
        };
        if self.raw.len() != h.event_size() as usize {
            return Err(Failure::Fatal(SourceError::Decode(BinlogError::Event {
                location,
                error: crate::binlog::DecodeError::Truncated {
                    what: "event from the stream",
                    at: self.raw.len(),
                    needed: h.event_size() as usize,
                    available: self.raw.len(),
                },
            })));
        }
        self.decoder
            .decode(&self.raw, offset, &mut self.scratch)
            .map_err(|error| {
                Failure::Fatal(SourceError::Decode(BinlogError::Event { location, error }))
            })?;
        for item in self.scratch.drain(..) {
            if self.replaying {
                match &item {
                    SourceItem::Begin(_) => continue,
                    SourceItem::Change(ev) => {
                        let key = (
                            ev.position.file.clone(),
                            ev.position.offset,
                            ev.position.sub,
                        );
                        if let Some(last) = &self.emitted_in_txn
                            && key.0 == last.0
                            && (key.1, key.2) <= (last.1, last.2)
                        {
                            continue;
                        }
                        self.replaying = false;
                    }
                    SourceItem::Commit { .. } => self.replaying = false,
                }
            }
            self.pending.push_back(item);
        }
        self.backoff = self.cfg.min_backoff;
        Ok(())
    }

    async fn load_dictionary(&mut self, db: &str, table: &str) -> Result<(), Failure> {
        if self.meta.is_none() {
            self.meta = Some(
                connect(&self.cfg)
                    .await
                    .map_err(|e| Failure::Transient(e.to_string()))?,
            );
        }
        let Some(conn) = self.meta.as_mut() else {
            return Ok(());
        };
        match dictionary::fetch(conn, db, table).await {
            Ok(Some(d)) => self.decoder.set_dictionary(db, table, Arc::new(d)),
            // Dropped since: only binlog metadata remains.
            Ok(None) => self.decoder.set_dictionary(
                db,
                table,
                Arc::new(crate::binlog::schema::DictTable {
                    columns: Vec::new(),
                }),
            ),
            Err(e) => {
                self.meta = None;
                return Err(Failure::Transient(format!(
                    "reading information_schema: {e}"
                )));
            }
        }
        Ok(())
    }
}

/// Rebuilds an event's bytes as the server sent them (mysql_common splits off the
/// checksum and, for a FORMAT_DESCRIPTION, the algorithm byte).
fn raw_event(ev: &mysql_async::binlog::events::Event, out: &mut Vec<u8>) {
    let h = ev.header();
    out.clear();
    out.extend_from_slice(&h.timestamp().to_le_bytes());
    out.push(h.event_type_raw());
    out.extend_from_slice(&h.server_id().to_le_bytes());
    out.extend_from_slice(&h.event_size().to_le_bytes());
    out.extend_from_slice(&h.log_pos().to_le_bytes());
    out.extend_from_slice(&h.flags_raw().to_le_bytes());
    out.extend_from_slice(ev.data());
    if h.event_type_raw() == event_type::FORMAT_DESCRIPTION
        && let Ok(Some(alg)) = ev.footer().get_checksum_alg()
    {
        out.push(alg as u8);
    }
    if let Some(c) = ev.checksum() {
        out.extend_from_slice(&c);
    }
}

fn mysql_sids(set: &crate::gtid::MysqlGtidSet) -> Vec<mysql_async::Sid<'static>> {
    set.iter()
        .filter(|(_, tag, _)| tag.is_empty())
        .map(|(uuid, _, list)| {
            let mut sid = mysql_async::Sid::new(uuid.0);
            for &(a, b) in list {
                if let Ok(gno) = mysql_async::GnoInterval::check_and_new(a, b) {
                    sid = sid.with_interval(gno);
                }
            }
            sid
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_behind_spans_files() {
        let logs = vec![
            ("b.000001".to_string(), 1000),
            ("b.000002".to_string(), 500),
            ("b.000003".to_string(), 300),
        ];
        let at = |f: &str, p: u64| Checkpoint {
            file: Arc::from(f),
            position: p,
            gtid: None,
        };
        assert_eq!(bytes_behind(&logs, &at("b.000002", 200)), Some(300 + 300));
        assert_eq!(bytes_behind(&logs, &at("b.000003", 300)), Some(0));
        assert_eq!(bytes_behind(&logs, &at("b.000000", 4)), None);
    }
}
