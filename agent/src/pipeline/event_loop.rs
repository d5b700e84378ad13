//! The pipeline loop: what wakes it (an item, a command, a tick, a pause, SIGHUP, a
//! full window, cancellation) and the clean shutdown.
//!
//! Invariants: one run at a time owns the command inbox; a full publisher window stops
//! reading, not the loop (acknowledged checkpoints are still written, commands served,
//! signals heard); the reader task is never cancelled half-way through a read; at a
//! clean stop everything committed is drained and checkpointed, and an open
//! transaction stays unacknowledged (it is read again at the next start).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::control::{Command, Control};
use crate::event::{Checkpoint, SourceItem};
use crate::metrics;
use crate::router::RouterSet;
use crate::sink::Sink;
use crate::source::{ItemSource, ServerEnd, SourceError};

use super::{Run, RunSummary, reload};

/// What one run reads.
pub struct Inputs<S> {
    /// The binlog's items, in order.
    pub source: S,
    /// Where the server's binlog ends, as the lag probe last listed it.
    pub server_end: ServerEnd,
    /// The checkpoint the source resumes after (what is safe before anything is
    /// acknowledged).
    pub resume: Option<Checkpoint>,
}

/// What woke the pipeline loop.
enum Wake {
    Cancel,
    Command(Command),
    Pause,
    Hangup,
    Tick,
    WindowPoll,
    Item(Option<Result<SourceItem, SourceError>>),
}

/// How often a pipeline waiting for room in the sink's window looks again.
/// It starts at 1 ms and doubles while the window stays full, up to
/// [`WINDOW_POLL_MAX`]: a broker that is down for long costs a few hundred wake-ups a
/// second, not a thousand, and a window that frees up within a millisecond or two is
/// still noticed at once.
const WINDOW_POLL: Duration = Duration::from_millis(1);
const WINDOW_POLL_MAX: Duration = Duration::from_millis(4);

