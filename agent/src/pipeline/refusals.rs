//! What cannot be published as it is: a message over `sink.max_message_bytes`, or one
//! the broker refused for good (too large, unroutable, rejected), through the deciding
//! module's policy or the sink's oversize policy.
//!
//! Invariants: nothing refused is retried in a loop or ends in an exit that repeats on
//! every restart unless its owner chose `halt`; a reference sent in a message's place
//! goes out in the same transaction before the original is settled, so the checkpoint
//! never passes a transaction whose reference is not acknowledged; a reference refused
//! in turn halts instead of being referred again.

use std::sync::Arc;

use crate::event::ChangeEvent;
use crate::metrics;
use crate::router::{Delivery, Policy};
use crate::sink::config::Oversize;
use crate::sink::{HeaderValue, OutMessage, RefusalReason, SinkError};

use super::Run;

/// What happens to a message too large to publish.
pub(super) enum OversizeAction {
    /// Dropped, counted and logged.
    Skip,
    /// A reference (position, table, sizes) goes to this topic instead.
    DeadLetter(String),
    /// The agent stops with an error naming the module and the settings.
    Halt,
}

impl Run<'_> {
    /// The failure policy of module `name`, if it is one.
    pub(super) fn module_policy(&self, name: &str) -> Option<Policy> {
        self.cfg
            .modules
            .iter()
            .find(|(m, _)| *m.name == *name)
            .map(|(m, _)| m.on_error.clone())
    }

    /// What to do with a message too large to publish, decided by `module` (empty:
    /// none). `sink.on_oversize = "dead-letter"` sends a reference to its topic; else
    /// the deciding module's policy applies (skip: dropped and counted; dead-letter: a
    /// reference to the module's dead-letter topic; halt: the agent stops naming the
    /// module, so a module cannot make the agent exit on every restart unless its owner
    /// chose halt). A message already on its way to a dead-letter topic halts rather
    /// than being referred again.
    pub(super) fn oversize_action(&self, module: &str, dead_letter: bool) -> OversizeAction {
        match (&self.cfg.sink.oversize, self.module_policy(module)) {
            (Oversize::DeadLetter(topic), _) => OversizeAction::DeadLetter(topic.clone()),
            (Oversize::Halt, Some(Policy::DeadLetter(topic))) if !dead_letter => {
                OversizeAction::DeadLetter(topic)
            }
            (Oversize::Halt, Some(Policy::Skip)) => OversizeAction::Skip,
            _ => OversizeAction::Halt,
        }
    }

    /// Applies the oversize policy to one message. What counts is what the broker
    /// stores, key and headers included (a module's 50 MB key weighs 50 MB); see
    /// [`Run::oversize_action`]. `None`: the message is dropped.
    pub(super) fn check_size(
        &self,
        mut msg: OutMessage,
        ev: &ChangeEvent,
        d: &Delivery,
    ) -> anyhow::Result<Option<OutMessage>> {
        let limit = self.cfg.sink.max_message_bytes;
        let bytes = msg.wire_bytes();
        if bytes <= limit {
            return Ok(Some(msg));
        }
        let key_bytes = msg.key.as_ref().map_or(0, Vec::len);
        let to = match self.oversize_action(&d.module, d.dead_letter.is_some()) {
            OversizeAction::DeadLetter(to) => to,
            OversizeAction::Skip => {
                crate::metrics::global()
                    .module(&d.module, &d.version)
                    .action("skip-oversize");
                tracing::warn!(
                    message = "Message over sink.max_message_bytes skipped by its module's policy.",
                    module = %d.module,
                    topic = %msg.topic,
                    position = %msg.position(),
                    bytes,
                    key_bytes,
                    limit,
                );
                return Ok(None);
            }
            OversizeAction::Halt => {
                return Err(SinkError::Oversize {
                    topic: msg.topic.to_string(),
                    position: msg.position(),
                    module: d.module.to_string(),
                    bytes,
                    limit,
                }
                .into());
            }
        };
        msg.payload = serde_json::json!({
            "oversize": true,
            "bytes": bytes,
            "payload_bytes": msg.payload.len(),
            "key_bytes": key_bytes,
            "topic": &*msg.topic,
            "position": msg.position(),
            "database": &ev.table.database,
            "table": &ev.table.table,
            "module": &*d.module,
        })
        .to_string()
        .into_bytes();
        msg.topic = Arc::from(to.as_str());
        msg.partition = None;
        msg.key = None;
        msg.headers
            .retain(|(k, v)| crate::sink::kept_on_reference(k, v));
        Ok(Some(msg))
    }

    /// Puts the messages the broker refused as too large through the oversize policy
    /// ([`Run::oversize_action`]): skipped, or a reference sent to the dead-letter
    /// topic in the same transaction (sent before the original is settled, so the
    /// checkpoint never passes a transaction whose reference is not acknowledged), or
    /// the agent stops naming the module and both limits.
    pub(super) fn settle_refused(&mut self) -> Result<(), SinkError> {
        for r in self.sink.take_refused() {
            let version = r.header("sluice.module.version").unwrap_or_default();
            let was_dead_letter = r.header("sluice.error.kind").is_some();
            let action = match r.reason {
                RefusalReason::TooLarge => self.oversize_action(&r.module, was_dead_letter),
                // Unroutable: the module's policy alone (the sink's oversize policy is
                // about size).
                RefusalReason::Unroutable | RefusalReason::Rejected => {
                    match self.module_policy(&r.module) {
                        Some(Policy::Skip) => OversizeAction::Skip,
                        Some(Policy::DeadLetter(t)) if !was_dead_letter => {
                            OversizeAction::DeadLetter(t)
                        }
                        _ => OversizeAction::Halt,
                    }
                }
            };
            let action = match action {
                // A reference refused in turn must not be referred again.
                OversizeAction::DeadLetter(to) if to == r.topic => OversizeAction::Halt,
                a => a,
            };
            match action {
                OversizeAction::Halt if r.reason == RefusalReason::Rejected => {
                    return Err(SinkError::Rejected {
                        topic: r.topic,
                        position: r.position,
                        detail: r.detail,
                    });
                }
                OversizeAction::Halt if r.reason == RefusalReason::Unroutable => {
                    return Err(SinkError::Unroutable {
                        position: r.position,
                        module: r.module,
                        detail: r.detail,
                    });
                }
                OversizeAction::Halt => {
                    return Err(SinkError::TooLarge {
                        topic: r.topic,
                        position: r.position,
                        detail: r.detail,
                    });
                }
                OversizeAction::Skip => {
                    let what = match r.reason {
                        RefusalReason::TooLarge => "skip-oversize",
                        RefusalReason::Unroutable => "skip-unroutable",
                        RefusalReason::Rejected => "skip-rejected",
                    };
                    metrics::global().module(&r.module, &version).action(what);
                    tracing::warn!(
                        message = "Message the broker refused skipped by its module's policy.",
                        reason = what,
                        module = %r.module,
                        topic = %r.topic,
                        position = %r.position,
                        payload_bytes = r.payload_bytes,
                        key_bytes = r.key_bytes,
                        error = %r.detail,
                    );
                }
                OversizeAction::DeadLetter(to) => {
                    let payload = serde_json::json!({
                        "oversize": r.reason == RefusalReason::TooLarge,
                        "reason": match r.reason {
                            RefusalReason::TooLarge => "too-large",
                            RefusalReason::Unroutable => "unroutable",
                            RefusalReason::Rejected => "rejected",
                        },
                        "refused_by_broker": &r.detail,
                        "payload_bytes": r.payload_bytes,
                        "key_bytes": r.key_bytes,
                        "topic": &r.topic,
                        "position": &r.position,
                        "database": r.header("sluice.db"),
                        "table": r.header("sluice.table"),
                        "module": &r.module,
                    });
                    let msg = OutMessage {
                        topic: Arc::from(to.as_str()),
                        partition: None,
                        key: None,
                        headers: r
                            .headers
                            .iter()
                            .map(|(k, v)| (k.clone().into(), HeaderValue::from(&v[..])))
                            .collect(),
                        payload: payload.to_string().into_bytes(),
                        txn: r.txn,
                    };
                    tracing::warn!(
                        message = "Message the broker refused sent to the dead-letter topic as a reference.",
                        module = %r.module,
                        topic = %r.topic,
                        dead_letter_topic = %to,
                        position = %r.position,
                        error = %r.detail,
                    );
                    self.sink.send(msg)?;
                }
            }
            self.sink.settle(&r);
        }
        Ok(())
    }
}
