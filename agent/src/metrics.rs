//! Process-wide Prometheus metrics: one registry, created on first use, updated by the
//! source, the routers, the sink and the pipeline, and encoded by `/metrics`.
//!
//! Invariants: hot paths hold cloned handles (an `Arc` around atomics) and never build
//! label sets per row; labelled series are looked up once per table, module version or
//! failure kind and cached by the caller. Metric names carry their unit (`_seconds`,
//! `_bytes`) and counters end in `_total` in the exposition.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a per-table series: database, table, kind (`INSERT`, `UPDATE`, ...).
pub type TableLabels = [(&'static str, String); 3];
/// Labels of a per-module-version series.
pub type ModuleLabels = [(&'static str, String); 2];
/// Labels of a per-module-version series with one more dimension (kind or action).
pub type ModuleKindLabels = [(&'static str, String); 3];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs .. ~52 s: module calls sit at the low end, delivery at the high end.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 21))
}

fn delivery_histogram() -> Histogram {
    // Fine steps up to 50 ms, where delivery SLOs sit (p99 of tens of milliseconds), so a
    // quantile read off the buckets is not an interpolation across a doubling; coarse
    // steps above for outages.
    Histogram::new([
        0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03,
        0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

/// Every metric Sluice exports.
pub struct Metrics {
    registry: Registry,
    /// 1 while the binlog stream is connected.
    pub source_connected: Gauge,
    /// Binlog events received (including heartbeats).
    pub source_events: Counter,
    /// Binlog bytes received.
    pub source_bytes: Counter,
    /// Reconnections of the binlog stream.
    pub source_reconnects: Counter,
    /// Heartbeats received.
    pub source_heartbeats: Counter,
    /// Numeric suffix of the binlog file of the last transaction read (`mysql-bin.000042`: 42).
    pub source_file_index: Gauge,
    /// Offset in that file after the last transaction read.
    pub source_offset: Gauge,
    /// Seconds between the server's commit and the agent reading it, at the last commit.
    pub source_lag_seconds: Gauge<f64, AtomicU64>,
    /// Bytes of binlog written by the server and not yet read (probed periodically).
    pub source_lag_bytes: Gauge,
    /// Row changes read, by table and kind.
    pub rows: Family<TableLabels, Counter>,
    /// Bytes of decoded row values read, by table and kind.
    pub row_bytes: Family<TableLabels, Counter>,
    /// Transactions read.
    pub transactions: Counter,
    /// Events given to each module version.
    pub module_events: Family<ModuleLabels, Counter>,
    /// Destinations produced by each module version.
    pub module_routed: Family<ModuleLabels, Counter>,
    /// Events each module version dropped.
    pub module_dropped: Family<ModuleLabels, Counter>,
    /// Module failures by kind (trap, timeout, memory, output, topic, ...).
    pub module_failures: Family<ModuleKindLabels, Counter>,
    /// Policy actions taken on failures (halt, skip, dead-letter).
    pub module_policy_actions: Family<ModuleKindLabels, Counter>,
    /// Module log lines dropped by the per-second rate limit.
    pub module_log_dropped: Family<ModuleLabels, Counter>,
    /// Module traps by trap code (unreachable, stack-overflow, out-of-bounds, ...).
    pub module_traps: Family<ModuleKindLabels, Counter>,
    /// 1 while a module version is quarantined by its circuit breaker.
    pub module_quarantined: Family<ModuleLabels, Gauge>,
    /// Times a module version's circuit breaker opened.
    pub module_quarantines: Family<ModuleLabels, Counter>,
    /// Duration of one module call (one batch, or one event of an isolation retry).
    pub module_call_seconds: HistogramFamily<[(&'static str, String); 1]>,
    /// Candidate outcomes (promoted, rejected, rolled-back) per module.
    pub module_swaps: Family<[(&'static str, String); 2], Counter>,
    /// Messages handed to the sink.
    pub messages_sent: Counter,
    /// Messages acknowledged by the sink (broker acks with `acks=all`, or flushed).
    pub messages_acked: Counter,
    /// Messages sent and not yet acknowledged.
    pub in_flight: Gauge,
    /// Seconds the pipeline stopped reading because the window of unacknowledged
    /// messages was full: time the sink (the broker) held the agent back.
    pub window_full_seconds: Counter<f64, AtomicU64>,
    /// Seconds the pipeline, with room in the window, waited for the binlog reader:
    /// time the source (server, network, decoding) held it back, or there was nothing
    /// to read.
    pub source_wait_seconds: Counter<f64, AtomicU64>,
    /// Time from reading a transaction's commit to the acknowledgement of its last message.
    pub delivery_seconds: Histogram,
    /// Pipeline restarts after a sink failure.
    pub restarts: Counter,
    /// Checkpoint file writes.
    pub checkpoint_writes: Counter,
    /// Unix time (ms) of the last checkpoint write.
    pub checkpoint_written_ms: Gauge<i64, AtomicI64>,
    /// Offset of the checkpointed position.
    pub checkpoint_offset: Gauge,
    /// 1 while an operator has paused reading.
    pub paused: Gauge,
    /// Canal TCP clients subscribed to a destination (`kind = "canal-server"`).
    pub canal_clients: Gauge,
    /// Entries queued for a Canal destination and not yet fetched.
    pub canal_pending: Family<DestinationLabels, Gauge>,
    /// Batches a Canal destination's client fetched and has not acknowledged.
    pub canal_outstanding: Family<DestinationLabels, Gauge>,
    /// Entries a Canal destination's client acknowledged.
    pub canal_acked: Family<DestinationLabels, Counter>,
    /// Canal connections refused or closed for an error, by reason (auth, protocol,
    /// ack, fetch, destination).
    pub canal_errors: Family<[(&'static str, String); 1], Counter>,
}

/// `destination` label.
pub type DestinationLabels = [(&'static str, String); 1];

impl Metrics {
    /// A registry with every metric registered (zeroed).
    pub fn new() -> Self {
        let mut r = Registry::default();
        let m = Metrics {
            source_connected: Gauge::default(),
            source_events: Counter::default(),
            source_bytes: Counter::default(),
            source_reconnects: Counter::default(),
            source_heartbeats: Counter::default(),
            source_file_index: Gauge::default(),
            source_offset: Gauge::default(),
            source_lag_seconds: Gauge::default(),
            source_lag_bytes: Gauge::default(),
            rows: Family::default(),
            row_bytes: Family::default(),
            transactions: Counter::default(),
            module_events: Family::default(),
            module_routed: Family::default(),
            module_dropped: Family::default(),
            module_failures: Family::default(),
            module_policy_actions: Family::default(),
            module_log_dropped: Family::default(),
            module_traps: Family::default(),
            module_quarantined: Family::default(),
            module_quarantines: Family::default(),
            module_call_seconds: Family::new_with_constructor(latency_histogram),
            module_swaps: Family::default(),
            messages_sent: Counter::default(),
            messages_acked: Counter::default(),
            in_flight: Gauge::default(),
            window_full_seconds: Counter::default(),
            source_wait_seconds: Counter::default(),
            delivery_seconds: delivery_histogram(),
            restarts: Counter::default(),
            checkpoint_writes: Counter::default(),
            checkpoint_written_ms: Gauge::default(),
            checkpoint_offset: Gauge::default(),
            paused: Gauge::default(),
            canal_clients: Gauge::default(),
            canal_pending: Family::default(),
            canal_outstanding: Family::default(),
            canal_acked: Family::default(),
            canal_errors: Family::default(),
            registry: Registry::default(),
        };
        macro_rules! reg {
            ($name:literal, $help:literal, $field:ident) => {
                r.register($name, $help, m.$field.clone());
            };
        }
        reg!(
            "sluice_source_connected",
            "1 while the binlog stream is connected",
            source_connected
        );
        reg!(
            "sluice_source_events",
            "Binlog events received, heartbeats included",
            source_events
        );
        reg!("sluice_source_bytes", "Binlog bytes received", source_bytes);
        reg!(
            "sluice_source_reconnects",
            "Reconnections of the binlog stream",
            source_reconnects
        );
        reg!(
            "sluice_source_heartbeats",
            "Heartbeat events received",
            source_heartbeats
        );
        reg!(
            "sluice_source_binlog_file_index",
            "Numeric suffix of the binlog file of the last transaction read",
            source_file_index
        );
        reg!(
            "sluice_source_binlog_offset",
            "Offset in that file after the last transaction read",
            source_offset
        );
        reg!(
            "sluice_source_lag_seconds",
            "Seconds between the server's commit and the agent reading it, at the last commit read",
            source_lag_seconds
        );
        reg!(
            "sluice_source_lag_bytes",
            "Binlog bytes the server has written and the agent has not read yet (probed every few seconds; -1 until measured)",
            source_lag_bytes
        );
        reg!("sluice_rows", "Row changes read, by table and kind", rows);
        reg!(
            "sluice_row_bytes",
            "Bytes of decoded row values read, by table and kind",
            row_bytes
        );
        reg!("sluice_transactions", "Transactions read", transactions);
        reg!(
            "sluice_module_events",
            "Events given to a module version",
            module_events
        );
        reg!(
            "sluice_module_routed",
            "Destinations decided by a module version",
            module_routed
        );
        reg!(
            "sluice_module_dropped",
            "Events a module version dropped",
            module_dropped
        );
        reg!(
            "sluice_module_failures",
            "Module failures by kind (trap, timeout, memory, output, topic, ...)",
            module_failures
        );
        reg!(
            "sluice_module_policy_actions",
            "Actions taken on module failures by policy (halt, skip, dead-letter)",
            module_policy_actions
        );
        reg!(
            "sluice_module_log_dropped",
            "Module log lines dropped by the per-second rate limit",
            module_log_dropped
        );
        reg!(
            "sluice_module_traps",
            "Module traps by trap code (unreachable, stack-overflow, out-of-bounds, ...)",
            module_traps
        );
        reg!(
            "sluice_module_quarantined",
            "1 while a module version is quarantined by its circuit breaker",
            module_quarantined
        );
        reg!(
            "sluice_module_quarantines",
            "Times a module version's circuit breaker opened",
            module_quarantines
        );
        reg!(
            "sluice_module_call_seconds",
            "Duration of one module call: a batch, or one event of an isolation retry",
            module_call_seconds
        );
        reg!(
            "sluice_module_swaps",
            "Module candidate outcomes: promoted, rejected, rolled-back",
            module_swaps
        );
        reg!(
            "sluice_messages_sent",
            "Messages handed to the sink",
            messages_sent
        );
        reg!(
            "sluice_messages_acked",
            "Messages acknowledged by the sink (broker acknowledgement with acks=all, or a flushed write)",
            messages_acked
        );
        reg!(
            "sluice_producer_in_flight",
            "Messages sent and not yet acknowledged",
            in_flight
        );
        reg!(
            "sluice_pipeline_window_full_seconds",
            "Seconds reading stopped because the window of unacknowledged messages was full (the sink held the pipeline back)",
            window_full_seconds
        );
        reg!(
            "sluice_pipeline_source_wait_seconds",
            "Seconds the pipeline, with room in the window, waited for binlog events (the source held it back, or there was nothing to read)",
            source_wait_seconds
        );
        reg!(
            "sluice_delivery_seconds",
            "Time from the agent reading a transaction (its first event, written at commit) to the acknowledgement of its last message",
            delivery_seconds
        );
        reg!(
            "sluice_restarts",
            "Pipeline restarts from the checkpoint after a sink failure",
            restarts
        );
        reg!(
            "sluice_checkpoint_writes",
            "Checkpoint file writes",
            checkpoint_writes
        );
        reg!(
            "sluice_checkpoint_written_timestamp_ms",
            "Unix time in milliseconds of the last checkpoint write",
            checkpoint_written_ms
        );
        reg!(
            "sluice_checkpoint_offset",
            "Binlog offset of the checkpointed position",
            checkpoint_offset
        );
        reg!(
            "sluice_paused",
            "1 while an operator has paused reading",
            paused
        );
        reg!(
            "sluice_canal_clients",
            "Canal TCP clients subscribed to a destination",
            canal_clients
        );
        reg!(
            "sluice_canal_pending_entries",
            "Entries queued for a Canal destination and not yet fetched",
            canal_pending
        );
        reg!(
            "sluice_canal_outstanding_batches",
            "Batches a Canal destination's client fetched and has not acknowledged",
            canal_outstanding
        );
        reg!(
            "sluice_canal_acked_entries",
            "Entries a Canal destination's client acknowledged",
            canal_acked
        );
        reg!(
            "sluice_canal_errors",
            "Canal connections refused or closed for an error, by reason",
            canal_errors
        );
        m.source_lag_bytes.set(-1);
        Metrics { registry: r, ..m }
    }

    /// The exposition text (OpenMetrics, which Prometheus scrapes natively).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail; an error would be a bug in a label value,
        // and a partial page is better than none for a scraper.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Counters of one table and kind, for the caller to cache.
    pub fn table(&self, database: &str, table: &str, kind: &str) -> (Counter, Counter) {
        let l: TableLabels = [
            ("database", database.to_string()),
            ("table", table.to_string()),
            ("kind", kind.to_string()),
        ];
        (
            self.rows.get_or_create(&l).clone(),
            self.row_bytes.get_or_create(&l).clone(),
        )
    }

    /// Handles of one module version.
    pub fn module(&self, name: &str, version: &str) -> ModuleMetrics {
        let short = version.get(..12).unwrap_or(version).to_string();
        let l: ModuleLabels = [("module", name.to_string()), ("version", short.clone())];
        ModuleMetrics {
            name: name.to_string(),
            version: short,
            events: self.module_events.get_or_create(&l).clone(),
            routed: self.module_routed.get_or_create(&l).clone(),
            dropped: self.module_dropped.get_or_create(&l).clone(),
            call_seconds: self
                .module_call_seconds
                .get_or_create(&[("module", name.to_string())])
                .clone(),
            failures: self.module_failures.clone(),
            actions: self.module_policy_actions.clone(),
            traps: self.module_traps.clone(),
            log_dropped: self.module_log_dropped.get_or_create(&l).clone(),
            quarantined: self.module_quarantined.get_or_create(&l).clone(),
            quarantines: self.module_quarantines.get_or_create(&l).clone(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Cached handles of one module version.
#[derive(Clone)]
pub struct ModuleMetrics {
    name: String,
    version: String,
    /// Events given.
    pub events: Counter,
    /// Destinations produced.
    pub routed: Counter,
    /// Events dropped.
    pub dropped: Counter,
    /// Call durations.
    pub call_seconds: Histogram,
    failures: Family<ModuleKindLabels, Counter>,
    actions: Family<ModuleKindLabels, Counter>,
    traps: Family<ModuleKindLabels, Counter>,
    /// Log lines dropped by the rate limit.
    pub log_dropped: Counter,
    /// 1 while quarantined.
    pub quarantined: Gauge,
    /// Times quarantined.
    pub quarantines: Counter,
}

impl ModuleMetrics {
    fn labels(&self, key: &'static str, value: &str) -> ModuleKindLabels {
        [
            ("module", self.name.clone()),
            ("version", self.version.clone()),
            (key, value.to_string()),
        ]
    }

    /// Counts a failure of `kind` (rare: looked up each time).
    pub fn failed(&self, kind: &str) {
        self.failures
            .get_or_create(&self.labels("kind", kind))
            .inc();
    }

    /// Counts a trap by its code (rare: looked up each time).
    pub fn trapped(&self, code: &str) {
        self.traps.get_or_create(&self.labels("code", code)).inc();
    }

    /// Counts a policy action (`halt`, `skip`, `dead-letter`).
    pub fn action(&self, action: &str) {
        self.action_n(action, 1);
    }

    /// Counts `n` policy actions at once.
    pub fn action_n(&self, action: &str, n: u64) {
        self.actions
            .get_or_create(&self.labels("action", action))
            .inc_by(n);
    }
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

/// Counts a module candidate outcome.
pub fn module_swap(module: &str, result: &str) {
    global()
        .module_swaps
        .get_or_create(&[
            ("module", module.to_string()),
            ("result", result.to_string()),
        ])
        .inc();
}

/// The numeric suffix of a binlog file name (`mysql-bin.000042` → 42).
pub fn file_index(file: &str) -> i64 {
    file.rsplit_once('.')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_units_and_labels() {
        let m = Metrics::new();
        let (rows, bytes) = m.table("shop", "orders", "INSERT");
        rows.inc_by(3);
        bytes.inc_by(120);
        m.delivery_seconds.observe(0.004);
        let mm = m.module("canal", "0123456789abcdef");
        mm.events.inc_by(5);
        let text = m.encode();
        assert!(
            text.contains(r#"sluice_rows_total{database="shop",table="orders",kind="INSERT"} 3"#),
            "{text}"
        );
        assert!(text.contains("sluice_delivery_seconds_count 1"), "{text}");
        assert!(
            text.contains(r#"sluice_module_events_total{module="canal",version="0123456789ab"} 5"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(file_index("mysql-bin.000042"), 42);
        assert_eq!(file_index("weird"), 0);
    }
}