/// Runs the pipeline from `inputs` through `routers` to `sink` until `cancel` fires (a
/// clean stop: drain, checkpoint) or something fails. The caller sets up the parts, so
/// the loop runs the same on a live server and on a source and publisher in memory.
pub async fn run_once<S: ItemSource>(
    cfg: &Config,
    inputs: Inputs<S>,
    sink: Sink,
    routers: Option<RouterSet>,
    ctl: &Arc<Control>,
    cancel: CancellationToken,
) -> anyhow::Result<RunSummary> {
    // One run at a time owns the command inbox.
    let mut inbox = ctl.inbox().lock().await;
    let mut pause = ctl.pause_watch();
    let Inputs {
        source,
        server_end,
        resume,
    } = inputs;
    ctl.update(|s| {
        s.running = true;
        s.sink_error = None;
        s.checkpoint = resume.clone();
        s.advanced_at = Instant::now();
    });
    let reader_cancel = cancel.child_token();
    let received = source.received();
    let (mut rx, reader) = spawn_reader(source, reader_cancel.clone());
    let mut run = Run::new(cfg, routers, sink, resume, (received, server_end), ctl)?;
    let mut files = reload::ModuleFiles::new(cfg);
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut tick = tokio::time::interval(cfg.checkpoint_interval);
    let mut window_poll = WINDOW_POLL;
    let result: anyhow::Result<()> = loop {
        let paused = *pause.borrow_and_update();
        // A full sink window stops reading, not the loop: acknowledged checkpoints are
        // still written, commands served and signals heard while the broker catches up.
        run.report_held();
        let room = run.sink.has_room();
        let waiting_since = Instant::now();
        let wake = tokio::select! {
            biased;
            _ = cancel.cancelled() => Wake::Cancel,
            Some(cmd) = inbox.recv() => Wake::Command(cmd),
            _ = pause.changed() => Wake::Pause,
            _ = hup.recv() => Wake::Hangup,
            _ = tick.tick() => Wake::Tick,
            _ = tokio::time::sleep(window_poll), if !room => Wake::WindowPoll,
            // The item's read-ahead share is given back as it leaves the channel.
            item = rx.recv(), if !paused && room => Wake::Item(item.map(|(item, _share)| item)),
        };
        // Where the time went while nothing was being processed: held back by the sink,
        // or waiting on the source. Paused time is neither.
        let waited = waiting_since.elapsed().as_secs_f64();
        window_poll = match wake {
            Wake::WindowPoll => (window_poll * 2).min(WINDOW_POLL_MAX),
            _ if room => WINDOW_POLL,
            _ => window_poll,
        };
        if !room {
            metrics::global().window_full_seconds.inc_by(waited);
        } else if !paused {
            metrics::global().source_wait_seconds.inc_by(waited);
        }
        match wake {
            Wake::Cancel => break Ok(()),
            Wake::Command(cmd) => run.on_command(cmd),
            Wake::Pause => {}
            Wake::Hangup => {
                if let Some(set) = &run.routers {
                    files.reload(set);
                }
            }
            Wake::Tick => {
                if let Some(set) = &run.routers {
                    files.poll(set);
                }
                if let Some(set) = run.routers.as_mut() {
                    // Between transactions an idle pipeline is at a boundary.
                    set.apply(!run.open.active && run.open.chunk.is_empty());
                }
                run.track_lag(!rx.is_empty());
                if let Err(e) = run
                    .settle_refused()
                    .map_err(anyhow::Error::from)
                    .and_then(|()| run.save_checkpoint())
                {
                    break Err(e);
                }
            }
            Wake::WindowPoll => {
                if let Err(e) = run.sink.check().and_then(|()| run.sink.release_held()) {
                    break Err(e.into());
                }
                if let Err(e) = run.settle_refused() {
                    break Err(e.into());
                }
            }
            Wake::Item(None) => break Err(anyhow::anyhow!("the binlog reader stopped")),
            Wake::Item(Some(Err(e))) => {
                break Err(anyhow::Error::new(e).context("replication stopped"));
            }
            Wake::Item(Some(Ok(item))) => {
                if let Err(e) = run.on_item(item) {
                    break Err(e);
                }
            }
        }
    };
    // Closing the channel first: a reader parked on a full channel would otherwise never
    // see the cancellation, and this wait would never end.
    drop(rx);
    reader_cancel.cancel();
    let _ = reader.await;
    run.finish(result)
}

/// Row bytes the reader may hold ahead of the pipeline, besides the 256-item bound: 256
/// items of 16 MiB rows would be 4 GiB decoded and waiting while the pipeline is paused
/// or held by a slow broker. One item larger than this still passes, alone.
pub(super) const READ_AHEAD_BYTES: usize = 32 << 20;

/// An item read ahead, with its share of [`READ_AHEAD_BYTES`] (given back when the
/// pipeline takes the item out of the channel).
pub(super) type ReadAhead = (
    Result<SourceItem, SourceError>,
    Option<tokio::sync::OwnedSemaphorePermit>,
);

/// The reader task: reads `source` into a bounded channel until `stop`, the channel
/// closes, or the source fails (the error is the last item sent). A full channel, or
/// [`READ_AHEAD_BYTES`] of rows waiting in it, parks it: that is the backpressure into
/// the binlog reader.
pub(super) fn spawn_reader<S: ItemSource>(
    mut source: S,
    stop: CancellationToken,
) -> (mpsc::Receiver<ReadAhead>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(256);
    let budget = Arc::new(tokio::sync::Semaphore::new(READ_AHEAD_BYTES));
    let task = tokio::spawn(async move {
        loop {
            let item = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                item = source.next_item() => item,
            };
            let cost = item
                .as_ref()
                .map_or(0, SourceItem::heap_bytes)
                .min(READ_AHEAD_BYTES);
            // Begin and commit items hold no rows: no share to wait for or give back.
            let permit = if cost == 0 {
                None
            } else {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    p = budget.clone().acquire_many_owned(u32::try_from(cost).unwrap_or(u32::MAX)) => p.ok(),
                }
            };
            let failed = item.is_err();
            if tx.send((item, permit)).await.is_err() || failed {
                break;
            }
        }
    });
    (rx, task)
}
