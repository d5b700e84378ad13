//! What the agent gives a module instance: its store data (memory limiter, name and
//! version for logs) and the host functions of the WIT contract (`log`).
//!
//! Invariants: a module never grows memory past its limit (the limiter refuses and
//! remembers it refused, so the trap is classified as a memory limit); log lines go
//! through a token bucket shared by every store of one module instance, so a module
//! that fails and is restarted does not get a fresh budget.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use wasmtime::ResourceLimiter;

use super::bindings::sluice::router::{host, types as wit};

/// Log lines a module may write per second, sustained; also the burst it may write at
/// once after a quiet second. Lines past the budget are counted, not written.
pub const LOG_LINES_PER_SECOND: f64 = 20.0;

/// Longest log line kept, in characters.
const LOG_LINE_CHARS: usize = 2000;

/// A token bucket of log lines, shared by every store of one module instance so a
/// module that fails (and is restarted) does not get a fresh budget each time.
#[derive(Debug)]
pub(super) struct LogBucket {
    tokens: f64,
    at: Instant,
    dropped: Counter,
}

impl LogBucket {
    pub(super) fn new(dropped: Counter) -> Self {
        LogBucket {
            tokens: LOG_LINES_PER_SECOND,
            at: Instant::now(),
            dropped,
        }
    }

    pub(super) fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * LOG_LINES_PER_SECOND;
        self.tokens = (self.tokens + refill).min(LOG_LINES_PER_SECOND);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped.inc();
            false
        }
    }
}

/// Store data of a module instance.
pub struct ModuleState {
    pub(super) limiter: Limiter,
    pub(super) name: Arc<str>,
    pub(super) version: Arc<str>,
    pub(super) logs: Arc<Mutex<LogBucket>>,
}

pub(super) struct Limiter {
    pub(super) max_memory: usize,
    /// Set when the module asked for more memory than allowed: a trap that follows is
    /// reported as a memory limit, not a bug.
    pub(super) denied: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

impl host::Host for ModuleState {
    fn log(&mut self, level: host::Level, message: String) {
        let allowed = self.logs.lock().map(|mut b| b.take()).unwrap_or(false);
        if !allowed {
            return;
        }
        let message: String = message.chars().take(LOG_LINE_CHARS).collect();
        let (m, v) = (&*self.name, &*self.version);
        match level {
            host::Level::Debug => tracing::debug!(module = m, version = v, "{message}"),
            host::Level::Info => tracing::info!(module = m, version = v, "{message}"),
            host::Level::Warn => tracing::warn!(module = m, version = v, "{message}"),
            host::Level::Error => tracing::error!(module = m, version = v, "{message}"),
        }
    }
}

impl wit::Host for ModuleState {}
