//! Commit-to-delivery latency at a steady write rate: writes `--rate` rows/s to MariaDB
//! in autocommit transactions of `--txn-rows` rows while a running `sluice run` publishes
//! them to Kafka, consumes the topic in the same process, and reports per transaction
//! the time from its COMMIT returning to the writer until its last row is consumed
//! (an upper bound of commit-to-acknowledgement: it adds the consumer's fetch). With
//! `--metrics`, also the agent's own `sluice_delivery_seconds` histogram (transaction
//! read → broker acknowledgement of its last message) over the same window. The
//! `--direct` baseline reports its own exact equivalent: first row queued → last row
//! acknowledged, from its delivery reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use mysql_async::prelude::Queryable;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

static START: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

fn ns(t: Instant) -> u64 {
    t.duration_since(*START).as_nanos() as u64
}

struct Args {
    port: u16,
    user: String,
    password: String,
    brokers: String,
    topic: String,
    partitions: i32,
    rate: u64,
    txn_rows: u64,
    seconds: u64,
    warmup: u64,
    metrics: Option<String>,
    /// Baseline: produce the rows straight to Kafka (same producer settings as the
    /// agent) instead of writing them to MariaDB.
    direct: bool,
    /// With `--direct`: also write each transaction to MariaDB first, as the agent runs
    /// do, so the baseline shares the two cores with the same database load.
    db_load: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        port: 13306,
        user: std::env::var("SLUICE_MYSQL_ADMIN_USER").unwrap_or_else(|_| "root".into()),
        password: std::env::var("SLUICE_MYSQL_ADMIN_PASSWORD").unwrap_or_default(),
        brokers: "127.0.0.1:19092".into(),
        topic: "bench.lat".into(),
        partitions: 12,
        rate: 10_000,
        txn_rows: 50,
        seconds: 20,
        warmup: 3,
        metrics: None,
        direct: false,
        db_load: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        // Flags take no value.
        match k.as_str() {
            "--direct" => {
                a.direct = true;
                continue;
            }
            "--db-load" => {
                a.db_load = true;
                continue;
            }
            _ => {}
        }
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--port" => a.port = v.parse()?,
            "--brokers" => a.brokers = v,
            "--topic" => a.topic = v,
            "--partitions" => a.partitions = v.parse()?,
            "--rate" => a.rate = v.parse()?,
            "--txn-rows" => a.txn_rows = v.parse()?,
            "--seconds" => a.seconds = v.parse()?,
            "--warmup" => a.warmup = v.parse()?,
            "--metrics" => a.metrics = Some(v),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

/// Cumulative `sluice_delivery_seconds` buckets: (upper bound, count).
fn delivery_buckets(url: &str) -> anyhow::Result<Vec<(f64, f64)>> {
    let text = ureq::get(url)
        .call()
        .context("scraping the agent")?
        .into_body()
        .read_to_string()?;
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("sluice_delivery_seconds_bucket{le=\"") else {
            continue;
        };
        let Some((le, count)) = rest.split_once("\"} ") else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse()?
        };
        out.push((le, count.trim().parse()?));
    }
    Ok(out)
}

