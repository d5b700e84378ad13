//! Operator commands from the admin API ([`Control`](crate::control::Control)):
//! module candidates, promote, rollback, topic creation.
//!
//! Invariants: a command is applied between source items and never blocks the loop
//! (topic creation runs on its own task); module swaps it asks for still wait for a
//! transaction boundary; every command gets exactly one reply.

use crate::control::{Command, CommandError, CommandKind};
use crate::sink::SinkError;

use super::Run;

impl Run<'_> {
    /// Applies an operator command. Module swaps it asks for still wait for a
    /// transaction boundary ([`crate::router::RouterSet`]).
    pub(super) fn on_command(&mut self, cmd: Command) {
        use serde_json::json;
        let no_modules =
            || CommandError::Conflict("no modules are configured; nothing to swap".into());
        let result = match cmd.kind {
            CommandKind::Load { module, bytes } => match &self.routers {
                None => Err(no_modules()),
                Some(set) => {
                    let version = crate::router::engine::hash_hex(&bytes);
                    set.stage(&module, bytes)
                        .map(|()| {
                            tracing::info!(
                                message = "Module candidate loaded by the admin API; running its canary.",
                                module = %module,
                                version = %&version[..12],
                            );
                            json!({ "module": module, "version": version, "state": "canary" })
                        })
                        .map_err(CommandError::from)
                }
            },
            CommandKind::Promote { module } => match &mut self.routers {
                None => Err(no_modules()),
                Some(set) => set
                    .promote(&module)
                    .map(|v| json!({ "module": module, "version": v, "state": "promoting" }))
                    .map_err(CommandError::from),
            },
            CommandKind::Rollback { module } => match &self.routers {
                None => Err(no_modules()),
                Some(set) => set
                    .rollback(&module)
                    .map(|v| json!({ "module": module, "version": v, "state": "rolling-back" }))
                    .map_err(CommandError::from),
            },
            CommandKind::CreateTopic { name, partitions } => {
                let Some(creator) = self.sink.topic_admin() else {
                    let _ = cmd.reply.send(Err(CommandError::Conflict(
                        "the sink is not Kafka; there are no topics to create".into(),
                    )));
                    return;
                };
                let (default_partitions, replication) = self
                    .cfg
                    .admin
                    .as_ref()
                    .map(|a| (a.topic_partitions, a.topic_replication))
                    .unwrap_or((1, 1));
                let partitions = partitions.unwrap_or(default_partitions);
                // The broker may take a while; the pipeline does not wait for it.
                tokio::spawn(async move {
                    let r = creator
                        .create(name.clone(), partitions, replication)
                        .await
                        .map(|()| {
                            tracing::info!(message = "Topic created by the admin API.", topic = %name, partitions);
                            json!({ "topic": name, "partitions": partitions, "replication": replication })
                        })
                        .map_err(|e| match e {
                            SinkError::TopicExists(_) => CommandError::Conflict(e.to_string()),
                            e => CommandError::Failed(e.to_string()),
                        });
                    let _ = cmd.reply.send(r);
                });
                return;
            }
        };
        let _ = cmd.reply.send(result);
    }
}
