//! What the agent's configuration says about a module: its name, configuration, the
//! topics it may write to, its limits, its failure policy and its circuit breaker.

use std::time::Duration;

use super::breaker::BreakerSpec;

/// Topics a module may route to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedTopics {
    /// Any topic (for trusted, platform-owned modules).
    Any,
    /// Exactly these topics, or topics starting with these prefixes (`orders.*`).
    Only(Vec<String>),
}

impl AllowedTopics {
    /// Whether `topic` is allowed. An entry ending in `*` is a prefix.
    pub fn allows(&self, topic: &str) -> bool {
        match self {
            AllowedTopics::Any => true,
            AllowedTopics::Only(list) => list.iter().any(|a| match a.strip_suffix('*') {
                Some(prefix) => topic.starts_with(prefix),
                None => a == topic,
            }),
        }
    }

    /// Human-readable form for errors.
    pub fn describe(&self) -> String {
        match self {
            AllowedTopics::Any => "any topic".into(),
            AllowedTopics::Only(l) => l.join(", "),
        }
    }
}

/// Hard limits of one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory cap.
    pub memory_bytes: usize,
    /// Time one call may run.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            deadline: Duration::from_millis(50),
        }
    }
}

/// What happens to events when a module fails on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Stop the pipeline (nothing is lost; an operator decides).
    Halt,
    /// Drop the events for this module (counted and logged).
    Skip,
    /// Publish the events to this topic with the failure reason in headers.
    DeadLetter(String),
}

/// One module as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSpec {
    /// Unique name (the business line owning it).
    pub name: String,
    /// The module's `config` table, flattened to strings.
    pub config: Vec<(String, String)>,
    /// Topics its decisions may name.
    pub topics: AllowedTopics,
    /// Hard limits.
    pub limits: Limits,
    /// Failure policy.
    pub on_error: Policy,
    /// When to quarantine a failing version.
    pub breaker: BreakerSpec,
}

impl ModuleSpec {
    /// A spec with default limits, halt policy and any topic allowed.
    pub fn new(name: &str) -> Self {
        ModuleSpec {
            name: name.to_string(),
            config: Vec::new(),
            topics: AllowedTopics::Any,
            limits: Limits::default(),
            on_error: Policy::Halt,
            breaker: BreakerSpec::for_deadline(Limits::default().deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_exact_topics() {
        let a = AllowedTopics::Only(vec!["orders.*".into(), "audit".into()]);
        assert!(a.allows("orders.eu"));
        assert!(a.allows("audit"));
        assert!(!a.allows("audit2"));
        assert!(!a.allows("payments"));
    }
}
