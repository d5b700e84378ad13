//! One live instance of a module: its store (memory cap, deadline), the tables announced
//! to it, batch encoding for its subscription, and validation of its decisions.
//!
//! Invariants: every call runs under a fresh epoch deadline (the module's, or less when
//! the caller's time budget is shorter); after any failure the store is thrown away and
//! the next call starts from a new instance (configured again, tables announced again),
//! so one bad batch never leaves a module in a half-broken state; every decision is
//! checked (count, topic ownership) before it is used; log lines are rate-limited per
//! module instance across restarts, per unit of time rather than per call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sluice_sdk::Selection;
use sluice_sdk::abi::{self, AbiError, BatchWriter, Kind, ParsedTopic};
use wasmtime::{Store, Trap};

use super::bindings::Router as RouterWorld;
use super::bindings::sluice::router::types as wit;
use super::engine::{ModuleCode, RouterEngine, TICKS_PER_SECOND, Ticker};
use super::error::{RouterError, trap_code};
use super::host::{Limiter, LogBucket, ModuleState};
use super::spec::ModuleSpec;
use crate::event::{Cell, ChangeEvent, ChangeKind, TableSchema};

/// One destination of a routed event, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Topic (within the module's allowed topics).
    pub topic: Arc<str>,
    /// Message key.
    pub key: Option<Vec<u8>>,
    /// Explicit partition.
    pub partition: Option<i32>,
    /// Extra headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// The destinations a module gave a batch, flat: one vector per batch rather than one
/// per event (a batch is often a thousand rows).
#[derive(Debug, Default)]
pub struct Routes {
    /// (input index, destination), in input order.
    routes: Vec<(usize, Route)>,
    /// `ends[i]`: how many of `routes` belong to inputs `0..=i`.
    ends: Vec<usize>,
}

impl Routes {
    /// Number of inputs decided.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether no input was decided.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The destinations of input `i` (empty: dropped).
    pub fn get(&self, i: usize) -> &[(usize, Route)] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.routes[start..self.ends[i]]
    }

    /// Inputs the module dropped.
    pub fn dropped(&self) -> usize {
        let mut last = 0;
        self.ends
            .iter()
            .filter(|&&e| std::mem::replace(&mut last, e) == e)
            .count()
    }

    /// Takes the destinations out, in input order, each with its input index.
    pub fn drain(&mut self) -> impl Iterator<Item = (usize, Route)> + '_ {
        self.ends.clear();
        self.routes.drain(..)
    }

    /// Per input, its destinations (tests and tools).
    pub fn to_vecs(&self) -> Vec<Vec<Route>> {
        (0..self.len())
            .map(|i| self.get(i).iter().map(|(_, r)| r.clone()).collect())
            .collect()
    }

    fn clear(&mut self) {
        self.routes.clear();
        self.ends.clear();
    }

    /// Adds a destination of input `input` (inputs come in order).
    fn push(&mut self, input: usize, route: Route) {
        while self.ends.len() < input {
            self.ends.push(self.routes.len());
        }
        self.routes.push((input, route));
    }

    /// Closes the batch of `inputs` inputs.
    fn finish(&mut self, inputs: usize) {
        while self.ends.len() < inputs {
            self.ends.push(self.routes.len());
        }
    }
}

/// An event handed to a module: a row of a change (row 0 for DDL).
#[derive(Debug, Clone, Copy)]
pub struct RouteInput<'a> {
    /// The change.
    pub event: &'a ChangeEvent,
    /// Row within it.
    pub row: usize,
}

struct Announced {
    schema: Arc<TableSchema>,
    /// Table column index of each shipped column.
    projection: Vec<usize>,
}

/// A module instance ready to route.
pub struct ModuleInstance {
    code: Arc<ModuleCode>,
    spec: Arc<ModuleSpec>,
    store: Store<ModuleState>,
    world: RouterWorld,
    sub: Selection,
    topics: Vec<Arc<str>>,
    inline_topics: HashMap<String, Arc<str>>,
    /// Announced tables; their position is the id the module knows them by.
    tables: Vec<Announced>,
    by_name: HashMap<(String, String), usize>,
    /// The schema of the previous event and its slot: consecutive rows of one rows
    /// event share their schema, so most lookups are a pointer comparison.
    last: Option<(usize, usize)>,
    writer: BatchWriter,
    batch: Vec<u8>,
    poisoned: bool,
    engine: wasmtime::Engine,
    ticker: Arc<Ticker>,
    logs: Arc<Mutex<LogBucket>>,
    /// When set, calls end by this instant even if the module's deadline is later.
    cutoff: Option<Instant>,
    /// The subscription as the module returned it, for people (`sluice module check`).
    subscription: serde_json::Value,
}

