//! The types a module author works with: configuration, subscription, tables, and the
//! [`Router`] trait.

use std::collections::HashMap;

use crate::abi::{Batch, Decisions, EventRef, Kind};

/// A module's configuration: the `config` table of its entry in the agent's config file,
/// as key/value strings in file order.
///
/// It remembers which keys the module asked for (present or not) and which prefixes it
/// read as a family, so that after `configure` the SDK can refuse a key the module does
/// not know — a typo such as `canal.mq.partitonHash` — naming the closest known key,
/// instead of silently ignoring it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
    /// Keys the module looked up.
    asked: std::cell::RefCell<Vec<String>>,
    /// Prefixes the module read as families (`tag.`).
    families: std::cell::RefCell<Vec<String>>,
    /// The module read every entry itself ([`Config::entries`]).
    took_all: std::cell::Cell<bool>,
}

impl Config {
    /// A configuration from key/value pairs.
    pub fn new<K: Into<String>, V: Into<String>>(
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Config {
            entries: entries
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            ..Config::default()
        }
    }

    /// The value of `key` (the last one, if repeated).
    pub fn get(&self, key: &str) -> Option<&str> {
        {
            let mut asked = self.asked.borrow_mut();
            if !asked.iter().any(|k| k == key) {
                asked.push(key.to_string());
            }
        }
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or `default`.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The value of `key` parsed as `T`, or `default` when absent; an error names the key.
    pub fn parse_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|e| format!("config `{key}` = `{v}`: {e}")),
        }
    }

    /// Declares keys the module accepts without reading them (so they are not refused
    /// as unknown).
    pub fn accept(&self, keys: &[&str]) {
        for k in keys {
            let _ = self.get(k);
        }
    }

    /// The entries whose key starts with `prefix` (the prefix kept), in file order: a
    /// family of keys such as `tag.<name>`. Their keys count as known.
    pub fn with_prefix<'a>(&'a self, prefix: &str) -> Vec<(&'a str, &'a str)> {
        {
            let mut f = self.families.borrow_mut();
            if !f.iter().any(|p| p == prefix) {
                f.push(prefix.to_string());
            }
        }
        self.entries
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// All entries. A module that reads them all this way takes on checking them: no key
    /// is refused as unknown afterwards.
    pub fn entries(&self) -> &[(String, String)] {
        self.took_all.set(true);
        &self.entries
    }

    /// The configured keys the module neither asked for nor read as a family, each with
    /// the closest key it did ask for (a likely typo), in file order.
    pub fn unknown_keys(&self) -> Vec<(String, Option<String>)> {
        if self.took_all.get() {
            return Vec::new();
        }
        let asked = self.asked.borrow();
        let families = self.families.borrow();
        let mut out: Vec<(String, Option<String>)> = Vec::new();
        for (k, _) in &self.entries {
            if asked.iter().any(|a| a == k)
                || families.iter().any(|p| k.starts_with(p.as_str()))
                || out.iter().any(|(o, _)| o == k)
            {
                continue;
            }
            let closest = asked
                .iter()
                .map(|a| (edit_distance(a, k), a))
                .filter(|(d, a)| *d <= 3.max(a.len() / 4))
                .min_by_key(|(d, _)| *d)
                .map(|(_, a)| a.clone());
            out.push((k.clone(), closest));
        }
        out
    }

    /// Every key the module asked for, in the order it asked.
    pub fn known_keys(&self) -> Vec<String> {
        let mut keys = self.asked.borrow().clone();
        keys.extend(self.families.borrow().iter().map(|p| format!("{p}*")));
        keys
    }
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Why a configuration is refused for keys the module does not know (typos named with
/// the closest known key). `None` when every key is known.
pub fn unknown_keys_error(config: &Config) -> Option<String> {
    let unknown = config.unknown_keys();
    if unknown.is_empty() {
        return None;
    }
    let parts: Vec<String> = unknown
        .iter()
        .map(|(k, near)| match near {
            Some(n) => format!("`{k}` (did you mean `{n}`?)"),
            None => format!("`{k}`"),
        })
        .collect();
    Some(format!(
        "unknown config key{} {}; this module reads {}",
        if parts.len() > 1 { "s" } else { "" },
        parts.join(", "),
        config.known_keys().join(", ")
    ))
}

/// In [`Subscription::columns`], the primary key (Canal's spelling). It matches no other
/// column, so a list of only this ships only the key columns.
pub const PRIMARY_KEY: &str = "$pk$";

/// What a module wants to receive (see the WIT `subscription`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Canal-syntax table filter; empty means all tables.
    pub tables: String,
    /// Canal-syntax tables to leave out.
    pub exclude_tables: String,
    /// Kinds to receive.
    pub kinds: Vec<Kind>,
    /// Columns to ship (primary key always ships); empty means all.
    pub columns: Vec<String>,
    /// Whether updates carry before-images.
    pub before_images: bool,
    /// Topics decisions refer to by index.
    pub topics: Vec<String>,
}

impl Default for Subscription {
    fn default() -> Self {
        Self::all()
    }
}

impl Subscription {
    /// Every table, every kind, all columns, with before-images, no declared topics.
    pub fn all() -> Self {
        Subscription {
            tables: String::new(),
            exclude_tables: String::new(),
            kinds: vec![Kind::Insert, Kind::Update, Kind::Delete, Kind::Ddl],
            columns: Vec::new(),
            before_images: true,
            topics: Vec::new(),
        }
    }

    /// Restricts tables (Canal filter syntax, e.g. `shop\..*,crm.user`).
    pub fn tables(mut self, filter: impl Into<String>) -> Self {
        self.tables = filter.into();
        self
    }

    /// Leaves tables out (Canal filter syntax).
    pub fn exclude(mut self, filter: impl Into<String>) -> Self {
        self.exclude_tables = filter.into();
        self
    }

    /// Restricts kinds.
    pub fn kinds(mut self, kinds: &[Kind]) -> Self {
        self.kinds = kinds.to_vec();
        self
    }

    /// Restricts columns (primary-key columns always ship). [`PRIMARY_KEY`] names no
    /// other column, so `columns([PRIMARY_KEY])` ships only the key: the cheapest
    /// subscription for a router that hashes keys.
    pub fn columns<S: Into<String>>(mut self, cols: impl IntoIterator<Item = S>) -> Self {
        self.columns = cols.into_iter().map(Into::into).collect();
        self
    }

    /// Whether updates carry before-images.
    pub fn before_images(mut self, yes: bool) -> Self {
        self.before_images = yes;
        self
    }

    /// Declares the topics decisions refer to by index.
    pub fn topics<S: Into<String>>(mut self, topics: impl IntoIterator<Item = S>) -> Self {
        self.topics = topics.into_iter().map(Into::into).collect();
        self
    }
}

/// A [`Subscription`] as the agent applies it: which events reach the module and which
/// columns of them. The agent and the native [`Harness`](crate::testing::Harness) both
/// use this, so a module's native tests see exactly what it sees under the agent.
#[derive(Debug, Clone)]
pub struct Selection {
    tables: crate::canal::TableFilter,
    exclude: crate::canal::TableFilter,
    kinds: [bool; 4],
    columns: Vec<String>,
    before_images: bool,
}

impl Selection {
    /// Compiles the filters; an error names the field (`subscription tables: ...`).
    pub fn new(
        tables: &str,
        exclude_tables: &str,
        kinds: impl IntoIterator<Item = Kind>,
        columns: Vec<String>,
        before_images: bool,
    ) -> Result<Self, String> {
        let tables = crate::canal::TableFilter::parse(tables)
            .map_err(|e| format!("subscription tables: {e}"))?;
        let exclude = crate::canal::TableFilter::parse(exclude_tables)
            .map_err(|e| format!("subscription exclude-tables: {e}"))?;
        let mut k = [false; 4];
        for kind in kinds {
            k[kind as usize] = true;
        }
        Ok(Selection {
            tables,
            exclude,
            kinds: k,
            columns,
            before_images,
        })
    }

    /// From a module's own subscription.
    pub fn of(sub: &Subscription) -> Result<Self, String> {
        Self::new(
            &sub.tables,
            &sub.exclude_tables,
            sub.kinds.iter().copied(),
            sub.columns.clone(),
            sub.before_images,
        )
    }

    /// Whether a change of this kind on `database.table` reaches the module (for DDL,
    /// the table the statement names).
    pub fn wants(&self, database: &str, table: &str, kind: Kind) -> bool {
        self.kinds[kind as usize]
            && (self.tables.is_empty() || self.tables.matches(database, table))
            && (self.exclude.is_empty() || !self.exclude.matches(database, table))
    }

    /// Whether the column named `name` ships: every column when the subscription names
    /// none, else the primary key and the named columns (ASCII case-insensitive, as
    /// MySQL column names are; [`PRIMARY_KEY`] names no column of its own).
    pub fn ships(&self, name: &str, in_primary_key: bool) -> bool {
        self.columns.is_empty()
            || in_primary_key
            || self
                .columns
                .iter()
                .any(|n| n != PRIMARY_KEY && n.eq_ignore_ascii_case(name))
    }

    /// Whether an event of this kind carries its before-image: deletes always, updates
    /// when the subscription asked for it, inserts and DDL never.
    pub fn before_image(&self, kind: Kind) -> bool {
        kind == Kind::Delete || (kind == Kind::Update && self.before_images)
    }
}

/// A column as shipped (see the WIT `column`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Name.
    pub name: String,
    /// SQL type (`bigint(20) unsigned`, ...).
    pub sql_type: String,
    /// Whether values are raw bytes.
    pub binary: bool,
}

