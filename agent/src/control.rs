//! The control plane shared by the admin API and the pipeline: operator commands, the
//! pause switch, and the state `/readyz` and `/v1/checkpoint` report.
//!
//! Invariants: the admin side never touches the router set or the sink directly; it
//! sends [`Command`]s that the pipeline applies between source items (module swaps
//! still happen only at transaction boundaries), and waits for the pipeline's reply.
//! The state lives across pipeline restarts; each run refreshes it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::event::Checkpoint;
use crate::router::StatusBoard;

/// Reply to a command: a JSON body on success, a message on refusal.
pub type Reply = oneshot::Sender<Result<serde_json::Value, CommandError>>;

/// Why the pipeline refused a command.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommandError {
    /// No such module, topic, ...
    #[error("{0}")]
    NotFound(String),
    /// The command does not apply now (no candidate, no previous version, no modules).
    #[error("{0}")]
    Conflict(String),
    /// The pipeline is not running (starting or restarting).
    #[error("the pipeline is not running; try again shortly")]
    Unavailable,
    /// The operation failed.
    #[error("{0}")]
    Failed(String),
}

impl From<crate::router::SwapError> for CommandError {
    fn from(e: crate::router::SwapError) -> Self {
        use crate::router::SwapError as S;
        match e {
            S::UnknownModule(_) => CommandError::NotFound(e.to_string()),
            S::NoCandidate(_) | S::NoPrevious(_) => CommandError::Conflict(e.to_string()),
            S::Closed => CommandError::Unavailable,
            S::Load(_) | S::Thread(_) => CommandError::Failed(e.to_string()),
        }
    }
}

/// An operator's request, applied by the pipeline.
#[derive(Debug)]
pub enum CommandKind {
    /// Compile and canary a candidate for a module; it is held until promoted.
    Load {
        /// Module name.
        module: String,
        /// Component bytes.
        bytes: Vec<u8>,
    },
    /// Swap in a module's staged candidate at the next transaction boundary.
    Promote {
        /// Module name.
        module: String,
    },
    /// Swap a module back to its previous version at the next transaction boundary.
    Rollback {
        /// Module name.
        module: String,
    },
    /// Create a topic on the broker (Kafka sink only).
    CreateTopic {
        /// Topic name.
        name: String,
        /// Partitions (the configured default when absent).
        partitions: Option<i32>,
    },
}

/// A command and where its answer goes.
#[derive(Debug)]
pub struct Command {
    /// What to do.
    pub kind: CommandKind,
    /// Where the answer goes.
    pub reply: Reply,
}

/// What `/readyz` and `/v1/checkpoint` report.
#[derive(Debug, Clone)]
pub struct RunState {
    /// A run is active (source connected at least once, sink open).
    pub running: bool,
    /// The last sink failure, cleared when a run starts.
    pub sink_error: Option<String>,
    /// The last checkpoint written.
    pub checkpoint: Option<Checkpoint>,
    /// The last transaction boundary read from the source.
    pub read: Option<Checkpoint>,
    /// When the checkpoint last advanced, or the run started.
    pub advanced_at: Instant,
    /// Whether there is read work the checkpoint has not covered yet.
    pub behind: bool,
    /// (in flight, acknowledged) messages.
    pub messages: (u64, u64),
    /// What the publisher reports of itself (the Canal server: its destinations,
    /// clients and cursors), as of the last checkpoint step.
    pub publisher: Option<serde_json::Value>,
}

/// Shared between the admin server and the pipeline.
pub struct Control {
    commands: mpsc::Sender<Command>,
    inbox: tokio::sync::Mutex<mpsc::Receiver<Command>>,
    pause: watch::Sender<bool>,
    state: Mutex<RunState>,
    status: Mutex<Option<StatusBoard>>,
    /// A checkpoint that has work behind it and has not moved for this long is stalled.
    pub stall_after: Duration,
}

impl Control {
    /// A fresh control plane.
    pub fn new(stall_after: Duration) -> Self {
        let (tx, rx) = mpsc::channel(16);
        Control {
            commands: tx,
            inbox: tokio::sync::Mutex::new(rx),
            pause: watch::Sender::new(false),
            state: Mutex::new(RunState {
                running: false,
                sink_error: None,
                checkpoint: None,
                read: None,
                advanced_at: Instant::now(),
                behind: false,
                messages: (0, 0),
                publisher: None,
            }),
            status: Mutex::new(None),
            stall_after,
        }
    }

