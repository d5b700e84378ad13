//! `sluice run`, `check`, `topics create` and `canal import`: the commands that read a
//! configuration and act on the source, the modules and the broker.
//!
//! Invariant: `run` stops cleanly only after everything acknowledged is checkpointed
//! (the pipeline's drain); `check` and `topics create` publish nothing.

use anyhow::Context as _;

/// `sluice run`: the admin API and the pipeline, stopped by a signal.
pub(crate) async fn agent(cfg: sluice::config::Config) -> anyhow::Result<()> {
    use std::sync::Arc;
    // Secrets in the config print as `***` (see `sluice::secret`).
    tracing::debug!(message = "Configuration loaded.", config = ?cfg);
    // Before anything listens or connects: a second agent on this checkpoint must stop
    // here, not after its replica connection has displaced the first one's.
    let _lock = sluice::checkpoint::Lock::acquire(&cfg.checkpoint)?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let control = Arc::new(sluice::control::Control::new(cfg.stall_after));
    let admin = match &cfg.admin {
        Some(a) => Some(sluice::admin::serve(a, control.clone(), cancel.child_token()).await?),
        None => None,
    };
    let stop = cancel.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!(
            message = "Shutting down: draining in-flight messages (a second signal stops at once).",
            drain_timeout_s = sluice::pipeline::DRAIN_TIMEOUT.as_secs(),
        );
        stop.cancel();
        shutdown_signal().await;
        tracing::warn!(
            message = "Second signal: stopping without draining; the checkpoint file holds the last acknowledged position."
        );
        std::process::exit(130);
    });
    let result = sluice::pipeline::run(cfg, cancel.clone(), control).await;
    cancel.cancel();
    if let Some(a) = admin {
        let _ = a.handle.await;
    }
    result.map(|_| ())
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `sluice check`: configuration, server, modules and topics, without publishing.
/// Every topic the configuration names and its modules declare (each module compiled
/// and configured, so a module that does not load is an error here); `each` hears of
/// every module loaded, with its version.
pub(crate) fn all_declared_topics(
    cfg: &sluice::config::Config,
    each: &mut dyn FnMut(&str, &str),
) -> anyhow::Result<Vec<String>> {
    let engine = sluice::router::RouterEngine::new(cfg.modules.len() as u32 + 2, None)?;
    let mut topics = cfg.declared_topics();
    for (spec, path) in &cfg.modules {
        let bytes = sluice::router::builtin::read(path)?;
        let (code, _) = engine.compile(&spec.name, &bytes)?;
        let m = sluice::router::ModuleInstance::new(
            &engine,
            code.clone(),
            std::sync::Arc::new(spec.clone()),
        )?;
        topics.extend(m.topics().iter().map(|t| t.to_string()));
        each(&spec.name, code.short_hash());
    }
    topics.sort();
    topics.dedup();
    Ok(topics)
}

/// `sluice canal import`.
pub(crate) fn canal_import(
    instance: &std::path::Path,
    canal: Option<&std::path::Path>,
    destination: Option<String>,
    module: String,
    checkpoint: String,
) -> anyhow::Result<()> {
    use sluice::migrate::{canal, properties};
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    // canal.properties first: the instance's settings override the server's.
    let mut props = match canal {
        Some(c) => properties::parse(&read(c)?),
        None => properties::Properties::new(),
    };
    props.extend(properties::parse(&read(instance)?));
    let destination = destination
        .or_else(|| {
            instance
                .canonicalize()
                .ok()?
                .parent()?
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "example".into());
    let out = canal::convert(
        &props,
        &canal::Options {
            destination,
            module,
            checkpoint,
        },
    )?;
    print!("{}", out.toml);
    for (k, v, why) in &out.not_translated {
        eprintln!("not translated: {k} = {v}: {why}");
    }
    for (k, what) in &out.env {
        eprintln!("set {k}: {what}");
    }
    Ok(())
}

/// `sluice topics create`: every declared topic that does not exist, created through
/// the publisher's own admin client; no agent needs to run.
pub(crate) async fn create_topics(
    cfg: sluice::config::Config,
    partitions: Option<i32>,
    replication: Option<i32>,
    tables: bool,
) -> anyhow::Result<()> {
    let mut topics = all_declared_topics(&cfg, &mut |_, _| {})?;
    let mut failed_modules = Vec::new();
    if tables {
        let (derived, failed) = table_topics(&cfg).await?;
        topics.extend(derived);
        topics.sort();
        topics.dedup();
        failed_modules = failed;
    }
    let partitions = partitions
        .or(cfg.admin.as_ref().map(|a| a.topic_partitions))
        .unwrap_or(1);
    let replication = replication
        .or(cfg.admin.as_ref().map(|a| a.topic_replication))
        .unwrap_or(1);
    anyhow::ensure!(partitions >= 1, "--partitions: must be at least 1");
    anyhow::ensure!(replication >= 1, "--replication: must be at least 1");
    let sink = sluice::sink::open(&cfg.sink)?;
    let kind = cfg.sink.publisher.kind();
    let mut failed = 0;
    for t in &topics {
        let Some(admin) = sink.topic_admin() else {
            println!("sink kind `{kind}` has no topics to create");
            return Ok(());
        };
        match admin.create(t.clone(), partitions, replication).await {
            Ok(()) => {
                println!("topic {t}: created ({partitions} partitions, replication {replication})")
            }
            Err(sluice::sink::SinkError::TopicExists(_)) => println!("topic {t}: exists"),
            Err(e) => {
                failed += 1;
                eprintln!("topic {t}: {e}");
            }
        }
    }
    if topics.is_empty() {
        println!("no topics declared (sink.default_topic, module subscriptions)");
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} topics could not be created",
        topics.len()
    );
    // The other modules' topics are created above; the failing one is still an error.
    anyhow::ensure!(
        failed_modules.is_empty(),
        "the topics of the source's tables are not all known: {}",
        failed_modules.join("; ")
    );
    Ok(())
}