/// A table as announced by the agent (see the WIT `table`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Id events refer to.
    pub id: u32,
    /// Database name.
    pub database: String,
    /// Table name.
    pub name: String,
    /// Shipped columns, in cell order.
    pub columns: Vec<Column>,
    /// Positions in `columns` of the primary key, in key order.
    pub primary_key: Vec<u32>,
}

impl Table {
    /// Position of the column named `name` in cell order (exact match first, then
    /// ASCII case-insensitive, as MySQL column names are).
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .or_else(|| {
                self.columns
                    .iter()
                    .position(|c| c.name.eq_ignore_ascii_case(name))
            })
    }

    /// Names of the primary-key columns, in key order.
    pub fn pk_names(&self) -> impl Iterator<Item = &str> {
        self.primary_key
            .iter()
            .filter_map(|&i| self.columns.get(i as usize).map(|c| c.name.as_str()))
    }
}

/// The tables announced so far, by id.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    by_id: HashMap<u32, Table>,
}

impl Tables {
    /// Records (or replaces) a table.
    pub fn insert(&mut self, t: Table) {
        self.by_id.insert(t.id, t);
    }

    /// The table with `id`.
    pub fn get(&self, id: u32) -> Option<&Table> {
        self.by_id.get(&id)
    }

    /// The table of an event (`None` for DDL).
    pub fn of(&self, ev: &EventRef<'_>) -> Option<&Table> {
        self.get(ev.table)
    }
}