impl std::fmt::Debug for ModuleInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleInstance")
            .field("module", &self.code.name)
            .field("version", &self.code.hash)
            .finish()
    }
}

fn to_kind(k: wit::ChangeKind) -> ChangeKind {
    match k {
        wit::ChangeKind::Insert => ChangeKind::Insert,
        wit::ChangeKind::Update => ChangeKind::Update,
        wit::ChangeKind::Delete => ChangeKind::Delete,
        wit::ChangeKind::Ddl => ChangeKind::Ddl,
    }
}

fn abi_kind(k: ChangeKind) -> Kind {
    match k {
        ChangeKind::Insert => Kind::Insert,
        ChangeKind::Update => Kind::Update,
        ChangeKind::Delete => Kind::Delete,
        ChangeKind::Ddl => Kind::Ddl,
    }
}

impl ModuleInstance {
    /// Instantiates and configures a module; fails if it refuses its configuration or
    /// declares topics it may not use.
    pub fn new(
        engine: &RouterEngine,
        code: Arc<ModuleCode>,
        spec: Arc<ModuleSpec>,
    ) -> Result<Self, RouterError> {
        let dropped = crate::metrics::global()
            .module(&spec.name, &code.hash)
            .log_dropped;
        let logs = Arc::new(Mutex::new(LogBucket::new(dropped)));
        let ticks = deadline_ticks(&spec, None);
        let (store, world, sub, (topics, subscription)) =
            Self::start(engine.engine(), engine.ticker(), &code, &spec, &logs, ticks)?;
        Ok(ModuleInstance {
            code,
            spec,
            store,
            world,
            sub,
            topics,
            inline_topics: HashMap::new(),
            tables: Vec::new(),
            by_name: HashMap::new(),
            last: None,
            writer: BatchWriter::new(),
            batch: Vec::new(),
            poisoned: false,
            engine: engine.engine().clone(),
            ticker: engine.ticker().clone(),
            logs,
            cutoff: None,
            subscription,
        })
    }

    #[allow(clippy::type_complexity)]
    fn start(
        engine: &wasmtime::Engine,
        ticker: &Ticker,
        code: &ModuleCode,
        spec: &ModuleSpec,
        logs: &Arc<Mutex<LogBucket>>,
        ticks: u64,
    ) -> Result<
        (
            Store<ModuleState>,
            RouterWorld,
            Selection,
            (Vec<Arc<str>>, serde_json::Value),
        ),
        RouterError,
    > {
        let name = spec.name.clone();
        let mut store = Store::new(
            engine,
            ModuleState {
                limiter: Limiter {
                    max_memory: spec
                        .limits
                        .memory_bytes
                        .min(super::engine::MAX_MODULE_MEMORY),
                    denied: false,
                },
                name: Arc::from(spec.name.as_str()),
                version: Arc::from(code.short_hash()),
                logs: logs.clone(),
            },
        );
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(ticks);
        // Instantiation runs the module's start code: under the deadline too.
        let _busy = ticker.busy();
        let world = code
            .pre
            .instantiate(&mut store)
            .map_err(|e| RouterError::Invalid {
                module: name.clone(),
                detail: format!("cannot instantiate: {e:#}"),
            })?;
        let result = world.call_configure(&mut store, &spec.config);
        let wsub = match result {
            Ok(Ok(s)) => s,
            Ok(Err(msg)) => {
                return Err(RouterError::Config {
                    module: name,
                    detail: msg,
                });
            }
            Err(e) => return Err(classify(&store, spec, e)),
        };
        let config_err = |detail: String| RouterError::Config {
            module: name.clone(),
            detail,
        };
        let described = serde_json::json!({
            "tables": wsub.tables,
            "exclude_tables": wsub.exclude_tables,
            "kinds": wsub.kinds.iter().map(|k| match k {
                wit::ChangeKind::Insert => "insert",
                wit::ChangeKind::Update => "update",
                wit::ChangeKind::Delete => "delete",
                wit::ChangeKind::Ddl => "ddl",
            }).collect::<Vec<_>>(),
            "columns": wsub.columns,
            "before_images": wsub.before_images,
            "topics": wsub.topics,
        });
        let sub = Selection::new(
            &wsub.tables,
            &wsub.exclude_tables,
            wsub.kinds.iter().map(|k| abi_kind(to_kind(*k))),
            wsub.columns,
            wsub.before_images,
        )
        .map_err(config_err)?;
        let mut topics = Vec::with_capacity(wsub.topics.len());
        for t in &wsub.topics {
            if !spec.topics.allows(t) {
                return Err(RouterError::ForeignTopic {
                    module: name.clone(),
                    topic: t.clone(),
                    allowed: spec.topics.describe(),
                });
            }
            topics.push(Arc::from(t.as_str()));
        }
        Ok((store, world, sub, (topics, described)))
    }

