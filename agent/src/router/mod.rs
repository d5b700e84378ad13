//! The router platform: routing modules (WebAssembly components of the `sluice:router`
//! world) decide, per event, whether to drop it or where to publish it.
//!
//! Layout: [`engine`] (one engine, linker and code cache for all modules), [`module`] (a
//! live instance: limits, batching, decision validation), [`spec`] (what the config
//! says about a module), [`error`] (typed failures, branched on by policies),
//! [`breaker`] (quarantine of a version that keeps failing), [`set`] (all modules:
//! policies, isolation retries within a time budget, hot swap).

pub mod bindings;
pub mod breaker;
pub mod build;
pub mod builtin;
pub mod engine;
pub mod error;
pub mod host;
pub mod module;
pub mod set;
pub mod spec;
pub mod tools;
pub mod watch;

pub use breaker::BreakerSpec;
pub use engine::{ModuleCode, RouterEngine};
pub use error::{RouterError, SwapError};
pub use module::{ModuleInstance, Route, RouteInput, Routes};
pub use set::{
    CandidateState, Delivery, ModuleCounters, ModuleStatus, Quarantine, RouterSet, StatusBoard,
};
pub use spec::{AllowedTopics, Limits, ModuleSpec, Policy};