    /// Sends a command to the pipeline and waits (bounded) for its answer.
    pub async fn ask(&self, kind: CommandKind) -> Result<serde_json::Value, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command { kind, reply })
            .await
            .map_err(|_| CommandError::Unavailable)?;
        match tokio::time::timeout(Duration::from_secs(60), answer).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(CommandError::Unavailable),
            Err(_) => Err(CommandError::Failed(
                "the pipeline did not answer within 60 s".into(),
            )),
        }
    }

    /// The pipeline's end of the command channel (one run holds it at a time).
    pub fn inbox(&self) -> &tokio::sync::Mutex<mpsc::Receiver<Command>> {
        &self.inbox
    }

    /// Pauses or resumes reading from the source.
    pub fn set_paused(&self, paused: bool) {
        self.pause.send_replace(paused);
        crate::metrics::global().paused.set(i64::from(paused));
    }

    /// Whether reading is paused.
    pub fn paused(&self) -> bool {
        *self.pause.borrow()
    }

    /// A receiver that wakes on pause changes.
    pub fn pause_watch(&self) -> watch::Receiver<bool> {
        self.pause.subscribe()
    }

    /// Updates the run state.
    pub fn update(&self, f: impl FnOnce(&mut RunState)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
    }

    /// A copy of the run state.
    pub fn state(&self) -> Option<RunState> {
        self.state.lock().ok().map(|s| s.clone())
    }

    /// Publishes the running router set's status board.
    pub fn set_status(&self, board: Option<StatusBoard>) {
        if let Ok(mut s) = self.status.lock() {
            *s = board;
        }
    }

    /// The module statuses of the running router set (empty without modules).
    pub fn modules(&self) -> Vec<crate::router::ModuleStatus> {
        let board = self.status.lock().ok().and_then(|s| s.clone());
        board
            .and_then(|b| b.lock().ok().map(|v| v.clone()))
            .unwrap_or_default()
    }

    /// Readiness: connected to the source and the sink, and the checkpoint not stalled.
    /// Returns the reasons it is not ready (empty when ready).
    pub fn not_ready(&self) -> Vec<String> {
        let mut why = Vec::new();
        let Some(s) = self.state() else {
            return vec!["state unavailable".into()];
        };
        if !s.running {
            why.push("the pipeline is starting or restarting".into());
        }
        if crate::metrics::global().source_connected.get() != 1 {
            why.push("the binlog stream is not connected".into());
        }
        if let Some(e) = &s.sink_error {
            why.push(format!("the sink failed: {e}"));
        }
        if s.behind && s.advanced_at.elapsed() > self.stall_after {
            why.push(format!(
                "the checkpoint has not advanced for {} s with work pending",
                s.advanced_at.elapsed().as_secs()
            ));
        }
        if self.paused() {
            why.push("paused by an operator".into());
        }
        for m in self.modules() {
            if let Some(f) = &m.failed {
                why.push(format!(
                    "module `{}` failed to load (its policy applies to every event): {f}",
                    m.name
                ));
            }
            if let Some(q) = &m.quarantine {
                why.push(format!(
                    "module `{}` is quarantined (version {}, {} time(s)): {}",
                    m.name,
                    m.version.get(..12).unwrap_or(&m.version),
                    q.trips,
                    q.reason
                ));
            }
        }
        why
    }
}

impl Default for Control {
    fn default() -> Self {
        Self::new(Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{CandidateState, ModuleCounters, ModuleStatus, Quarantine};
    use std::sync::Arc;

    /// The admin API answers a swap by why it cannot start: an unknown module is 404
    /// (not a 409 as if it merely had nothing to promote), a shutting-down pipeline 503.
    #[test]
    fn swap_errors_map_to_the_answer_their_cause_needs() {
        use crate::router::SwapError as S;
        let m = || "m".to_string();
        assert!(matches!(
            CommandError::from(S::UnknownModule(m())),
            CommandError::NotFound(t) if t.contains("no module named `m`")
        ));
        assert!(matches!(
            CommandError::from(S::NoCandidate(m())),
            CommandError::Conflict(t) if t.contains("no candidate")
        ));
        assert!(matches!(
            CommandError::from(S::NoPrevious(m())),
            CommandError::Conflict(_)
        ));
        assert!(matches!(
            CommandError::from(S::Closed),
            CommandError::Unavailable
        ));
        assert!(matches!(
            CommandError::from(S::Thread(std::io::Error::other("no threads"))),
            CommandError::Failed(t) if t.contains("no threads")
        ));
    }

    fn status(name: &str, quarantine: Option<Quarantine>) -> ModuleStatus {
        ModuleStatus {
            name: name.into(),
            version: "0123456789abcdef".into(),
            previous: None,
            candidate: CandidateState::None,
            counters: ModuleCounters::default(),
            quarantine,
            failed: None,
        }
    }

    #[test]
    fn a_quarantined_module_is_a_readiness_reason_naming_it() {
        let c = Control::default();
        let board = Arc::new(Mutex::new(vec![
            status("good", None),
            status(
                "bad",
                Some(Quarantine {
                    since_ms: 1,
                    probe_at_ms: 1001,
                    reason: "module `bad` trapped (unreachable): boom".into(),
                    trips: 2,
                }),
            ),
        ]));
        c.set_status(Some(board.clone()));
        let why = c.not_ready();
        let q: Vec<&String> = why.iter().filter(|w| w.contains("quarantined")).collect();
        assert_eq!(q.len(), 1, "{why:?}");
        assert!(
            q[0].contains("`bad`") && q[0].contains("0123456789ab") && q[0].contains("boom"),
            "{}",
            q[0]
        );
        // Released: the reason goes.
        if let Ok(mut b) = board.lock() {
            b[1].quarantine = None;
        }
        assert!(!c.not_ready().iter().any(|w| w.contains("quarantined")));
    }
}
