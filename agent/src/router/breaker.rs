//! The circuit breaker of one module version: after repeated or costly failures the
//! version is quarantined (not called; its events take its failure policy at once),
//! probed again later, and released when a probe succeeds.
//!
//! Invariants:
//! - a version trips when `after` batches in a row fail outright (nothing of them
//!   routed), or when its failing calls cost more than `budget` of wall time within
//!   the trailing `window`: the second rule is what keeps a module that loops, times
//!   out or re-instantiates on every batch from taking the pipeline's time from the
//!   other modules, however its failures are spread;
//! - a quarantine lasts `first`, doubling on every trip up to `max`; the doubling is
//!   forgotten after the version has stayed healthy for `max`;
//! - while quarantined, exactly one batch is let through per period as a probe; a probe
//!   that fails re-opens the breaker at once, without retrying its events one by one.

use std::time::{Duration, Instant};

/// Breaker settings of one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSpec {
    /// Batches in a row that fail outright before the version is quarantined
    /// (0: only the time budget trips it).
    pub after: u32,
    /// Failing-call time allowed within `window` before the version is quarantined.
    pub budget: Duration,
    /// The trailing window over which failing time is summed.
    pub window: Duration,
    /// First quarantine.
    pub first: Duration,
    /// Longest quarantine.
    pub max: Duration,
}

impl BreakerSpec {
    /// The defaults for a module with this call deadline: 3 batches in a row, or failing
    /// calls costing twice the deadline within max(1 s, 20 deadlines) (at most a tenth
    /// of the pipeline's time); quarantines from 1 s up to 60 s.
    pub fn for_deadline(deadline: Duration) -> Self {
        BreakerSpec {
            after: 3,
            budget: deadline * 2,
            window: (deadline * 20).max(Duration::from_secs(1)),
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

/// What to do with the next batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Call the module as usual.
    Call,
    /// Call it once as a probe: on failure, re-quarantine without isolation retries.
    Probe,
    /// Do not call it; apply the policy.
    Quarantined,
}

/// How a batch went, for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The batch call succeeded.
    Ok,
    /// The batch failed but some of its events routed when retried one by one.
    Partial,
    /// Nothing of the batch routed.
    Failed,
}

/// An open breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// When it opened (ms since the epoch, for operators).
    pub since_ms: u64,
    /// When the next probe may run (ms since the epoch).
    pub until_ms: u64,
    /// The failure that tripped it.
    pub reason: String,
    /// Times this version has tripped.
    pub trips: u64,
    until: Instant,
}

