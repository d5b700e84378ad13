//! All configured modules together: routing with failure policies, and hot swap.
//!
//! Invariants:
//! - versions change only in [`RouterSet::at_transaction_boundary`], which the pipeline
//!   calls between transactions, so every transaction is routed by one version of each
//!   module;
//! - a candidate replaces the serving version only after a canary: instantiated,
//!   configured, and run on a sample of recent events without trapping, timing out,
//!   returning malformed output or naming a foreign topic; a failed candidate leaves the
//!   serving version in place and its reason in the module's status;
//! - the previous version is kept for rollback;
//! - a module's failure affects only that module's decisions, per its policy: halt
//!   (error to the caller, nothing decided), skip, or dead-letter; a failed batch is
//!   retried event by event so only the failing events are skipped or dead-lettered;
//! - one batch costs a module at most two deadlines: one for the batch call (and the
//!   restart before it), one for all of its isolation retries together; events left
//!   when that budget is spent take the policy without a call;
//! - a version that keeps failing, or whose failures cost too much time, is quarantined
//!   by its breaker ([`super::breaker`]): not called, its events take the policy at
//!   once, one probe batch per period.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::breaker::{Breaker, Gate, Outcome};
use super::engine::{ModuleCode, RouterEngine};
use super::error::{RouterError, SwapError};
use super::module::{ModuleInstance, Route, RouteInput, Routes};
use super::spec::{ModuleSpec, Policy};
use crate::event::{ChangeEvent, ChangeKind};
use crate::metrics::ModuleMetrics;

/// Events kept for canaries (each may hold many rows; canaries use up to 1000 rows).
const SAMPLE_EVENTS: usize = 32;

/// A route decided by a module, tagged with who decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Index of the input (see [`RouterSet::route`]).
    pub input: usize,
    /// Where to publish.
    pub route: Route,
    /// Module name.
    pub module: Arc<str>,
    /// Module version (SHA-256 of the component, hex).
    pub version: Arc<str>,
    /// Set for dead-lettered events: (error kind, message).
    pub dead_letter: Option<(&'static str, Arc<str>)>,
}

/// Counters of one module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleCounters {
    /// Events given to the module.
    pub events: u64,
    /// Destinations produced.
    pub routed: u64,
    /// Events the module dropped.
    pub dropped: u64,
    /// Failures by kind.
    pub failures: Vec<(&'static str, u64)>,
    /// Events skipped by policy.
    pub skipped: u64,
    /// Events dead-lettered by policy.
    pub dead_lettered: u64,
}

impl ModuleCounters {
    fn failed(&mut self, kind: &'static str) {
        match self.failures.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => self.failures.push((kind, 1)),
        }
    }
}

/// Outcome of the last candidate for a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandidateState {
    /// No candidate yet.
    None,
    /// Its canary is running (so a waiting operator never reads the outcome of an
    /// earlier upload of the same bytes as this one's).
    Canary {
        /// Version.
        version: String,
    },
    /// Passed its canary; swaps in at the next transaction boundary.
    Ready {
        /// Version.
        version: String,
        /// Recent rows the canary routed (0: the agent had seen none the module
        /// subscribes to, so only compiling, instantiating and configuring were tried).
        canary_rows: usize,
    },
    /// Swapped in.
    Promoted {
        /// Version.
        version: String,
        /// When (ms since the epoch).
        at_ms: u64,
    },
    /// Refused; the serving version stays.
    Rejected {
        /// Version (SHA-256 of the bytes).
        version: String,
        /// Why.
        reason: String,
    },
}

/// What an operator sees of a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleStatus {
    /// Name.
    pub name: String,
    /// Serving version.
    pub version: String,
    /// Version a rollback returns to.
    pub previous: Option<String>,
    /// Last candidate.
    pub candidate: CandidateState,
    /// Counters.
    pub counters: ModuleCounters,
    /// Set while the serving version is quarantined by its circuit breaker.
    pub quarantine: Option<Quarantine>,
    /// Set when the module could not be loaded: why. Its policy applies to every event
    /// until a retry or a candidate succeeds.
    pub failed: Option<String>,
}

/// A quarantine as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    /// Since when (ms since the epoch).
    pub since_ms: u64,
    /// When the next probe may run (ms since the epoch).
    pub probe_at_ms: u64,
    /// The failure that tripped the breaker.
    pub reason: String,
    /// Times this version has been quarantined.
    pub trips: u64,
}

