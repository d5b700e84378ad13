//! Catch-up progress for the log: while the stream trails the server's binary logs by a
//! real backlog (a start from `earliest`, a long outage), how far behind, how fast the
//! backlog shrinks, and when it will be gone. `sluice ctl status --watch` shows the same
//! live; this is what a terminal or a journal gets without asking.
//!
//! Invariant: quiet when caught up (below [`BACKLOG`]) and at most one line per
//! [`EVERY`]; it only reads numbers the lag probe already measured.

use std::time::{Duration, Instant};

/// Bytes behind below which the agent counts as caught up.
pub const BACKLOG: u64 = 64 << 20;
/// The least time between two progress lines.
pub const EVERY: Duration = Duration::from_secs(30);

/// What one probe reading says about the catch-up.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// Behind by `behind` bytes; the backlog shrinks at `rate` bytes/s since the
    /// catch-up started (`None`: not shrinking), so it is gone in `eta`.
    Behind {
        /// Bytes of binary log not yet read.
        behind: u64,
        /// Net bytes/s the backlog shrank by since the catch-up began.
        rate: Option<f64>,
        /// When it will be gone at that rate.
        eta: Option<Duration>,
    },
    /// The backlog is gone, after `took`.
    CaughtUp {
        /// How long the catch-up took.
        took: Duration,
    },
}

/// Tracks one catch-up between probe readings.
#[derive(Debug, Default)]
pub struct CatchUp {
    /// When the backlog was first seen, and its size then.
    start: Option<(Instant, u64)>,
    last_report: Option<Instant>,
}

impl CatchUp {
    /// Takes a reading of `behind` bytes at `now`; returns what to log, if anything.
    pub fn observe(&mut self, behind: u64, now: Instant) -> Option<Report> {
        if behind < BACKLOG {
            let (started, _) = self.start.take()?;
            // Only a catch-up that was reported gets its end reported.
            return self.last_report.take().map(|_| Report::CaughtUp {
                took: now.duration_since(started),
            });
        }
        let (started, first) = *self.start.get_or_insert((now, behind));
        if self
            .last_report
            .is_some_and(|t| now.duration_since(t) < EVERY)
        {
            return None;
        }
        self.last_report = Some(now);
        let secs = now.duration_since(started).as_secs_f64();
        let rate = (secs > 0.0 && first > behind).then(|| (first - behind) as f64 / secs);
        let eta = rate.map(|r| Duration::from_secs_f64(behind as f64 / r));
        Some(Report::Behind { behind, rate, eta })
    }
}

/// Logs `report` for the stream at `position`.
pub fn log(report: &Report, position: &str) {
    use crate::human::{bytes, duration};
    match report {
        Report::Behind { behind, rate, eta } => tracing::info!(
            message = "Catching up.",
            behind = %bytes(*behind),
            behind_bytes = behind,
            position = %position,
            shrinking_by = %rate.map_or("not yet measured or not shrinking".into(), |r| format!("{}/s", bytes(r as u64))),
            eta = %eta.map_or("unknown".into(), |e| duration(e.as_secs_f64())),
        ),
        Report::CaughtUp { took } => tracing::info!(
            message = "Caught up with the server's binary logs.",
            took = %duration(took.as_secs_f64()),
            position = %position,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_a_backlog_its_rate_and_end_at_most_every_interval() {
        let t0 = Instant::now();
        let mut c = CatchUp::default();
        // Caught up: nothing to say.
        assert_eq!(c.observe(1 << 20, t0), None);
        // A backlog appears: reported at once, no rate yet.
        let gib = 1u64 << 30;
        assert_eq!(
            c.observe(gib, t0),
            Some(Report::Behind {
                behind: gib,
                rate: None,
                eta: None
            })
        );
        // Within the interval: quiet.
        assert_eq!(
            c.observe(gib - (100 << 20), t0 + Duration::from_secs(10)),
            None
        );
        // 30 s on, 300 MiB read: 10 MiB/s, the rest in 72.4 s.
        let left = gib - (300 << 20);
        match c.observe(left, t0 + Duration::from_secs(30)) {
            Some(Report::Behind {
                behind,
                rate: Some(rate),
                eta: Some(eta),
            }) => {
                assert_eq!(behind, left);
                assert!((rate - 10.0 * 1048576.0).abs() < 1.0, "{rate}");
                assert_eq!(eta.as_secs(), 72);
            }
            other => panic!("{other:?}"),
        }
        // Growing instead of shrinking: no rate, no ETA.
        match c.observe(2 * gib, t0 + Duration::from_secs(60)) {
            Some(Report::Behind { rate, eta, .. }) => assert_eq!((rate, eta), (None, None)),
            other => panic!("{other:?}"),
        }
        // Gone: one line, then quiet again.
        assert_eq!(
            c.observe(0, t0 + Duration::from_secs(90)),
            Some(Report::CaughtUp {
                took: Duration::from_secs(90)
            })
        );
        assert_eq!(c.observe(0, t0 + Duration::from_secs(200)), None);
    }
}