    /// The compiled module.
    pub fn code(&self) -> &Arc<ModuleCode> {
        &self.code
    }

    /// The module's configuration.
    pub fn spec(&self) -> &Arc<ModuleSpec> {
        &self.spec
    }

    /// The subscription as the module returned it: tables, excluded tables, kinds,
    /// columns, before-images, declared topics.
    pub fn subscription(&self) -> &serde_json::Value {
        &self.subscription
    }

    /// The topics its subscription declared (decisions may name others inline).
    pub fn topics(&self) -> &[Arc<str>] {
        &self.topics
    }

    /// The columns shipped to the module for `database.table`, in table order, once it
    /// has seen a change of that table (what its subscription asked for, plus the key).
    pub fn shipped_columns(&self, database: &str, table: &str) -> Option<Vec<String>> {
        let slot = *self
            .by_name
            .get(&(database.to_string(), table.to_string()))?;
        let a = self.tables.get(slot)?;
        Some(
            a.projection
                .iter()
                .map(|&i| a.schema.columns[i].name.clone())
                .collect(),
        )
    }

    /// Whether the module subscribed to this kind of change on this table.
    pub fn wants(&self, table: &TableSchema, kind: ChangeKind) -> bool {
        self.sub
            .wants(&table.database, &table.table, abi_kind(kind))
    }

    /// Makes every call end by `cutoff` (or by the module's own deadline, if sooner)
    /// until cleared with `None`: how a caller bounds the time one batch may cost.
    pub fn set_cutoff(&mut self, cutoff: Option<Instant>) {
        self.cutoff = cutoff;
    }

    fn ticks(&self) -> u64 {
        deadline_ticks(&self.spec, self.cutoff)
    }

    fn restart(&mut self) -> Result<(), RouterError> {
        let ticks = self.ticks();
        let (store, world, sub, (topics, subscription)) = Self::start(
            &self.engine,
            &self.ticker,
            &self.code,
            &self.spec,
            &self.logs,
            ticks,
        )?;
        self.store = store;
        self.world = world;
        self.sub = sub;
        self.topics = topics;
        self.subscription = subscription;
        self.tables.clear();
        self.by_name.clear();
        self.last = None;
        self.poisoned = false;
        Ok(())
    }

    /// The slot of `schema`'s table, announcing it first if the module has not seen
    /// this definition.
    fn slot_of(&mut self, schema: &Arc<TableSchema>) -> Result<usize, RouterError> {
        if let Some((ptr, slot)) = self.last
            && ptr == Arc::as_ptr(schema) as usize
        {
            return Ok(slot);
        }
        let key = (schema.database.clone(), schema.table.clone());
        let existing = self.by_name.get(&key).copied();
        if let Some(slot) = existing {
            let a = &self.tables[slot];
            if Arc::ptr_eq(&a.schema, schema) || same_columns(&a.schema, schema) {
                self.last = Some((Arc::as_ptr(schema) as usize, slot));
                // Keep the newest Arc so the pointer fast path hits next time.
                self.tables[slot].schema = schema.clone();
                return Ok(slot);
            }
        }
        let slot = existing.unwrap_or(self.tables.len());
        let id = slot as u32;
        let projection: Vec<usize> = schema
            .columns
            .iter()
            .enumerate()
            .filter(|(i, c)| self.sub.ships(&c.name, schema.primary_key.contains(i)))
            .map(|(i, _)| i)
            .collect();
        let table = wit::Table {
            id,
            database: schema.database.clone(),
            name: schema.table.clone(),
            columns: projection
                .iter()
                .map(|&i| {
                    let c = &schema.columns[i];
                    wit::Column {
                        name: c.name.clone(),
                        sql_type: c.sql_type.clone(),
                        binary: c.is_binary(),
                    }
                })
                .collect(),
            primary_key: schema
                .primary_key
                .iter()
                .filter_map(|k| projection.iter().position(|p| p == k).map(|p| p as u32))
                .collect(),
        };
        self.store.set_epoch_deadline(self.ticks());
        let busy = self.ticker.busy();
        let added = self.world.call_add_table(&mut self.store, &table);
        drop(busy);
        if let Err(e) = added {
            self.poisoned = true;
            return Err(classify(&self.store, &self.spec, e));
        }
        let a = Announced {
            schema: schema.clone(),
            projection,
        };
        if slot == self.tables.len() {
            self.tables.push(a);
            self.by_name.insert(key, slot);
        } else {
            self.tables[slot] = a;
        }
        self.last = Some((Arc::as_ptr(schema) as usize, slot));
        Ok(slot)
    }