/// The topics the modules route the source's existing tables to: one sample change of
/// each kind per captured table, routed by every module (rules that derive a topic from
/// a table's name, like Canal's `dynamicTopic` regexes, name no topic in advance).
/// A module that fails on the samples (a trap, its deadline) is named in the second
/// list; the other modules' topics are still found.
async fn table_topics(cfg: &sluice::config::Config) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let found = sluice::source::captured_tables(&cfg.source)
        .await
        .context("listing the source's tables (--tables)")?;
    let samples = sluice::router::tools::table_samples(&found)?;
    let engine = sluice::router::RouterEngine::new(cfg.modules.len() as u32 + 2, None)?;
    let mut topics = std::collections::BTreeSet::new();
    let mut failed = Vec::new();
    for (spec, path) in &cfg.modules {
        let bytes = sluice::router::builtin::read(path)?;
        match sluice::router::tools::run_module(&engine, &bytes, spec.clone(), &samples, 500) {
            Ok((decided, _)) => {
                for d in decided {
                    topics.extend(d.routes.into_iter().flatten().map(|r| r.topic.to_string()));
                }
            }
            Err(e) => failed.push(format!(
                "module `{}` on a sample change of each of the {} tables: {e:#}",
                spec.name,
                found.len()
            )),
        }
    }
    if cfg.modules.is_empty() && !found.is_empty() {
        topics.insert(cfg.sink.default_topic.clone());
    }
    println!(
        "{} captured tables on the source route to {} topics",
        found.len(),
        topics.len()
    );
    Ok((topics.into_iter().collect(), failed))
}

pub(crate) async fn check(cfg: sluice::config::Config) -> anyhow::Result<()> {
    println!("config: ok");
    // What the configuration names, and what the modules declare when configured.
    let topics = all_declared_topics(&cfg, &mut |name, version| {
        println!("module {name}: ok (version {version})");
    })?;
    let sink = sluice::sink::open(&cfg.sink)?;
    // The modules' topics too (`run` holds their messages until the topic exists;
    // `check` is where to hear of it first).
    sink.check_topics(&topics)?;
    for w in sink.warnings(&topics) {
        println!("warning: {w}");
    }
    println!("sink: ok");
    let src = sluice::source::BinlogSource::connect(
        cfg.source.clone(),
        sluice::checkpoint::load(&cfg.checkpoint)?,
    )
    .await
    .context("checking the source")?;
    println!("source: ok (would start at {})", src.checkpoint());
    // Topics the modules derive from table names (regex rules) are only known from the
    // tables themselves: a missing one would hold its table's messages at run time.
    // Advice only: a module that cannot route an all-NULL sample row still runs.
    if !cfg.modules.is_empty() {
        let derived = match table_topics(&cfg).await {
            Ok((t, failed)) => {
                for f in failed {
                    println!("warning: could not work out the topics of the source's tables: {f}");
                }
                t
            }
            Err(e) => {
                println!("warning: could not work out the topics of the source's tables: {e:#}");
                Vec::new()
            }
        };
        let mut missing = Vec::new();
        for t in derived {
            if !topics.contains(&t) && sink.check_topics(std::slice::from_ref(&t)).is_err() {
                missing.push(t);
            }
        }
        if !missing.is_empty() {
            println!(
                "warning: the source's tables route to {} topics that do not exist ({}); `run` holds their messages until they do: `sluice topics create -c CONFIG --tables` creates them",
                missing.len(),
                missing.join(", ")
            );
        }
    }
    Ok(())
}
