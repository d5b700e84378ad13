//! Setting a run up (checkpoint, modules, publisher, replication) and starting over
//! after a failure a restart can fix.
//!
//! Invariants: a run resumes from the last checkpoint with a new publisher, so what
//! was in flight is sent again, never lost; the resolved start position is stored
//! before anything is published; only publisher failures restart (at most five in a
//! row, with growing pauses), everything else stops the agent with its error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::checkpoint;
use crate::config::Config;
use crate::control::Control;
use crate::metrics;
use crate::sink::SinkError;
use crate::source::{BinlogSource, ServerEnd};

use super::RunSummary;
use super::event_loop::{Inputs, run_once};
use super::reload::load_routers;

/// Runs until `cancel` fires (clean shutdown: drain, checkpoint) or a failure a restart
/// cannot fix. Sink failures restart from the checkpoint with a new sink.
pub async fn run(
    cfg: Config,
    cancel: CancellationToken,
    ctl: Arc<Control>,
) -> anyhow::Result<RunSummary> {
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let result = start(&cfg, cancel.clone(), &ctl).await;
        ctl.update(|s| s.running = false);
        ctl.set_status(None);
        match result {
            Ok(s) => return Ok(s),
            Err(e) => {
                ctl.update(|s| s.sink_error = Some(crate::describe(&e)));
                if !restart_may_help(&e) || cancel.is_cancelled() {
                    return Err(e);
                }
                failures = if started.elapsed() > Duration::from_secs(60) {
                    1
                } else {
                    failures + 1
                };
                if failures > 5 {
                    return Err(e.context("the sink kept failing; giving up after 5 restarts"));
                }
                tracing::warn!(
                    message = "Sink failed; restarting from the last checkpoint.",
                    error = %crate::describe(&e),
                    attempt = failures,
                );
                metrics::global().restarts.inc();
                tokio::time::sleep(Duration::from_millis(500 * u64::from(failures))).await;
            }
        }
    }
}

/// One run against the live server: loads the checkpoint and the modules, opens and
/// checks the publisher, starts replication and the lag probe, then runs the loop.
async fn start(
    cfg: &Config,
    cancel: CancellationToken,
    ctl: &Arc<Control>,
) -> anyhow::Result<RunSummary> {
    let resume = checkpoint::load(&cfg.checkpoint)?;
    let routers = load_routers(cfg)?;
    ctl.set_status(routers.as_ref().map(|r| r.status()));
    let sink = crate::sink::open(&cfg.sink)?;
    sink.check_topics(&cfg.declared_topics())?;
    let mut topics = cfg.declared_topics();
    topics.extend(routers.iter().flat_map(|r| r.declared_topics()));
    topics.sort();
    topics.dedup();
    for w in sink.warnings(&topics) {
        tracing::warn!(message = "Startup check.", warning = %w);
    }

    let source = BinlogSource::connect(cfg.source.clone(), resume.clone())
        .await
        .context("starting replication")?;
    // Record the resolved start before anything is published: a crash before the first
    // acknowledged transaction must resume here, not at a new `latest`.
    let resume = match resume {
        Some(cp) => Some(cp),
        None => {
            checkpoint::store(&cfg.checkpoint, source.checkpoint())?;
            Some(source.checkpoint().clone())
        }
    };
    tracing::info!(message = "Replicating.", from = %source.checkpoint());
    let server_end = ServerEnd::default();
    // Lists the server's binlogs every heartbeat: lag in bytes, and whether the stream
    // is behind (which the pipeline needs while it reads nothing).
    let probe = cancel.child_token();
    let _stop_probe = probe.clone().drop_guard();
    tokio::spawn(crate::source::probe_lag(
        cfg.source.clone(),
        cfg.source.heartbeat,
        source.received(),
        server_end.clone(),
        probe,
    ));
    let inputs = Inputs {
        source,
        server_end,
        resume,
    };
    run_once(cfg, inputs, sink, routers, ctl, cancel).await
}

/// Whether starting over from the checkpoint with a new sink can get past `e`: a
/// delivery that failed for good after the client's retries, or a producer that failed
/// or could not be set up. Not a message the broker will always refuse, a missing
/// topic, a bad module or a source error: those stop the agent with their error.
fn restart_may_help(e: &anyhow::Error) -> bool {
    e.downcast_ref::<SinkError>()
        .is_some_and(|s| matches!(s, SinkError::Delivery { .. } | SinkError::Setup(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_a_restart_can_fix_restart() {
        let sink = |e: SinkError| anyhow::Error::new(e).context("publishing");
        let at = || {
            (
                "t".to_string(),
                "binlog.000001:4:0".to_string(),
                "x".to_string(),
            )
        };
        let (topic, position, detail) = at();
        assert!(restart_may_help(&sink(SinkError::Delivery {
            topic,
            position,
            detail
        })));
        assert!(restart_may_help(&sink(SinkError::Setup("fatal".into()))));
        let (topic, position, detail) = at();
        assert!(!restart_may_help(&sink(SinkError::TooLarge {
            topic,
            position,
            detail
        })));
        assert!(!restart_may_help(&sink(SinkError::MissingTopic {
            topic: "t".into(),
            context: None
        })));
        assert!(!restart_may_help(&anyhow::anyhow!("replication stopped")));
    }
}