struct Slot {
    instance: ModuleInstance,
    previous: Option<Arc<ModuleCode>>,
    counters: ModuleCounters,
    metrics: ModuleMetrics,
    staged: Option<Box<ModuleInstance>>,
    /// The serving version's breaker (a new version starts closed).
    breaker: Breaker,
}

/// A module that could not be loaded (compiled, instantiated or configured) and whose
/// policy is skip or dead-letter: the agent runs without it. Its subscription is
/// unknown, so every event is its event and takes its policy; a compiled module is
/// tried again with backoff at transaction boundaries, and a candidate that passes its
/// canary replaces it.
struct Failed {
    spec: Arc<ModuleSpec>,
    version: Arc<str>,
    code: Option<Arc<ModuleCode>>,
    error: RouterError,
    counters: ModuleCounters,
    metrics: ModuleMetrics,
    retry_at: Instant,
    backoff: Duration,
    staged: Option<Box<ModuleInstance>>,
}

/// First retry of a module that failed to load; doubles up to [`LOAD_RETRY_MAX`].
const LOAD_RETRY_FIRST: Duration = Duration::from_secs(1);
const LOAD_RETRY_MAX: Duration = Duration::from_secs(60);

fn load(
    engine: &RouterEngine,
    spec: &Arc<ModuleSpec>,
    bytes: &[u8],
) -> Result<ModuleInstance, (Option<Arc<ModuleCode>>, RouterError)> {
    let started = Instant::now();
    let (code, from_cache) = engine.compile(&spec.name, bytes).map_err(|e| (None, e))?;
    tracing::info!(
        message = "Module loaded.",
        module = %spec.name,
        version = %&code.hash[..12],
        precompiled = from_cache,
        took_ms = started.elapsed().as_millis() as u64,
    );
    ModuleInstance::new(engine, code.clone(), spec.clone()).map_err(|e| (Some(code), e))
}

fn slot_of_instance(instance: ModuleInstance) -> Slot {
    Slot {
        metrics: slot_metrics(&instance),
        breaker: Breaker::new(instance.spec().breaker),
        instance,
        previous: None,
        counters: ModuleCounters::default(),
        staged: None,
    }
}

fn slot_metrics(instance: &ModuleInstance) -> ModuleMetrics {
    crate::metrics::global().module(&instance.spec().name, &instance.code().hash)
}

/// What to do with a ready instance at the next transaction boundary.
enum Mode {
    /// Serve it (a candidate from the modules directory or SIGHUP, or a promotion).
    Swap,
    /// Hold it until an operator promotes it (a candidate loaded by the admin API);
    /// its canary routed this many rows.
    Stage { canary_rows: usize },
    /// Serve it as a rollback; the given version becomes the previous one.
    Rollback(Arc<ModuleCode>),
}

enum Proposal {
    Ready(Box<ModuleInstance>, Mode),
    Rejected {
        name: String,
        version: String,
        reason: String,
    },
}

/// Shared view of module statuses (for the admin API and logs).
pub type StatusBoard = Arc<Mutex<Vec<ModuleStatus>>>;

