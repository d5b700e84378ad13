//! Module files: the router set built from the configured files at start, new
//! versions proposed on SIGHUP (the configured files read again) and from
//! `router.modules_dir` (polled once a second).
//!
//! Invariants: a file that cannot be read or a version that does not load is logged
//! and ignored, never a reason to stop; a proposed version goes through the router
//! set's canary and is applied only at a transaction boundary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::Config;
use crate::router::watch::ModuleDir;
use crate::router::{RouterEngine, RouterSet};

/// Reads module files and builds the router set.
pub(super) fn load_routers(cfg: &Config) -> anyhow::Result<Option<RouterSet>> {
    if cfg.modules.is_empty() {
        return Ok(None);
    }
    let engine = Arc::new(RouterEngine::new(
        (cfg.modules.len() as u32) * 3 + 2,
        cfg.cache_dir.as_deref(),
    )?);
    let mut mods = Vec::new();
    for (spec, path) in &cfg.modules {
        let bytes = crate::router::builtin::read(path)
            .with_context(|| format!("reading module `{}` from {}", spec.name, path.display()))?;
        mods.push((spec.clone(), bytes));
    }
    Ok(Some(RouterSet::new(engine, mods)?))
}

/// The module files a run watches: the configured ones (read again on SIGHUP) and
/// `router.modules_dir` (polled at most once a second).
pub(super) struct ModuleFiles<'a> {
    cfg: &'a Config,
    dir: Option<ModuleDir>,
    polled: Instant,
}

impl<'a> ModuleFiles<'a> {
    pub(super) fn new(cfg: &'a Config) -> Self {
        ModuleFiles {
            cfg,
            dir: cfg.modules_dir.as_deref().map(ModuleDir::new),
            polled: Instant::now(),
        }
    }

    /// SIGHUP: proposes every configured module file whose content changed.
    pub(super) fn reload(&self, set: &RouterSet) {
        for (spec, path) in &self.cfg.modules {
            match crate::router::builtin::read(path) {
                Ok(bytes)
                    if set.version_of(&spec.name)
                        != Some(crate::router::engine::hash_hex(&bytes).as_str()) =>
                {
                    if let Err(e) = set.propose(&spec.name, bytes) {
                        tracing::warn!(message = "Cannot reload module.", module = %spec.name, error = %e);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(message = "Cannot read module file.", module = %spec.name, error = %e)
                }
            }
        }
    }

    /// Proposes the new files in `router.modules_dir`, at most once a second.
    pub(super) fn poll(&mut self, set: &RouterSet) {
        if self.polled.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.polled = Instant::now();
        if let Some(dir) = &mut self.dir {
            for (name, bytes) in dir.poll() {
                if let Err(e) = set.propose(&name, bytes) {
                    tracing::warn!(message = "Ignoring module file.", module = %name, error = %e);
                }
            }
        }
    }
}
