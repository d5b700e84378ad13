//! Glue between the WIT exports and a [`Router`]: keeps the router and the announced
//! tables in module-global state and converts between generated and SDK types. Used by
//! [`export_router!`](crate::export_router); not part of the public API.

use std::cell::RefCell;

use crate::abi::{Batch, Decisions, Kind};
use crate::bindings::sluice::router::types as wit;
use crate::router::{Column, Config, Router, Table, Tables};

/// A module's state.
pub struct State<R> {
    router: Option<R>,
    tables: Tables,
}

impl<R> Default for State<R> {
    fn default() -> Self {
        State {
            router: None,
            tables: Tables::default(),
        }
    }
}

fn kind_to_wit(k: Kind) -> wit::ChangeKind {
    match k {
        Kind::Insert => wit::ChangeKind::Insert,
        Kind::Update => wit::ChangeKind::Update,
        Kind::Delete => wit::ChangeKind::Delete,
        Kind::Ddl => wit::ChangeKind::Ddl,
    }
}

/// `configure` export.
pub fn configure<R: Router>(
    state: &RefCell<State<R>>,
    config: Vec<(String, String)>,
) -> Result<wit::Subscription, String> {
    let config = Config::new(config);
    let (router, sub) = R::configure(&config)?;
    // A key the module never asked for is a typo or a setting it does not implement:
    // refused by name rather than silently ignored.
    if let Some(e) = crate::router::unknown_keys_error(&config) {
        return Err(e);
    }
    let mut st = state.borrow_mut();
    st.router = Some(router);
    Ok(wit::Subscription {
        tables: sub.tables,
        exclude_tables: sub.exclude_tables,
        kinds: sub.kinds.into_iter().map(kind_to_wit).collect(),
        columns: sub.columns,
        before_images: sub.before_images,
        topics: sub.topics,
    })
}

/// `add-table` export.
pub fn add_table<R: Router>(state: &RefCell<State<R>>, t: wit::Table) {
    let table = Table {
        id: t.id,
        database: t.database,
        name: t.name,
        columns: t
            .columns
            .into_iter()
            .map(|c| Column {
                name: c.name,
                sql_type: c.sql_type,
                binary: c.binary,
            })
            .collect(),
        primary_key: t.primary_key,
    };
    let mut st = state.borrow_mut();
    if let Some(r) = st.router.as_mut() {
        r.on_table(&table);
    }
    st.tables.insert(table);
}

/// `route` export.
pub fn route<R: Router>(state: &RefCell<State<R>>, batch: Vec<u8>) -> Result<Vec<u8>, String> {
    let b = Batch::parse(&batch).map_err(|e| e.to_string())?;
    let mut st = state.borrow_mut();
    let st = &mut *st;
    let Some(router) = st.router.as_mut() else {
        return Err("route called before configure".into());
    };
    let mut out = Decisions::new();
    router.route(&st.tables, &b, &mut out)?;
    if out.len() != b.len() {
        return Err(format!("{} decisions for {} events", out.len(), b.len()));
    }
    Ok(out.finish())
}