/// A routing module. Implement it and export it with [`export_router!`](crate::export_router).
pub trait Router: Sized + 'static {
    /// Builds the router from its configuration and says what it wants to receive. An
    /// error makes the agent refuse the module (and names the problem in its status).
    fn configure(config: &Config) -> Result<(Self, Subscription), String>;

    /// Called when a table is announced or re-announced with a new definition (same
    /// id), before events that use it: the place to precompute per-table decisions
    /// (topic, hash rule) instead of redoing them per event.
    fn on_table(&mut self, table: &Table) {
        let _ = table;
    }

    /// Decides for every event of `batch`, in order: push exactly one decision per event
    /// into `out` (drop, or one or more destinations). Same configuration and events
    /// must give the same decisions. An error applies the module's failure policy to
    /// the whole batch.
    fn route(
        &mut self,
        tables: &Tables,
        batch: &Batch<'_>,
        out: &mut Decisions,
    ) -> Result<(), String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_the_module_never_asked_for_are_named_with_the_closest_known_one() {
        let c = Config::new([
            ("canal.mq.topic", "t"),
            ("canal.mq.partitonHash", "x"),
            ("tag.A", "db\\..*"),
            ("completely.else", "1"),
        ]);
        let _ = c.get("canal.mq.topic");
        let _ = c.get("canal.mq.partitionHash");
        let _ = c.with_prefix("tag.");
        assert_eq!(
            c.unknown_keys(),
            [
                (
                    "canal.mq.partitonHash".to_string(),
                    Some("canal.mq.partitionHash".to_string())
                ),
                ("completely.else".to_string(), None),
            ]
        );
        let e = unknown_keys_error(&c).expect("refused");
        assert!(e.starts_with("unknown config keys `canal.mq.partitonHash` (did you mean `canal.mq.partitionHash`?), `completely.else`"), "{e}");
        assert!(e.contains("tag.*"), "{e}");
        // Accepted keys and a module that reads every entry itself refuse nothing.
        c.accept(&["completely.else", "canal.mq.partitonHash"]);
        assert!(unknown_keys_error(&c).is_none());
        let all = Config::new([("anything", "1")]);
        let _ = all.entries();
        assert!(all.unknown_keys().is_empty());
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
