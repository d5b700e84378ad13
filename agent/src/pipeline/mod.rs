//! `sluice run`: source → routers → messages → publisher → checkpoint.
//!
//! Invariants:
//! - the checkpoint advances only to a transaction boundary all of whose messages, and
//!   all earlier ones, the publisher acknowledged ([`crate::sink::acks`]);
//! - module versions change only between transactions ([`RouterSet`]);
//! - the source runs in its own task behind a bounded channel, so a slow publisher slows
//!   the binlog reader (backpressure) and no read is ever cancelled half-way;
//! - on a publisher failure the pipeline starts over from the last checkpoint with a
//!   new publisher; what was in flight is sent again (at-least-once), carrying its
//!   binlog position for deduplication;
//! - operator commands ([`Control`]) are applied between source items, and pausing
//!   only stops taking items: acknowledgements and checkpoints carry on.
//!
//! One file per role: `restart` (setting a run up, and starting over after a
//! failure), `event_loop` (the loop: what wakes it, shutdown), `transaction`
//! (source items, routing batches of a transaction's changes), `assemble` (rendering
//! and numbering messages), `gather` (`message = "transaction"`), `refusals` (what
//! is too large or refused, through its policy), `checkpointing` (acknowledged
//! progress, lag, status), `commands` (operator commands), `reload` (module files).

mod assemble;
mod checkpointing;
mod commands;
mod event_loop;
mod gather;
mod refusals;
mod reload;
mod restart;
mod transaction;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::checkpoint;
use crate::config::Config;
use crate::control::Control;
use crate::event::Checkpoint;
use crate::metrics;
use crate::router::RouterSet;
use crate::sink::Sink;
use crate::source::{Received, ServerEnd};

pub use event_loop::run_once;
pub use restart::run;
pub use transaction::split_pk_updates;

/// A decision header with which a module picks the format (`canal` or `debezium`) of
/// one destination; consumed by the agent, not published.
pub const FORMAT_HEADER: &str = "sluice.format";

/// Entries kept in the per-table caches, which are keyed by binlog table id. The server
/// hands out a new id whenever a table is opened again, so ids only grow: past this many
/// the cache starts over instead of keeping every id ever seen.
const TABLE_CACHE: usize = 4096;

/// Time allowed to drain in-flight messages at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Transactions processed.
    pub transactions: u64,
    /// Messages published.
    pub messages: u64,
    /// The last checkpoint written.
    pub checkpoint: Option<Checkpoint>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Everything that lives for one attempt: its parts, and the state of each role.
pub(crate) struct Run<'a> {
    cfg: &'a Config,
    routers: Option<RouterSet>,
    sink: Sink,
    ctl: Arc<Control>,
    /// The transaction being read and its changes on their way to messages.
    open: transaction::OpenTxn,
    /// Buffers and caches that make messages.
    asm: assemble::Assembly,
    /// What was read, acknowledged and checkpointed.
    progress: checkpointing::Progress,
}

impl<'a> Run<'a> {
    /// A run's state, resuming after `resume`; the checkpoint writer starts here.
    pub(super) fn new(
        cfg: &'a Config,
        routers: Option<RouterSet>,
        sink: Sink,
        resume: Option<Checkpoint>,
        (received, server_end): (Received, ServerEnd),
        ctl: &Arc<Control>,
    ) -> anyhow::Result<Self> {
        let writer = {
            let ctl = ctl.clone();
            checkpoint::Writer::start(&cfg.checkpoint, move |cp| {
                let m = metrics::global();
                m.checkpoint_writes.inc();
                m.checkpoint_written_ms.set(now_ms() as i64);
                m.checkpoint_offset.set(cp.position as i64);
                ctl.update(|s| {
                    s.checkpoint = Some(cp.clone());
                    s.advanced_at = Instant::now();
                });
            })?
        };
        Ok(Run {
            cfg,
            routers,
            sink,
            ctl: ctl.clone(),
            open: transaction::OpenTxn::new(),
            asm: assemble::Assembly::new(),
            progress: checkpointing::Progress::new(resume, writer, received, server_end),
        })
    }
}