/// `histogram_quantile` as Prometheus computes it (linear within a bucket).
fn bucket_quantile(q: f64, b: &[(f64, f64)]) -> f64 {
    let Some(total) = b.last().map(|x| x.1) else {
        return f64::NAN;
    };
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, c) in b {
        if c >= rank {
            if le.is_infinite() {
                return prev.0;
            }
            let within = if c > prev.1 {
                (rank - prev.1) / (c - prev.1)
            } else {
                0.0
            };
            return prev.0 + (le - prev.0) * within;
        }
        prev = (le, c);
    }
    prev.0
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let txns = (a.rate * (a.seconds + a.warmup) / a.txn_rows + 10) as usize;
    let _ = *START;
    // Per transaction: commit time, rows consumed, time the last row was consumed.
    let committed: Arc<Vec<AtomicU64>> = Arc::new((0..txns).map(|_| AtomicU64::new(0)).collect());
    let consumed: Arc<Vec<AtomicU32>> = Arc::new((0..txns).map(|_| AtomicU32::new(0)).collect());
    let done: Arc<Vec<AtomicU64>> = Arc::new((0..txns).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .set("group.id", "sluice-latency")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .set("fetch.min.bytes", "1")
        .create()
        .context("consumer")?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..a.partitions {
        tpl.add_partition_offset(&a.topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let reader = {
        let (consumed, done, stop) = (consumed.clone(), done.clone(), stop.clone());
        let txn_rows = a.txn_rows;
        std::thread::spawn(move || {
            let count = |id: u64| {
                let t = (id / txn_rows) as usize;
                if t < consumed.len()
                    && consumed[t].fetch_add(1, Ordering::Relaxed) + 1 == txn_rows as u32
                {
                    done[t].store(ns(Instant::now()), Ordering::Relaxed);
                }
            };
            while !stop.load(Ordering::Relaxed) {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) else {
                    continue;
                };
                let v: serde_json::Value =
                    serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_default();
                let msgs = match v {
                    serde_json::Value::Array(items) => items,
                    other => vec![other],
                };
                for fm in msgs {
                    for row in fm["data"].as_array().map(Vec::as_slice).unwrap_or_default() {
                        if let Some(id) = row["id"].as_str().and_then(|s| s.parse().ok()) {
                            count(id);
                        }
                    }
                }
            }
        })
    };

    if a.direct {
        return direct(&a, committed, done, stop, reader).await;
    }
    let mut db = connect(&a).await?;
    let (mut tick, total, warm) = schedule(&a);
    let mut metrics_from = None;
    let write_start = Instant::now();
    let mut sql = String::new();
    for t in 0..total {
        tick.tick().await;
        if t == warm
            && let Some(url) = &a.metrics
        {
            metrics_from = delivery_buckets(url).ok();
        }
        insert(&mut db, &mut sql, &a, t).await?;
        committed[t].store(ns(Instant::now()), Ordering::Relaxed);
    }
    let wrote = write_start.elapsed();
    let (lat, missing) = collect(warm..total, &committed, &done, &stop, reader).await;
    report(
        &a,
        &lat,
        missing,
        total,
        wrote,
        Acked::Agent(a.metrics.clone(), metrics_from),
    );
    Ok(())
}

/// A connection to the benchmark database, its table emptied.
async fn connect(a: &Args) -> anyhow::Result<mysql_async::Conn> {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(a.port)
        .user(Some(a.user.clone()))
        .pass(Some(a.password.clone()));
    let mut db = mysql_async::Conn::new(opts).await.context("connecting")?;
    db.query_drop("TRUNCATE TABLE bench.lat").await?;
    Ok(db)
}

/// Transaction `t`: one autocommit INSERT of `txn_rows` rows.
async fn insert(
    db: &mut mysql_async::Conn,
    sql: &mut String,
    a: &Args,
    t: usize,
) -> anyhow::Result<()> {
    use std::fmt::Write;
    sql.clear();
    sql.push_str("INSERT INTO bench.lat VALUES ");
    for i in 0..a.txn_rows {
        let id = t as u64 * a.txn_rows + i;
        if i > 0 {
            sql.push(',');
        }
        let _ = write!(sql, "({id},{t},'padding-padding-padding-padding-{id}')");
    }
    db.query_drop(sql.as_str()).await?;
    Ok(())
}

/// The write pacing: a ticker at one transaction per period, the number of
/// transactions, and how many of them are warm-up.
fn schedule(a: &Args) -> (tokio::time::Interval, usize, usize) {
    let period = Duration::from_nanos(1_000_000_000 * a.txn_rows / a.rate);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let total = (a.rate * (a.seconds + a.warmup) / a.txn_rows) as usize;
    let warm = (a.rate * a.warmup / a.txn_rows) as usize;
    (tick, total, warm)
}

/// Waits (at most 30 s) for the measured transactions' last rows, stops the reader and
/// returns their latencies in ms and how many never arrived.
async fn collect(
    measured: std::ops::Range<usize>,
    committed: &[AtomicU64],
    done: &[AtomicU64],
    stop: &AtomicBool,
    reader: std::thread::JoinHandle<()>,
) -> (Vec<f64>, usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while measured
        .clone()
        .any(|t| done[t].load(Ordering::Relaxed) == 0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let mut lat = Vec::new();
    let mut missing = 0;
    for t in measured {
        match done[t].load(Ordering::Relaxed) {
            0 => missing += 1,
            d => lat.push(d.saturating_sub(committed[t].load(Ordering::Relaxed)) as f64 / 1e6),
        }
    }
    (lat, missing)
}

/// The acknowledgement side of a run: the agent's histogram between two scrapes, or
/// the baseline producer's own per-transaction ack latencies (ms).
enum Acked {
    Agent(Option<String>, Option<Vec<(f64, f64)>>),
    Direct(Vec<f64>),
}

fn report(a: &Args, lat: &[f64], missing: usize, total: usize, wrote: Duration, acked: Acked) {
    let mut lat = lat.to_vec();
    lat.sort_by(f64::total_cmp);
    let rows_per_s = (total as u64 * a.txn_rows) as f64 / wrote.as_secs_f64();
    // name rate p50 p90 p99 max missing agent_p50 agent_p99
    let (mut ap50, mut ap99) = (f64::NAN, f64::NAN);
    match acked {
        Acked::Agent(Some(url), Some(from)) => {
            if let Ok(to) = delivery_buckets(&url) {
                let diff: Vec<(f64, f64)> = to
                    .iter()
                    .zip(&from)
                    .map(|(t, f)| (t.0, t.1 - f.1))
                    .collect();
                ap50 = bucket_quantile(0.5, &diff) * 1000.0;
                ap99 = bucket_quantile(0.99, &diff) * 1000.0;
            }
        }
        Acked::Agent(..) => {}
        Acked::Direct(mut v) => {
            v.sort_by(f64::total_cmp);
            ap50 = pct(&v, 0.5);
            ap99 = pct(&v, 0.99);
        }
    }
    println!(
        "{:.0} {:.2} {:.2} {:.2} {:.2} {} {:.2} {:.2} {}",
        rows_per_s,
        pct(&lat, 0.5),
        pct(&lat, 0.9),
        pct(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN),
        missing,
        ap50,
        ap99,
        lat.len()
    );
}

/// The baseline: the same rows as FlatMessage-shaped JSON produced straight to Kafka
/// by an idempotent, `acks=all` producer with the agent's linger, one message per row
/// keyed by its id; "committed" is when the transaction's first row was queued. With
/// `--db-load` each transaction is first committed to MariaDB (not read back by
/// anything), so the floor is measured beside the same database load as the agent runs.
async fn direct(
    a: &Args,
    committed: Arc<Vec<AtomicU64>>,
    done: Arc<Vec<AtomicU64>>,
    stop: Arc<AtomicBool>,
    reader: std::thread::JoinHandle<()>,
) -> anyhow::Result<()> {
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    let txns = committed.len();
    let ctx = AckTimes {
        queued: (0..txns).map(|_| AtomicU64::new(0)).collect(),
        acked: (0..txns).map(|_| AtomicU32::new(0)).collect(),
        done: (0..txns).map(|_| AtomicU64::new(0)).collect(),
        rows: a.txn_rows as u32,
    };
    let producer: ThreadedProducer<AckTimes> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "linger.ms",
            std::env::var("LINGER_MS").unwrap_or_else(|_| "5".into()),
        )
        .set("partitioner", "murmur2_random")
        .create_with_context(ctx)
        .context("producer")?;
    let mut db = if a.db_load {
        Some(connect(a).await?)
    } else {
        None
    };
    let mut sql = String::new();
    let (mut tick, total, warm) = schedule(a);
    let write_start = Instant::now();
    for t in 0..total {
        tick.tick().await;
        if let Some(db) = &mut db {
            insert(db, &mut sql, a, t).await?;
        }
        producer.context().queued[t].store(ns(Instant::now()), Ordering::Relaxed);
        // One message per row keyed by its id: the agent's message count and spread
        // without a module.
        for i in 0..a.txn_rows {
            let id = t as u64 * a.txn_rows + i;
            let row = serde_json::json!({"id": id.to_string(), "txn": t.to_string(), "pad": format!("padding-padding-padding-padding-{id}")});
            let body = serde_json::json!({"database": "bench", "table": "lat", "type": "INSERT", "data": [row]}).to_string();
            let key = id.to_string();
            let mut rec = BaseRecord::with_opaque_to(&a.topic, t)
                .payload(&body)
                .key(&key);
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        rec = r;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        }
        committed[t].store(ns(Instant::now()), Ordering::Relaxed);
    }
    let wrote = write_start.elapsed();
    let _ = producer.flush(Duration::from_secs(30));
    let (lat, missing) = collect(warm..total, &committed, &done, &stop, reader).await;
    let c = producer.context();
    let acks = (warm..total)
        .filter_map(|t| {
            let d = c.done[t].load(Ordering::Relaxed);
            (d > 0).then(|| d.saturating_sub(c.queued[t].load(Ordering::Relaxed)) as f64 / 1e6)
        })
        .collect();
    report(a, &lat, missing, total, wrote, Acked::Direct(acks));
    Ok(())
}

/// The baseline producer's delivery reports: per transaction, when its first row was
/// queued and when its last row was acknowledged.
struct AckTimes {
    queued: Vec<AtomicU64>,
    acked: Vec<AtomicU32>,
    done: Vec<AtomicU64>,
    rows: u32,
}

impl rdkafka::ClientContext for AckTimes {}

impl rdkafka::producer::ProducerContext for AckTimes {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, t: usize) {
        if result.is_ok()
            && t < self.acked.len()
            && self.acked[t].fetch_add(1, Ordering::Relaxed) + 1 == self.rows
        {
            self.done[t].store(ns(Instant::now()), Ordering::Relaxed);
        }
    }
}
