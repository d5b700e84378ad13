//! Acknowledged progress: the checkpoint (only what the publisher acknowledged), the
//! drain at shutdown, source lag while nothing is read, and the status `/readyz` shows.
//!
//! Invariants: the checkpoint written is always [`crate::sink::Publisher::safe_checkpoint`],
//! never a boundary read but unacknowledged; a drain puts what the broker refuses
//! meanwhile through its policy instead of waiting for it forever.

use std::time::{Duration, Instant};

use crate::checkpoint;
use crate::event::Checkpoint;
use crate::metrics;
use crate::sink::SinkError;
use crate::source::{Received, ServerEnd};

use super::{DRAIN_TIMEOUT, Run, RunSummary, now_ms};

/// What was read, acknowledged and checkpointed.
pub(super) struct Progress {
    /// The newest checkpoint handed to the writer.
    pub(super) saved: Option<Checkpoint>,
    pub(super) writer: checkpoint::Writer,
    /// The last transaction boundary read.
    pub(super) read: Option<Checkpoint>,
    /// Where the binlog stream is, and the server's end as last listed: while the
    /// server is ahead, or read items wait in the channel, the source is behind.
    pub(super) received: Received,
    pub(super) server_end: ServerEnd,
    /// Whether the source was behind at the last tick (see [`Run::track_lag`]).
    pub(super) source_behind: bool,
    /// Whether the status shows messages held for a missing topic.
    pub(super) holding: bool,
    /// What the run did.
    pub(super) summary: RunSummary,
}

impl Progress {
    pub(super) fn new(
        resume: Option<Checkpoint>,
        writer: checkpoint::Writer,
        received: Received,
        server_end: ServerEnd,
    ) -> Self {
        Progress {
            saved: resume,
            writer,
            read: None,
            received,
            server_end,
            source_behind: false,
            holding: false,
            summary: RunSummary::default(),
        }
    }
}

impl Run<'_> {
    pub(super) fn save_checkpoint(&mut self) -> anyhow::Result<()> {
        if let Some(cp) = self.sink.safe_checkpoint()?
            && self.progress.saved.as_ref() != Some(&cp)
        {
            self.progress.writer.submit(cp.clone())?;
            self.progress.saved = Some(cp);
            self.progress.summary.checkpoint = self.progress.saved.clone();
        }
        self.progress.writer.check()?;
        let counts = self.sink.counts();
        let behind = counts.0 > 0
            || (self.progress.read.is_some() && self.progress.read != self.progress.saved)
            || self.progress.source_behind;
        let publisher = self.sink.status();
        self.ctl.update(|s| {
            s.messages = counts;
            s.publisher = publisher;
            s.behind = behind;
            s.read = self.progress.read.clone();
        });
        Ok(())
    }

    /// Waits (at most `timeout`) until everything sent is acknowledged, putting what
    /// the broker refuses meanwhile through its policy.
    pub(super) fn drain(&mut self, timeout: Duration) -> Result<(), SinkError> {
        let start = Instant::now();
        loop {
            self.settle_refused()?;
            let left = timeout.saturating_sub(start.elapsed());
            match self.sink.drain(left.min(Duration::from_millis(100))) {
                Err(SinkError::Timeout { in_flight, .. }) if left.is_zero() => {
                    return Err(SinkError::Timeout {
                        in_flight,
                        waited: timeout,
                    });
                }
                Err(SinkError::Timeout { .. }) => {}
                other => return other,
            }
        }
    }

    /// Keeps `sluice_source_lag_seconds` true while nothing is read (paused, a full
    /// window, a stalled pipeline): whenever the server has written past the stream,
    /// or read items wait for the pipeline (`queued`), the lag is the age of the
    /// transaction being read, growing with the clock until the pipeline moves on.
    /// Caught up, it keeps what the last commit measured.
    pub(super) fn track_lag(&mut self, queued: bool) {
        let received = self.progress.received.get();
        self.progress.source_behind =
            queued || self.progress.server_end.is_ahead_of(received.as_ref());
        if self.progress.source_behind && self.open.commit_ms > 0 {
            let lag = now_ms().saturating_sub(self.open.commit_ms) as f64 / 1000.0;
            metrics::global().source_lag_seconds.set(lag);
        }
    }

    /// Shows in the status (and so in `/readyz`) why messages are held, while they are.
    /// Cheap unless the hold starts or ends, so it runs on every turn of the loop: held
    /// messages can also be released inside a send.
    pub(super) fn report_held(&mut self) {
        if self.sink.holding() != self.progress.holding {
            let why = self.sink.waiting_for().map(|e| e.to_string());
            self.progress.holding = why.is_some();
            self.ctl.update(|s| s.sink_error = why);
        }
    }

    /// Ends the run after the loop stopped with `result`: on a clean stop everything
    /// committed is drained (an open transaction stays unacknowledged and is read
    /// again at the next start); whatever happened, what is safe is checkpointed.
    pub(super) fn finish(mut self, result: anyhow::Result<()>) -> anyhow::Result<RunSummary> {
        let drained = match &result {
            Ok(()) => match self.drain(DRAIN_TIMEOUT) {
                // A stop asked for while messages wait for their topic: they are re-read
                // from the checkpoint at the next start, so this is no failure of the stop.
                Err(e @ SinkError::MissingTopic { .. }) => {
                    tracing::warn!(message = "Stopping with messages held.", reason = %e);
                    Ok(())
                }
                other => other,
            },
            Err(_) => Ok(()),
        };
        let saved = self
            .save_checkpoint()
            .and_then(|()| self.progress.writer.flush());
        result?;
        drained?;
        saved?;
        let (_, acked) = self.sink.counts();
        let summary = self.progress.summary;
        tracing::info!(
            message = "Stopped.",
            transactions = summary.transactions,
            messages = summary.messages,
            acknowledged = acked,
            checkpoint = %summary.checkpoint.as_ref().map(|c| c.to_string()).unwrap_or_default(),
        );
        Ok(summary)
    }
}