/// The breaker state of one module version.
#[derive(Debug)]
pub struct Breaker {
    spec: BreakerSpec,
    in_a_row: u32,
    /// (time, cost) of failing calls within the trailing window.
    spent: std::collections::VecDeque<(Instant, Duration)>,
    open: Option<Open>,
    backoff: Duration,
    healthy_since: Instant,
    trips: u64,
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Breaker {
    /// A closed breaker.
    pub fn new(spec: BreakerSpec) -> Self {
        Breaker {
            spec,
            in_a_row: 0,
            spent: std::collections::VecDeque::new(),
            open: None,
            backoff: spec.first,
            healthy_since: Instant::now(),
            trips: 0,
        }
    }

    /// The open state, if quarantined.
    pub fn open(&self) -> Option<&Open> {
        self.open.as_ref()
    }

    /// Whether (and how) to call the module for the next batch.
    pub fn gate(&self, now: Instant) -> Gate {
        match &self.open {
            None => Gate::Call,
            Some(o) if now >= o.until => Gate::Probe,
            Some(_) => Gate::Quarantined,
        }
    }

    /// Failing time the version may still spend now before it trips.
    pub fn remaining_budget(&mut self, now: Instant) -> Duration {
        self.expire(now);
        let spent: Duration = self.spent.iter().map(|(_, d)| *d).sum();
        self.spec.budget.saturating_sub(spent)
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.spent.front() {
            if now.duration_since(*at) > self.spec.window {
                self.spent.pop_front();
            } else {
                break;
            }
        }
    }

    /// Records a batch. `cost` is the time its failing calls took (zero when it went
    /// well). Returns true when this batch opened the breaker.
    pub fn record(
        &mut self,
        now: Instant,
        outcome: Outcome,
        cost: Duration,
        probe: bool,
        reason: impl FnOnce() -> String,
    ) -> bool {
        if outcome == Outcome::Ok {
            self.in_a_row = 0;
            if self.open.take().is_some() {
                self.healthy_since = now;
            }
            return false;
        }
        self.in_a_row = match outcome {
            Outcome::Failed => self.in_a_row.saturating_add(1),
            _ => self.in_a_row,
        };
        if !cost.is_zero() {
            self.spent.push_back((now, cost));
        }
        // Keep the window's record bounded however many cheap failures arrive.
        if self.spent.len() > 4096 {
            self.spent.pop_front();
        }
        let over_time = self.remaining_budget(now).is_zero();
        let over_count = self.spec.after > 0 && self.in_a_row >= self.spec.after;
        if !(probe || over_time || over_count) {
            return false;
        }
        // A failed probe, or a trip soon after the last release, backs off further; a
        // version that stayed healthy for the longest quarantine starts over.
        let fresh = self.trips == 0
            || (self.open.is_none() && now.duration_since(self.healthy_since) >= self.spec.max);
        let period = if fresh {
            self.spec.first
        } else {
            (self.backoff * 2).min(self.spec.max)
        };
        self.backoff = period;
        self.trips += 1;
        self.in_a_row = 0;
        self.spent.clear();
        let since_ms = epoch_ms();
        self.open = Some(Open {
            since_ms,
            until_ms: since_ms + period.as_millis() as u64,
            reason: reason(),
            trips: self.trips,
            until: now + period,
        });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BreakerSpec {
        BreakerSpec::for_deadline(Duration::from_millis(50))
    }

    #[test]
    fn trips_after_batches_in_a_row_that_fail_outright() {
        let mut b = Breaker::new(spec());
        let t = Instant::now();
        let why = || "trap".to_string();
        assert!(!b.record(t, Outcome::Failed, Duration::ZERO, false, why));
        assert!(!b.record(t, Outcome::Partial, Duration::ZERO, false, why));
        assert!(!b.record(t, Outcome::Failed, Duration::ZERO, false, why));
        assert_eq!(b.gate(t), Gate::Call, "partial batches do not count");
        assert!(b.record(t, Outcome::Failed, Duration::ZERO, false, why));
        assert_eq!(b.gate(t), Gate::Quarantined);
        assert_eq!(b.gate(t + Duration::from_millis(999)), Gate::Quarantined);
        assert_eq!(b.gate(t + Duration::from_secs(1)), Gate::Probe);
        assert_eq!(b.open().map(|o| o.reason.as_str()), Some("trap"));
    }

    #[test]
    fn trips_on_failing_time_however_it_is_spread() {
        let mut b = Breaker::new(spec());
        let t = Instant::now();
        let why = || "timeout".to_string();
        // Partial failures never count in a row, but their cost does: 100 ms per second.
        assert!(!b.record(t, Outcome::Partial, Duration::from_millis(60), false, why));
        assert!(b.record(
            t + Duration::from_millis(10),
            Outcome::Partial,
            Duration::from_millis(40),
            false,
            why
        ));
        // Cost older than the window is forgotten.
        let mut b = Breaker::new(spec());
        assert!(!b.record(t, Outcome::Partial, Duration::from_millis(90), false, why));
        let later = t + Duration::from_millis(1500);
        assert!(!b.record(
            later,
            Outcome::Partial,
            Duration::from_millis(90),
            false,
            why
        ));
    }

    #[test]
    fn failed_probes_back_off_and_a_good_probe_closes() {
        let mut b = Breaker::new(spec());
        let t = Instant::now();
        let why = || "x".to_string();
        assert!(b.record(t, Outcome::Failed, Duration::from_millis(100), false, why));
        let p1 = t + Duration::from_secs(1);
        assert_eq!(b.gate(p1), Gate::Probe);
        assert!(b.record(p1, Outcome::Failed, Duration::from_millis(1), true, why));
        assert_eq!(b.gate(p1 + Duration::from_millis(1999)), Gate::Quarantined);
        let p2 = p1 + Duration::from_secs(2);
        assert_eq!(b.gate(p2), Gate::Probe);
        assert!(b.record(p2, Outcome::Failed, Duration::ZERO, true, why));
        assert_eq!(b.gate(p2 + Duration::from_millis(3999)), Gate::Quarantined);
        let p3 = p2 + Duration::from_secs(4);
        assert!(!b.record(p3, Outcome::Ok, Duration::ZERO, true, why));
        assert_eq!(b.gate(p3), Gate::Call);
        assert!(b.open().is_none());
        // Tripping again soon after continues the doubling.
        assert!(b.record(p3, Outcome::Failed, Duration::from_millis(100), false, why));
        assert_eq!(b.gate(p3 + Duration::from_millis(7999)), Gate::Quarantined);
        for _ in 0..10 {
            let o = b.open().cloned().expect("open");
            assert!(o.until_ms - o.since_ms <= 60_000);
            b.record(o.until, Outcome::Failed, Duration::ZERO, true, why);
        }
        let o = b.open().expect("open");
        assert_eq!(
            o.until_ms - o.since_ms,
            60_000,
            "capped at the longest quarantine"
        );
    }
}