    fn encode(&mut self, inputs: &[RouteInput<'_>]) -> Result<(), RouterError> {
        self.writer.clear();
        for input in inputs {
            let ev = input.event;
            if ev.kind == ChangeKind::Ddl {
                self.writer
                    .begin_event(abi::DDL_TABLE, Kind::Ddl, 3, false, true, 0);
                self.writer.push_value(ev.table.database.as_bytes());
                self.writer.push_value(ev.table.table.as_bytes());
                self.writer
                    .push_value(ev.sql.as_deref().unwrap_or("").as_bytes());
                continue;
            }
            let slot = self.slot_of(&ev.table)?;
            let a = &self.tables[slot];
            let id = slot as u32;
            let before = self.sub.before_image(abi_kind(ev.kind));
            let after = matches!(ev.kind, ChangeKind::Insert | ChangeKind::Update);
            self.writer.begin_event(
                id,
                abi_kind(ev.kind),
                a.projection.len() as u16,
                before,
                after,
                input.row as u32,
            );
            let images: &[usize] = match (before, after, ev.kind) {
                (true, true, _) => &[0, 1],
                (true, false, _) => &[0],
                (false, true, ChangeKind::Update) => &[1],
                _ => &[0],
            };
            for &img in images {
                let image = ev.rows.image(input.row, img);
                for &col in &a.projection {
                    match image.cell(col) {
                        Cell::Value(v) => self.writer.push_value(v),
                        Cell::Null => self.writer.push_null(),
                        Cell::Absent => self.writer.push_absent(),
                    }
                }
            }
        }
        self.writer.finish_into(&mut self.batch);
        Ok(())
    }

    /// Routes `inputs` (all subscribed, see [`ModuleInstance::wants`]). On success `out`
    /// gets, for each input in order, its destinations (empty when dropped).
    pub fn route(
        &mut self,
        inputs: &[RouteInput<'_>],
        out: &mut Routes,
    ) -> Result<(), RouterError> {
        if self.poisoned {
            self.restart()?;
        }
        let res = self.route_inner(inputs, out);
        if matches!(
            res,
            Err(RouterError::Trap { .. }
                | RouterError::Timeout { .. }
                | RouterError::MemoryLimit { .. })
        ) {
            self.poisoned = true;
        }
        res
    }

    fn route_inner(
        &mut self,
        inputs: &[RouteInput<'_>],
        out: &mut Routes,
    ) -> Result<(), RouterError> {
        out.clear();
        if inputs.is_empty() {
            return Ok(());
        }
        self.encode(inputs)?;
        self.store.set_epoch_deadline(self.ticks());
        let busy = self.ticker.busy();
        let result = self.world.call_route(&mut self.store, &self.batch);
        drop(busy);
        let decisions = match result {
            Ok(Ok(d)) => d,
            Ok(Err(msg)) => {
                return Err(RouterError::BadOutput {
                    module: self.spec.name.clone(),
                    detail: format!("route returned an error: {msg}"),
                });
            }
            Err(e) => return Err(classify(&self.store, &self.spec, e)),
        };
        let module = &self.spec.name;
        let bad = |detail: String| RouterError::BadOutput {
            module: module.clone(),
            detail,
        };
        let (topics, inline_topics, allowed) =
            (&self.topics, &mut self.inline_topics, &self.spec.topics);
        // A malformed buffer or a bad destination: both end the walk.
        enum Stop {
            Abi(AbiError),
            Bad(RouterError),
        }
        impl From<AbiError> for Stop {
            fn from(e: AbiError) -> Self {
                Stop::Abi(e)
            }
        }
        impl From<RouterError> for Stop {
            fn from(e: RouterError) -> Self {
                Stop::Bad(e)
            }
        }
        abi::visit_decisions(
            &decisions,
            inputs.len(),
            |input, dest| -> Result<(), Stop> {
                let topic = match &dest.topic {
                    ParsedTopic::Index(i) => topics.get(*i as usize).cloned().ok_or_else(|| {
                        bad(format!(
                            "topic index {i} but {} topics declared",
                            topics.len()
                        ))
                    })?,
                    ParsedTopic::Name(r) => {
                        // Checked as UTF-8 by the parser.
                        let name = std::str::from_utf8(&decisions[r.clone()])
                            .map_err(|_| bad("topic name is not UTF-8".into()))?;
                        match inline_topics.get(name) {
                            Some(t) => t.clone(),
                            None => {
                                if !allowed.allows(name) {
                                    return Err(RouterError::ForeignTopic {
                                        module: module.clone(),
                                        topic: name.to_string(),
                                        allowed: allowed.describe(),
                                    }
                                    .into());
                                }
                                let t: Arc<str> = Arc::from(name);
                                inline_topics.insert(name.to_string(), t.clone());
                                t
                            }
                        }
                    }
                };
                out.push(
                    input,
                    Route {
                        topic,
                        key: dest.key_in(&decisions),
                        partition: dest.partition,
                        headers: dest.headers_in(&decisions),
                    },
                );
                Ok(())
            },
        )
        .map_err(|e| match e {
            Stop::Abi(e) => bad(e.to_string()),
            Stop::Bad(e) => e,
        })?;
        out.finish(inputs.len());
        Ok(())
    }
}

fn same_columns(a: &TableSchema, b: &TableSchema) -> bool {
    a.primary_key == b.primary_key
        && a.columns.len() == b.columns.len()
        && a.columns.iter().zip(&b.columns).all(|(x, y)| {
            x.name == y.name && x.sql_type == y.sql_type && x.is_binary() == y.is_binary()
        })
}

fn deadline_ticks(spec: &ModuleSpec, cutoff: Option<Instant>) -> u64 {
    let mut d = spec.limits.deadline;
    if let Some(c) = cutoff {
        d = d.min(c.saturating_duration_since(Instant::now()));
    }
    let ms = d.as_millis().max(1) as u64;
    (ms * TICKS_PER_SECOND).div_ceil(1000)
}

/// Sorts a failed call into timeout, memory limit or trap (with its code).
fn classify(store: &Store<ModuleState>, spec: &ModuleSpec, e: wasmtime::Error) -> RouterError {
    let module = spec.name.clone();
    if store.data().limiter.denied {
        return RouterError::MemoryLimit {
            module,
            limit_bytes: spec.limits.memory_bytes,
        };
    }
    let trap = e.downcast_ref::<Trap>().copied();
    if let Some(Trap::Interrupt) = trap {
        return RouterError::Timeout {
            module,
            deadline_ms: spec.limits.deadline.as_millis() as u64,
        };
    }
    // wasmtime's own first line is "error while executing at wasm backtrace:", which
    // says nothing; keep the trap and the innermost named function instead.
    let function = e
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .and_then(|bt| bt.frames().iter().find_map(|f| f.func_name()))
        .map(|f| format!(" in `{}`", f.chars().take(200).collect::<String>()))
        .unwrap_or_default();
    let (code, what) = match trap {
        Some(t) => (trap_code(&t), t.to_string()),
        None => (
            "host",
            e.root_cause()
                .to_string()
                .lines()
                .next()
                .unwrap_or("error")
                .chars()
                .take(500)
                .collect(),
        ),
    };
    RouterError::Trap {
        module,
        code,
        detail: format!("{what}{function}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(topic: &str) -> Route {
        Route {
            topic: Arc::from(topic),
            key: None,
            partition: None,
            headers: Vec::new(),
        }
    }

    #[test]
    fn flat_routes_keep_each_input_its_own_destinations() {
        let mut r = Routes::default();
        // Input 0 dropped, 1 to two topics, 2 and 3 dropped, 4 to one.
        r.push(1, to("a"));
        r.push(1, to("b"));
        r.push(4, to("c"));
        r.finish(6);
        assert_eq!(r.len(), 6);
        assert_eq!(r.dropped(), 4, "inputs 0, 2, 3 and 5");
        let topics = |i: usize| -> Vec<String> {
            r.get(i).iter().map(|(_, x)| x.topic.to_string()).collect()
        };
        assert_eq!(topics(1), ["a", "b"]);
        assert!(topics(3).is_empty());
        assert_eq!(topics(4), ["c"]);
        assert_eq!(
            r.to_vecs().iter().map(Vec::len).collect::<Vec<_>>(),
            [0, 2, 0, 0, 1, 0]
        );
        let drained: Vec<(usize, String)> =
            r.drain().map(|(i, x)| (i, x.topic.to_string())).collect();
        assert_eq!(drained, [(1, "a".into()), (1, "b".into()), (4, "c".into())]);
        assert!(r.is_empty() && r.dropped() == 0);
    }
}
