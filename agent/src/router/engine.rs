//! The shared wasmtime engine: one `Engine` and `Linker` for all modules, a pooling
//! allocator, epoch interruption driven by a ticker thread, and a cache of precompiled
//! code keyed by the component's hash and the engine's settings.
//!
//! Invariants: the engine is configured for deterministic execution (NaN
//! canonicalisation, deterministic relaxed SIMD, no threads), so the same module, config
//! and events give the same decisions on every host; the linker offers only the
//! `sluice:router/host` interface.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{Router as RouterWorld, RouterPre};
use super::error::RouterError;
use super::host::ModuleState;

/// Epoch ticks per second.
pub const TICKS_PER_SECOND: u64 = 1000;

/// Largest memory cap a module may be given.
pub const MAX_MODULE_MEMORY: usize = 1 << 30;

/// Compiled code of one module version.
pub struct ModuleCode {
    /// Module name.
    pub name: String,
    /// SHA-256 of the component bytes, hex: the module's version id.
    pub hash: String,
    /// Pre-instantiated against the linker: imports type-checked once.
    pub(crate) pre: RouterPre<ModuleState>,
}

impl std::fmt::Debug for ModuleCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleCode")
            .field("name", &self.name)
            .field("hash", &self.hash)
            .finish()
    }
}

impl ModuleCode {
    /// The first 12 hex digits of the hash, for logs and headers.
    pub fn short_hash(&self) -> &str {
        &self.hash[..12.min(self.hash.len())]
    }
}

/// Advances the engine's epoch (the clock module deadlines count in) while module code
/// may be running, and parks otherwise: an idle agent on a database host should not
/// wake up a thousand times a second for nothing.
pub(crate) struct Ticker {
    busy: AtomicUsize,
    ticks: AtomicU64,
    stop: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
}

impl Ticker {
    /// Marks a module call in progress until the guard drops. Deadlines set before the
    /// call still hold: the epoch only stood still while nothing was running.
    pub(crate) fn busy(&self) -> Busy<'_> {
        if self.busy.fetch_add(1, Ordering::AcqRel) == 0
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
        Busy(self)
    }

    fn run(&self, engine: wasmtime::EngineWeak) {
        let tick = Duration::from_micros(1_000_000 / TICKS_PER_SECOND);
        let mut last = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            if self.busy.load(Ordering::Acquire) == 0 {
                // `unpark` before `park` returns at once, so a call starting between
                // the check and here is not missed.
                std::thread::park();
                last = Instant::now();
                continue;
            }
            std::thread::sleep(tick);
            // A sleep lasts at least a tick and often more: advance by the ticks that
            // really passed, so a deadline of N ms ends after N ms, not N oversleeps.
            let now = Instant::now();
            let due =
                (now.duration_since(last).as_micros() / tick.as_micros()).clamp(1, 1000) as u32;
            last += tick * due;
            let Some(e) = engine.upgrade() else {
                break;
            };
            for _ in 0..due {
                e.increment_epoch();
            }
            self.ticks.fetch_add(u64::from(due), Ordering::Relaxed);
        }
    }
}

/// A module call in progress (see [`Ticker::busy`]).
pub(crate) struct Busy<'a>(&'a Ticker);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The engine all modules run on.
pub struct RouterEngine {
    engine: Engine,
    linker: Linker<ModuleState>,
    cache_dir: Option<PathBuf>,
    ticker: Arc<Ticker>,
}

impl Drop for RouterEngine {
    fn drop(&mut self) {
        self.ticker.stop.store(true, Ordering::Release);
        if let Some(t) = self.ticker.thread.get() {
            t.unpark();
        }
    }
}

impl RouterEngine {
    /// An engine with room for `max_instances` live module instances. `cache_dir`
    /// holds precompiled code (created if missing).
    pub fn new(max_instances: u32, cache_dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut cfg = Config::new();
        cfg.wasm_component_model(true);
        cfg.epoch_interruption(true);
        cfg.cranelift_nan_canonicalization(true);
        cfg.relaxed_simd_deterministic(true);
        // One compile thread: compiling is rare (a cold start, a new module version) and
        // on a small host it must not take every core from the pipeline and the
        // database beside it; it also keeps the compile's peak heap lower (measured on
        // canal-compat: 1.1 s instead of 0.65 s, 34 MB peak instead of 41).
        cfg.parallel_compilation(false);
        let mut pool = PoolingAllocationConfig::default();
        let n = max_instances.max(2);
        pool.total_component_instances(n);
        // A component made from one core module has a few core instances (module, adapter
        // shims) and usually one memory.
        pool.total_core_instances(n * 4);
        pool.total_memories(n * 2);
        pool.total_tables(n * 4);
        pool.max_memory_size(MAX_MODULE_MEMORY);
        cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine =
            Engine::new(&cfg).map_err(|e| anyhow::anyhow!("creating the wasm engine: {e:#}"))?;
        let mut linker = Linker::new(&engine);
        RouterWorld::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("linking host functions: {e:#}"))?;

