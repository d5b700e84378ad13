//! Logging to the agent's log (inside the agent) or to the test harness (natively).

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected, handled.
    Warn,
    /// Something not handled.
    Error,
}

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static CAPTURED: std::cell::RefCell<Vec<(Level, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes a log line.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::sluice::router::host;
        let l = match level {
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        };
        host::log(l, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    CAPTURED.with(|c| c.borrow_mut().push((level, message.to_string())));
}

/// Natively: the lines logged on this thread since the last call.
#[cfg(not(target_arch = "wasm32"))]
pub fn take_captured() -> Vec<(Level, String)> {
    CAPTURED.with(|c| std::mem::take(&mut *c.borrow_mut()))
}
