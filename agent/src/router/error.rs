//! Why a module could not be loaded or a batch could not be routed.
//!
//! Callers branch on the kind: load errors refuse the module (the old version keeps
//! serving); route errors go through the module's failure policy.

/// Why an operator's module swap (candidate, promote, rollback) cannot be started.
/// The admin API answers by kind: unknown module 404, nothing to swap 409.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    /// No module of that name is configured.
    #[error("no module named `{0}` is configured")]
    UnknownModule(String),
    /// Promote: no candidate passed its canary.
    #[error("module `{0}` has no candidate that passed its canary; load one first")]
    NoCandidate(String),
    /// Rollback: the module never ran another version.
    #[error("module `{0}` has no previous version")]
    NoPrevious(String),
    /// Rollback: the previous version no longer loads.
    #[error(transparent)]
    Load(#[from] RouterError),
    /// The canary thread could not be started.
    #[error("cannot start the canary thread: {0}")]
    Thread(std::io::Error),
    /// The router set is shutting down.
    #[error("the router set is shutting down")]
    Closed,
}

/// A routing failure.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouterError {
    /// The file is not a component, or does not fit the `router` world.
    #[error("module `{module}`: {detail}")]
    Invalid {
        /// Module name.
        module: String,
        /// What is wrong.
        detail: String,
    },
    /// The component imports something other than Sluice's own interfaces.
    #[error(
        "module `{module}` imports {imports:?}; modules may import only sluice:router \
         interfaces (no WASI, clocks, files, sockets or randomness)"
    )]
    ForbiddenImports {
        /// Module name.
        module: String,
        /// The offending imports.
        imports: Vec<String>,
    },
    /// `configure` failed or declared something the module may not do.
    #[error("module `{module}` refused its configuration: {detail}")]
    Config {
        /// Module name.
        module: String,
        /// What it said, or what is not allowed.
        detail: String,
    },
    /// The module trapped (panic, unreachable, out-of-bounds access).
    #[error("module `{module}` trapped ({code}): {detail}")]
    Trap {
        /// Module name.
        module: String,
        /// The trap code: `unreachable` (a Rust panic), `stack-overflow`,
        /// `out-of-bounds`, `divide-by-zero`, ... (see [`trap_code`]).
        code: &'static str,
        /// The trap's description and the innermost wasm function, when known.
        detail: String,
    },
    /// The module is quarantined by its circuit breaker: it was not called, and its
    /// events took its failure policy.
    #[error("module `{module}` is quarantined after repeated failures (last: {last})")]
    Quarantined {
        /// Module name.
        module: String,
        /// The failure that tripped the breaker.
        last: String,
    },
    /// A batch's isolation retries ran out of their time budget; the remaining events
    /// were not retried one by one and took the failure policy.
    #[error(
        "module `{module}`: not retried event by event, the batch's {budget_ms} ms \
         retry budget is spent (batch failed with: {first})"
    )]
    RetryBudget {
        /// Module name.
        module: String,
        /// The budget.
        budget_ms: u64,
        /// The batch's failure.
        first: String,
    },
    /// The module ran past its deadline.
    #[error("module `{module}` ran past its {deadline_ms} ms deadline")]
    Timeout {
        /// Module name.
        module: String,
        /// The deadline.
        deadline_ms: u64,
    },
    /// The module tried to grow its memory past its cap.
    #[error("module `{module}` exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit {
        /// Module name.
        module: String,
        /// The cap.
        limit_bytes: usize,
    },
    /// The module returned an error or malformed decisions.
    #[error("module `{module}` returned bad output: {detail}")]
    BadOutput {
        /// Module name.
        module: String,
        /// What is wrong.
        detail: String,
    },
    /// A decision names a topic outside the module's allowed topics.
    #[error("module `{module}` routed to topic `{topic}`, outside its allowed topics ({allowed})")]
    ForeignTopic {
        /// Module name.
        module: String,
        /// The topic.
        topic: String,
        /// What is allowed.
        allowed: String,
    },
}

impl RouterError {
    /// Short kind name, for metrics and dead-letter headers.
    pub fn kind(&self) -> &'static str {
        match self {
            RouterError::Invalid { .. } => "invalid",
            RouterError::ForbiddenImports { .. } => "forbidden-imports",
            RouterError::Config { .. } => "config",
            RouterError::Trap { .. } => "trap",
            RouterError::Timeout { .. } => "timeout",
            RouterError::MemoryLimit { .. } => "memory-limit",
            RouterError::BadOutput { .. } => "bad-output",
            RouterError::ForeignTopic { .. } => "foreign-topic",
            RouterError::Quarantined { .. } => "quarantined",
            RouterError::RetryBudget { .. } => "retry-budget",
        }
    }
}

/// A short, stable name of a wasm trap, for errors, logs and metric labels.
pub fn trap_code(trap: &wasmtime::Trap) -> &'static str {
    use wasmtime::Trap as T;
    match trap {
        T::StackOverflow => "stack-overflow",
        T::MemoryOutOfBounds => "out-of-bounds",
        T::HeapMisaligned => "misaligned",
        T::TableOutOfBounds => "table-out-of-bounds",
        T::IndirectCallToNull => "null-call",
        T::BadSignature => "bad-signature",
        T::IntegerOverflow => "integer-overflow",
        T::IntegerDivisionByZero => "divide-by-zero",
        T::BadConversionToInteger => "bad-conversion",
        T::UnreachableCodeReached => "unreachable",
        T::Interrupt => "interrupt",
        T::OutOfFuel => "out-of-fuel",
        _ => "other",
    }
}