        let ticker = Arc::new(Ticker {
            busy: AtomicUsize::new(0),
            ticks: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            thread: OnceLock::new(),
        });
        let weak = engine.weak();
        let t = ticker.clone();
        let handle = std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || t.run(weak))?;
        let _ = ticker.thread.set(handle.thread().clone());
        // The cache only saves compile time: without a usable directory, compile.
        let cache_dir = cache_dir.filter(|d| match std::fs::create_dir_all(d) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    message = "Module cache directory unusable; modules compile at every start.",
                    dir = %d.display(),
                    error = %e,
                );
                false
            }
        });
        Ok(RouterEngine {
            engine,
            linker,
            cache_dir: cache_dir.map(Path::to_path_buf),
            ticker,
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The epoch ticker module calls must hold busy.
    pub(crate) fn ticker(&self) -> &Arc<Ticker> {
        &self.ticker
    }

    /// Imports of a component that are not Sluice's own interfaces.
    fn foreign_imports(&self, component: &Component) -> Vec<String> {
        component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .filter(|name| !name.starts_with("sluice:router/"))
            .collect()
    }

    fn cache_path(&self, hash: &str) -> Option<PathBuf> {
        use std::hash::{Hash, Hasher};
        let dir = self.cache_dir.as_ref()?;
        // The engine's compatibility hash covers wasmtime's version and settings, so a
        // different build or config never loads stale code.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        Some(dir.join(format!("{hash}-{:016x}.cwasm", h.finish())))
    }

    /// Compiles (or loads precompiled) and checks a component. Reports whether the cache
    /// was used.
    pub fn compile(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<(Arc<ModuleCode>, bool), RouterError> {
        let invalid = |detail: String| RouterError::Invalid {
            module: name.to_string(),
            detail,
        };
        let hash = hex(&Sha256::digest(bytes));
        let cached = self.cache_path(&hash);
        let mut from_cache = false;
        let component = match cached.as_ref().filter(|p| p.is_file()) {
            // SAFETY: the file was written by `Component::serialize` of this engine
            // configuration (the name carries the compatibility hash) into a directory
            // owned by the agent.
            Some(p) => match unsafe { Component::deserialize_file(&self.engine, p) } {
                Ok(c) => {
                    from_cache = true;
                    c
                }
                Err(_) => Component::new(&self.engine, bytes)
                    .map_err(|e| invalid(format!("not a valid component: {e:#}")))?,
            },
            None => Component::new(&self.engine, bytes)
                .map_err(|e| invalid(format!("not a valid component: {e:#}")))?,
        };
        let foreign = self.foreign_imports(&component);
        if !foreign.is_empty() {
            return Err(RouterError::ForbiddenImports {
                module: name.to_string(),
                imports: foreign,
            });
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| invalid(format!("does not fit the sluice:router world: {e:#}")))?;
        let pre = RouterPre::new(pre)
            .map_err(|e| invalid(format!("does not export the router world: {e:#}")))?;
        if !from_cache {
            if let Some(p) = cached
                && let Ok(bytes) = component.serialize()
            {
                // A failed cache write only costs a recompile next time.
                let tmp = p.with_extension("tmp");
                if std::fs::write(&tmp, bytes).is_ok() {
                    let _ = std::fs::rename(&tmp, &p);
                }
            }
            release_freed_heap();
        }
        Ok((
            Arc::new(ModuleCode {
                name: name.to_string(),
                hash,
                pre,
            }),
            from_cache,
        ))
    }
}

/// Hands the heap that compiling freed back to the system. Cranelift's working memory
/// (~15 MB for canal-compat, which carries `regex`) is freed when compilation ends but
/// glibc keeps it mapped, so without this every cold start or hot swap would leave the
/// agent's resident memory that much higher for good.
fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's malloc_trim takes no pointers and only releases free pages.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// SHA-256 of `bytes` in hex: the version id a component would get.
pub fn hash_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_ticks_only_while_a_call_is_busy() {
        let engine = RouterEngine::new(2, None).expect("engine");
        let ticks = || engine.ticker().ticks.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(ticks(), 0, "an idle engine must not tick");
        let busy = engine.ticker().busy();
        std::thread::sleep(Duration::from_millis(100));
        let during = ticks();
        assert!(during >= 20, "only {during} ticks in 100 ms while busy");
        drop(busy);
        std::thread::sleep(Duration::from_millis(20));
        let after = ticks();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(ticks(), after, "ticking went on after the call ended");
    }
}