/// The configured modules.
pub struct RouterSet {
    engine: Arc<RouterEngine>,
    slots: Vec<Slot>,
    failed: Vec<Failed>,
    sample: Arc<Mutex<VecDeque<Arc<ChangeEvent>>>>,
    tx: Sender<Proposal>,
    rx: Receiver<Proposal>,
    status: StatusBoard,
    scratch: Routes,
    /// Swaps that arrived inside a transaction, kept for the next boundary.
    deferred: Vec<Proposal>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl RouterSet {
    /// Loads every module. A module that fails to load is an error (the agent refuses
    /// to start) when its policy is halt; with skip or dead-letter the set starts
    /// without it, reports it failed, and applies its policy to every event.
    pub fn new(
        engine: Arc<RouterEngine>,
        modules: Vec<(ModuleSpec, Vec<u8>)>,
    ) -> Result<Self, RouterError> {
        let mut slots = Vec::new();
        let mut failed = Vec::new();
        for (spec, bytes) in modules {
            let spec = Arc::new(spec);
            match load(&engine, &spec, &bytes) {
                Ok(instance) => slots.push(slot_of_instance(instance)),
                Err((_, e)) if spec.on_error == Policy::Halt => return Err(e),
                Err((code, e)) => {
                    let version: Arc<str> = Arc::from(super::engine::hash_hex(&bytes));
                    let metrics = crate::metrics::global().module(&spec.name, &version);
                    metrics.failed(e.kind());
                    let mut counters = ModuleCounters::default();
                    counters.failed(e.kind());
                    tracing::error!(
                        message = "Module failed to load; running without it, its policy \
                                   applies to every event.",
                        module = %spec.name,
                        version = %short(&version),
                        error = %e,
                        policy = ?spec.on_error,
                        retried = code.is_some(),
                    );
                    failed.push(Failed {
                        spec,
                        version,
                        code,
                        error: e,
                        counters,
                        metrics,
                        retry_at: Instant::now() + LOAD_RETRY_FIRST,
                        backoff: LOAD_RETRY_FIRST,
                        staged: None,
                    });
                }
            }
        }
        let (tx, rx) = channel();
        let set = RouterSet {
            engine,
            slots,
            failed,
            sample: Arc::new(Mutex::new(VecDeque::new())),
            tx,
            rx,
            status: Arc::new(Mutex::new(Vec::new())),
            scratch: Routes::default(),
            deferred: Vec::new(),
        };
        set.publish_status(None);
        Ok(set)
    }

    /// Module statuses, shared.
    pub fn status(&self) -> StatusBoard {
        self.status.clone()
    }

    /// The topics the serving modules' subscriptions declared, each once.
    pub fn declared_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .slots
            .iter()
            .flat_map(|s| s.instance.topics().iter().map(|t| t.to_string()))
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// The serving version of module `name`.
    pub fn version_of(&self, name: &str) -> Option<&str> {
        self.slots
            .iter()
            .find(|s| s.instance.spec().name == name)
            .map(|s| s.instance.code().hash.as_str())
            .or_else(|| {
                self.failed
                    .iter()
                    .find(|f| f.spec.name == name)
                    .map(|f| &*f.version)
            })
    }

    fn publish_promoted(&self, name: &str, version: String) {
        let at_ms = now_ms();
        self.publish_status(Some((name, CandidateState::Promoted { version, at_ms })));
    }

    fn publish_status(&self, candidate: Option<(&str, CandidateState)>) {
        let Ok(mut board) = self.status.lock() else {
            return;
        };
        let old = std::mem::take(&mut *board);
        // The given candidate state for its module; the last one shown for the others.
        let candidate_of = |name: &str| match &candidate {
            Some((n, c)) if *n == name => c.clone(),
            _ => old
                .iter()
                .find(|m| m.name == name)
                .map(|m| m.candidate.clone())
                .unwrap_or(CandidateState::None),
        };
        for s in &self.slots {
            let name = s.instance.spec().name.clone();
            let cand = candidate_of(&name);
            board.push(ModuleStatus {
                name,
                version: s.instance.code().hash.clone(),
                previous: s.previous.as_ref().map(|p| p.hash.clone()),
                candidate: cand,
                counters: s.counters.clone(),
                quarantine: s.breaker.open().map(|o| Quarantine {
                    since_ms: o.since_ms,
                    probe_at_ms: o.until_ms,
                    reason: o.reason.clone(),
                    trips: o.trips,
                }),
                failed: None,
            });
        }
        for f in &self.failed {
            board.push(ModuleStatus {
                name: f.spec.name.clone(),
                version: f.version.to_string(),
                previous: None,
                candidate: candidate_of(&f.spec.name),
                counters: f.counters.clone(),
                quarantine: None,
                failed: Some(f.error.to_string()),
            });
        }
    }

    fn remember(&self, events: &[ChangeEvent]) {
        let Ok(mut sample) = self.sample.lock() else {
            return;
        };
        for ev in events.iter().rev().take(SAMPLE_EVENTS).rev() {
            if sample.len() == SAMPLE_EVENTS {
                sample.pop_front();
            }
            sample.push_back(Arc::new(ev.clone()));
        }
    }

    /// Routes `inputs` through every module that subscribed to them. Returns the
    /// deliveries in input order per module; an error means a module with the halt
    /// policy failed and nothing may be published for these inputs.
    pub fn route(&mut self, inputs: &[RouteInput<'_>]) -> Result<Vec<Delivery>, RouterError> {
        let mut out = Vec::with_capacity(inputs.len());
        let mut mine: Vec<RouteInput<'_>> = Vec::with_capacity(inputs.len());
        let mut index: Vec<usize> = Vec::with_capacity(inputs.len());
        for si in 0..self.slots.len() {
            mine.clear();
            index.clear();
            // Rows of one event share table and kind: match the subscription (table
            // patterns) once per event, not once per row.
            let mut last: Option<(*const crate::event::TableSchema, ChangeKind, bool)> = None;
            for (i, inp) in inputs.iter().enumerate() {
                let (table, kind) = (Arc::as_ptr(&inp.event.table), inp.event.kind);
                let wants = match last {
                    Some((t, k, w)) if t == table && k == kind => w,
                    _ => {
                        let w = self.slots[si].instance.wants(&inp.event.table, kind);
                        last = Some((table, kind, w));
                        w
                    }
                };
                if wants {
                    mine.push(*inp);
                    index.push(i);
                }
            }
            if mine.is_empty() {
                continue;
            }
            self.route_slot(si, &mine, &index, &mut out)?;
        }
        if !self.failed.is_empty() {
            index.clear();
            index.extend(0..inputs.len());
            for f in &mut self.failed {
                let name: Arc<str> = Arc::from(f.spec.name.as_str());
                let who = Who {
                    name: &name,
                    version: &f.version,
                };
                f.counters.events += inputs.len() as u64;
                f.metrics.events.inc_by(inputs.len() as u64);
                take_policy(
                    &mut out,
                    &index,
                    &f.spec.on_error,
                    &f.error,
                    who,
                    &mut f.counters,
                    &f.metrics,
                );
            }
        }
        Ok(out)
    }

    fn route_slot(
        &mut self,
        si: usize,
        mine: &[RouteInput<'_>],
        index: &[usize],
        out: &mut Vec<Delivery>,
    ) -> Result<(), RouterError> {
        let slot = &mut self.slots[si];
        let name: Arc<str> = Arc::from(slot.instance.spec().name.as_str());
        let version: Arc<str> = Arc::from(slot.instance.code().hash.as_str());
        let who = Who {
            name: &name,
            version: &version,
        };
        slot.counters.events += mine.len() as u64;
        slot.metrics.events.inc_by(mine.len() as u64);
        let spec = slot.instance.spec().clone();
        let started = Instant::now();
        let gate = slot.breaker.gate(started);
        let was_open = slot.breaker.open().is_some();
        if gate == Gate::Quarantined {
            let last = slot
                .breaker
                .open()
                .map(|o| o.reason.clone())
                .unwrap_or_default();
            let err = RouterError::Quarantined {
                module: spec.name.clone(),
                last,
            };
            if spec.on_error == Policy::Halt {
                return Err(err);
            }
            take_policy(
                out,
                index,
                &spec.on_error,
                &err,
                who,
                &mut slot.counters,
                &slot.metrics,
            );
            return Ok(());
        }
        let mut routes = std::mem::take(&mut self.scratch);
        // The batch call, and the restart before it if the last call failed, end within
        // one deadline; retrying its events one by one ends within a second one.
        slot.instance
            .set_cutoff(Some(started + spec.limits.deadline));
        let res = slot.instance.route(mine, &mut routes);
        slot.metrics
            .call_seconds
            .observe(started.elapsed().as_secs_f64());
        let result = match res {
            Ok(()) => {
                push_routes(out, index, &mut routes, who, slot);
                if gate == Gate::Probe {
                    tracing::info!(
                        message = "Module released from quarantine: its probe succeeded.",
                        module = %name,
                        version = %short(&version),
                    );
                }
                slot.breaker.record(
                    Instant::now(),
                    Outcome::Ok,
                    Duration::ZERO,
                    false,
                    String::new,
                );
                Ok(())
            }
            Err(e) => {
                count_failure(slot, &e);
                let policy = spec.on_error.clone();
                tracing::warn!(
                    message = "Module failed on a batch.",
                    module = %name,
                    version = %short(&version),
                    events = mine.len(),
                    error = %e,
                    policy = ?policy,
                    probe = gate == Gate::Probe,
                );
                if policy == Policy::Halt {
                    slot.metrics.action("halt");
                    self.scratch = routes;
                    slot.instance.set_cutoff(None);
                    return Err(e);
                }
                let mut any_ok = false;
                if gate == Gate::Probe || mine.len() == 1 {
                    // A probe's events are not retried: the version just failed again.
                    take_policy(
                        out,
                        index,
                        &policy,
                        &e,
                        who,
                        &mut slot.counters,
                        &slot.metrics,
                    );
                } else {
                    let cutoff = started + spec.limits.deadline * 2;
                    slot.instance.set_cutoff(Some(cutoff));
                    for (k, inp) in mine.iter().enumerate() {
                        if Instant::now() >= cutoff {
                            let spent = RouterError::RetryBudget {
                                module: spec.name.clone(),
                                budget_ms: spec.limits.deadline.as_millis() as u64,
                                first: e.to_string(),
                            };
                            count_failure(slot, &spent);
                            take_policy(
                                out,
                                &index[k..],
                                &policy,
                                &spent,
                                who,
                                &mut slot.counters,
                                &slot.metrics,
                            );
                            break;
                        }
                        let t = Instant::now();
                        let single = slot.instance.route(std::slice::from_ref(inp), &mut routes);
                        slot.metrics.call_seconds.observe(t.elapsed().as_secs_f64());
                        match single {
                            Ok(()) => {
                                any_ok = true;
                                push_routes(out, &index[k..=k], &mut routes, who, slot);
                            }
                            Err(err) => {
                                count_failure(slot, &err);
                                take_policy(
                                    out,
                                    &index[k..=k],
                                    &policy,
                                    &err,
                                    who,
                                    &mut slot.counters,
                                    &slot.metrics,
                                );
                            }
                        }
                    }
                }
                let now = Instant::now();
                let outcome = if any_ok {
                    Outcome::Partial
                } else {
                    Outcome::Failed
                };
                let tripped = slot.breaker.record(
                    now,
                    outcome,
                    now.duration_since(started),
                    gate == Gate::Probe,
                    || e.to_string(),
                );
                if tripped {
                    let open = slot.breaker.open().cloned();
                    slot.metrics.quarantined.set(1);
                    slot.metrics.quarantines.inc();
                    tracing::warn!(
                        message = "Module quarantined: not called until its next probe; \
                                   its events take its failure policy.",
                        module = %name,
                        version = %short(&version),
                        probe_in_ms = open.as_ref().map(|o| o.until_ms - o.since_ms),
                        trips = open.as_ref().map(|o| o.trips),
                        reason = %e,
                    );
                }
                Ok(())
            }
        };
        if slot.breaker.open().is_none() {
            slot.metrics.quarantined.set(0);
        }
        slot.instance.set_cutoff(None);
        self.scratch = routes;
        if was_open != slot.breaker.open().is_some() {
            // Operators see a quarantine (or its end) at once, not at the next boundary.
            self.publish_status(None);
        }
        result
    }

    /// Records a transaction's events for canaries and swaps in candidates that passed.
    /// Call only between transactions.
    pub fn at_transaction_boundary(&mut self, last_transaction: &[ChangeEvent]) {
        if !last_transaction.is_empty() {
            self.remember(last_transaction);
        }
        self.apply(true);
    }

    /// Applies canary outcomes that arrived meanwhile. Inside a transaction
    /// (`at_boundary` false) only outcomes that leave the serving version alone (staged,
    /// rejected) are applied; swaps wait for the next boundary. The pipeline calls this
    /// on its timer so outcomes show without traffic.
    pub fn apply(&mut self, at_boundary: bool) {
        let mut changed = at_boundary && self.retry_failed();
        let mut later = Vec::new();
        let mut incoming: Vec<Proposal> = std::mem::take(&mut self.deferred);
        while let Ok(p) = self.rx.try_recv() {
            incoming.push(p);
        }
        for p in incoming {
            match p {
                Proposal::Ready(instance, mode)
                    if !at_boundary && !matches!(mode, Mode::Stage { .. }) =>
                {
                    later.push(Proposal::Ready(instance, mode));
                }
                Proposal::Ready(instance, mode) => {
                    let name = instance.spec().name.clone();
                    if let Some(fi) = self.failed.iter().position(|f| f.spec.name == name) {
                        let version = instance.code().hash.clone();
                        if let Mode::Stage { canary_rows } = mode {
                            self.failed[fi].staged = Some(instance);
                            self.publish_status(Some((
                                &name,
                                CandidateState::Ready {
                                    version,
                                    canary_rows,
                                },
                            )));
                            continue;
                        }
                        // A candidate for a module that failed to load replaces it.
                        self.failed.remove(fi);
                        self.slots.push(slot_of_instance(*instance));
                        crate::metrics::module_swap(&name, "promoted");
                        tracing::info!(
                            message = "Module that had failed to load replaced by a candidate.",
                            module = %name,
                            version = %short(&version),
                        );
                        self.publish_promoted(&name, version);
                        changed = true;
                        continue;
                    }
                    let Some(slot) = self
                        .slots
                        .iter_mut()
                        .find(|s| s.instance.spec().name == name)
                    else {
                        continue;
                    };
                    let version = instance.code().hash.clone();
                    let explicit_previous = match mode {
                        Mode::Stage { canary_rows } => {
                            tracing::info!(
                                message = "Module candidate staged; waiting for promotion.",
                                module = %name,
                                version = %&version[..12],
                            );
                            slot.staged = Some(instance);
                            self.publish_status(Some((
                                &name,
                                CandidateState::Ready {
                                    version,
                                    canary_rows,
                                },
                            )));
                            continue;
                        }
                        Mode::Swap => None,
                        Mode::Rollback(prev) => Some(prev),
                    };
                    let rolled_back = explicit_previous.is_some();
                    let old = std::mem::replace(&mut slot.instance, *instance);
                    slot.metrics.quarantined.set(0);
                    slot.metrics = slot_metrics(&slot.instance);
                    slot.breaker = Breaker::new(slot.instance.spec().breaker);
                    crate::metrics::module_swap(
                        &name,
                        if rolled_back {
                            "rolled-back"
                        } else {
                            "promoted"
                        },
                    );
                    slot.previous = explicit_previous.or_else(|| Some(old.code().clone()));
                    tracing::info!(
                        message = "Module version swapped in.",
                        module = %name,
                        version = %&version[..12],
                        previous = %old.code().short_hash(),
                    );
                    self.publish_promoted(&name, version);
                    changed = true;
                }
                Proposal::Rejected {
                    name,
                    version,
                    reason,
                } => {
                    crate::metrics::module_swap(&name, "rejected");
                    tracing::warn!(
                        message = "Module candidate rejected; the serving version stays.",
                        module = %name,
                        version = %version,
                        reason = %reason,
                    );
                    self.publish_status(Some((
                        &name,
                        CandidateState::Rejected { version, reason },
                    )));
                }
            }
        }
        self.deferred = later;
        if !changed {
            // Counters move with every batch; refresh them at boundaries only.
            self.publish_status(None);
        }
    }

    /// Tries again, with backoff, the compiled modules that failed to instantiate or
    /// configure (a compile error would fail again; those wait for a candidate). Runs
    /// at transaction boundaries; each try is bounded by the module's deadline.
    fn retry_failed(&mut self) -> bool {
        let now = Instant::now();
        let mut loaded = false;
        let mut i = 0;
        while i < self.failed.len() {
            let f = &mut self.failed[i];
            let Some(code) = f.code.clone().filter(|_| now >= f.retry_at) else {
                i += 1;
                continue;
            };
            match ModuleInstance::new(&self.engine, code, f.spec.clone()) {
                Ok(instance) => {
                    tracing::info!(
                        message = "Module loaded on a retry after failing to load.",
                        module = %f.spec.name,
                        version = %short(&f.version),
                    );
                    self.failed.remove(i);
                    self.slots.push(slot_of_instance(instance));
                    loaded = true;
                }
                Err(e) => {
                    f.backoff = (f.backoff * 2).min(LOAD_RETRY_MAX);
                    f.retry_at = Instant::now() + f.backoff;
                    f.counters.failed(e.kind());
                    f.metrics.failed(e.kind());
                    f.error = e;
                    i += 1;
                }
            }
        }
        if loaded {
            self.publish_status(None);
        }
        loaded
    }

    /// Starts checking a candidate version of module `name` in the background: compile,
    /// instantiate, configure, canary on recent events. The result is applied (or
    /// reported) at the next transaction boundary.
    pub fn propose(&self, name: &str, bytes: Vec<u8>) -> Result<(), SwapError> {
        self.propose_as(name, bytes, false)
    }

    /// Like [`RouterSet::propose`], but a candidate that passes its canary is held
    /// (state `Ready`) until [`RouterSet::promote`] instead of swapping in.
    pub fn stage(&self, name: &str, bytes: Vec<u8>) -> Result<(), SwapError> {
        self.propose_as(name, bytes, true)
    }

    fn propose_as(&self, name: &str, bytes: Vec<u8>, stage: bool) -> Result<(), SwapError> {
        let spec = self
            .slots
            .iter()
            .find(|s| s.instance.spec().name == name)
            .map(|s| s.instance.spec().clone())
            .or_else(|| {
                self.failed
                    .iter()
                    .find(|f| f.spec.name == name)
                    .map(|f| f.spec.clone())
            })
            .ok_or_else(|| SwapError::UnknownModule(name.to_string()))?;
        let engine = self.engine.clone();
        let sample: Vec<Arc<ChangeEvent>> = self
            .sample
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let tx = self.tx.clone();
        let name = name.to_string();
        if stage {
            let version = super::engine::hash_hex(&bytes);
            self.publish_status(Some((&name, CandidateState::Canary { version })));
        }
        std::thread::Builder::new()
            .name(format!("sluice-canary-{name}"))
            .spawn(move || {
                let p = match canary(&engine, spec, &bytes, &sample) {
                    Ok((instance, canary_rows)) => Proposal::Ready(
                        Box::new(instance),
                        if stage {
                            Mode::Stage { canary_rows }
                        } else {
                            Mode::Swap
                        },
                    ),
                    Err((version, e)) => Proposal::Rejected {
                        name,
                        version,
                        reason: e.to_string(),
                    },
                };
                let _ = tx.send(p);
            })
            .map(|_| ())
            .map_err(SwapError::Thread)
    }

    /// Swaps module `name` back to its previous version (at the next boundary).
    pub fn rollback(&self, name: &str) -> Result<String, SwapError> {
        let slot = self
            .slots
            .iter()
            .find(|s| s.instance.spec().name == name)
            .ok_or_else(|| SwapError::UnknownModule(name.to_string()))?;
        let prev = slot
            .previous
            .clone()
            .ok_or_else(|| SwapError::NoPrevious(name.to_string()))?;
        let instance =
            ModuleInstance::new(&self.engine, prev.clone(), slot.instance.spec().clone())?;
        let current = slot.instance.code().clone();
        self.tx
            .send(Proposal::Ready(Box::new(instance), Mode::Rollback(current)))
            .map_err(|_| SwapError::Closed)?;
        Ok(prev.hash.clone())
    }

    /// Swaps in the staged candidate of module `name` at the next transaction boundary.
    /// Returns its version.
    pub fn promote(&mut self, name: &str) -> Result<String, SwapError> {
        if let Some(f) = self.failed.iter_mut().find(|f| f.spec.name == name) {
            let staged = f
                .staged
                .take()
                .ok_or_else(|| SwapError::NoCandidate(name.to_string()))?;
            let version = staged.code().hash.clone();
            self.tx
                .send(Proposal::Ready(staged, Mode::Swap))
                .map_err(|_| SwapError::Closed)?;
            return Ok(version);
        }
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.instance.spec().name == name)
            .ok_or_else(|| SwapError::UnknownModule(name.to_string()))?;
        let staged = slot
            .staged
            .take()
            .ok_or_else(|| SwapError::NoCandidate(name.to_string()))?;
        let version = staged.code().hash.clone();
        self.tx
            .send(Proposal::Ready(staged, Mode::Swap))
            .map_err(|_| SwapError::Closed)?;
        Ok(version)
    }
}

/// Who decided: the module name and version of a slot, shared by its deliveries.
#[derive(Clone, Copy)]
struct Who<'a> {
    name: &'a Arc<str>,
    version: &'a Arc<str>,
}

fn short(version: &str) -> &str {
    version.get(..12).unwrap_or(version)
}

fn count_failure(slot: &mut Slot, e: &RouterError) {
    slot.counters.failed(e.kind());
    slot.metrics.failed(e.kind());
    if let RouterError::Trap { code, .. } = e {
        slot.metrics.trapped(code);
    }
}

/// Applies a skip or dead-letter policy to the inputs `inputs` that failed with `err`.
/// Counted once per call, not per input: a quarantined module's batches come here
/// whole, and must cost next to nothing.
fn take_policy(
    out: &mut Vec<Delivery>,
    inputs: &[usize],
    policy: &Policy,
    err: &RouterError,
    who: Who<'_>,
    counters: &mut ModuleCounters,
    metrics: &ModuleMetrics,
) {
    let n = inputs.len() as u64;
    if n == 0 {
        return;
    }
    match policy {
        Policy::DeadLetter(topic) => {
            counters.dead_lettered += n;
            metrics.action_n("dead-letter", n);
            let topic: Arc<str> = Arc::from(topic.as_str());
            let why: Arc<str> = Arc::from(err.to_string());
            out.extend(inputs.iter().map(|&input| Delivery {
                input,
                route: Route {
                    topic: topic.clone(),
                    key: None,
                    partition: None,
                    headers: Vec::new(),
                },
                module: who.name.clone(),
                version: who.version.clone(),
                dead_letter: Some((err.kind(), why.clone())),
            }));
        }
        Policy::Skip | Policy::Halt => {
            counters.skipped += n;
            metrics.action_n("skip", n);
        }
    }
}

/// Turns a module's destinations into deliveries; `index[i]` is the caller's index of
/// the module's input `i`.
fn push_routes(
    out: &mut Vec<Delivery>,
    index: &[usize],
    routes: &mut Routes,
    who: Who<'_>,
    slot: &mut Slot,
) {
    let dropped = routes.dropped() as u64;
    slot.counters.dropped += dropped;
    slot.metrics.dropped.inc_by(dropped);
    let before = out.len();
    out.extend(routes.drain().map(|(input, route)| Delivery {
        input: index[input],
        route,
        module: who.name.clone(),
        version: who.version.clone(),
        dead_letter: None,
    }));
    let routed = (out.len() - before) as u64;
    slot.counters.routed += routed;
    slot.metrics.routed.inc_by(routed);
}

/// Compiles and canaries a candidate; returns a ready instance with the number of
/// rows its canary routed, or (version, reason).
fn canary(
    engine: &RouterEngine,
    spec: Arc<ModuleSpec>,
    bytes: &[u8],
    sample: &[Arc<ChangeEvent>],
) -> Result<(ModuleInstance, usize), (String, RouterError)> {
    let started = Instant::now();
    // The version is the bytes' hash, known even when they do not compile, so the
    // operator sees which upload was rejected.
    let version = super::engine::hash_hex(bytes);
    let (code, _) = engine
        .compile(&spec.name, bytes)
        .map_err(|e| (version.clone(), e))?;
    let mut instance = ModuleInstance::new(engine, code, spec).map_err(|e| (version.clone(), e))?;
    let inputs: Vec<RouteInput<'_>> = sample
        .iter()
        .filter(|ev| instance.wants(&ev.table, ev.kind))
        .flat_map(|ev| (0..ev.rows.len().max(1)).map(move |row| RouteInput { event: ev, row }))
        .take(1000)
        .collect();
    let mut out = Routes::default();
    instance
        .route(&inputs, &mut out)
        .map_err(|e| (version.clone(), e))?;
    if inputs.is_empty() {
        // Nothing it subscribes to has been seen yet (a fresh agent, a quiet table):
        // "passed" would overstate what was tried.
        tracing::warn!(
            message = "Module candidate's canary ran on no rows: it compiled, instantiated and configured, but no recent change it subscribes to was there to route.",
            module = %instance.spec().name,
            version = %&version[..12],
            recent_events = sample.len(),
        );
    } else {
        tracing::info!(
            message = "Module candidate passed its canary.",
            module = %instance.spec().name,
            version = %&version[..12],
            sample_events = inputs.len(),
            took_ms = started.elapsed().as_millis() as u64,
        );
    }
    // A fresh instance serves, so canary state never leaks into production decisions.
    let fresh = ModuleInstance::new(engine, instance.code().clone(), instance.spec().clone())
        .map_err(|e| (version.clone(), e))?;
    Ok((fresh, inputs.len()))
}
