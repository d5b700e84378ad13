//! Native unit testing of routers: feed tables and events, get decisions back as plain
//! values, without building WebAssembly. The router's subscription is applied as the
//! agent applies it ([`Selection`]): events it did not subscribe to never reach it, and
//! it sees only the columns (and before-images) it asked for.

use std::collections::HashMap;

use crate::abi::{self, BatchWriter, Decisions, Kind, ParsedDecision, ParsedTopic};
use crate::router::{Column, Config, Router, Selection, Subscription, Table, Tables};

/// One destination, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Topic name (indexes resolved through the subscription).
    pub topic: String,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Explicit partition.
    pub partition: Option<i32>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A decision, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Dropped.
    Dropped,
    /// Sent to these destinations.
    Sent(Vec<Sent>),
    /// Never shown to the router: its subscription leaves this table or kind out, so
    /// under the agent the module is not called for it.
    Unsubscribed,
}

/// What the router's view of a declared table leaves out: how many columns the test
/// gives per row, and which of them ship.
struct Declared {
    width: usize,
    projection: Vec<usize>,
}

/// Drives a [`Router`] natively.
pub struct Harness<R: Router> {
    router: R,
    /// What the router subscribed to.
    pub subscription: Subscription,
    selection: Selection,
    declared: HashMap<u32, Declared>,
    tables: Tables,
    batch: BatchWriter,
    /// Per queued event, in order: whether it went into the batch.
    queued: Vec<bool>,
    /// The first misuse (an event of an undeclared table, a row of the wrong width),
    /// reported by the next [`Harness::run`].
    misuse: Option<String>,
}

impl<R: Router> Harness<R> {
    /// Configures a router from key/value pairs.
    pub fn new(config: &[(&str, &str)]) -> Result<Self, String> {
        let config = Config::new(config.iter().copied());
        let (router, subscription) = R::configure(&config)?;
        // As the agent does: a key the module never asked for is refused by name.
        if let Some(e) = crate::router::unknown_keys_error(&config) {
            return Err(e);
        }
        let selection = Selection::of(&subscription)?;
        Ok(Harness {
            router,
            subscription,
            selection,
            declared: HashMap::new(),
            tables: Tables::default(),
            batch: BatchWriter::new(),
            queued: Vec::new(),
            misuse: None,
        })
    }

    /// Declares a table: `columns` are (name, sql type), `pk` names the key columns.
    /// The router is told of it with the columns its subscription ships; events of the
    /// table are then given with every column, in this order.
    pub fn table(
        &mut self,
        id: u32,
        database: &str,
        name: &str,
        columns: &[(&str, &str)],
        pk: &[&str],
    ) {
        let pk_index = |n: &str| columns.iter().position(|(c, _)| *c == n);
        let in_pk: Vec<bool> = (0..columns.len())
            .map(|i| pk.iter().any(|p| pk_index(p) == Some(i)))
            .collect();
        let projection: Vec<usize> = columns
            .iter()
            .enumerate()
            .filter(|(i, (n, _))| self.selection.ships(n, in_pk[*i]))
            .map(|(i, _)| i)
            .collect();
        let cols: Vec<Column> = projection
            .iter()
            .map(|&i| {
                let (n, t) = columns[i];
                Column {
                    name: n.to_string(),
                    sql_type: t.to_string(),
                    binary: t.contains("binary") || t.contains("blob"),
                }
            })
            .collect();
        // Key order as declared, positions among the shipped columns.
        let primary_key = pk
            .iter()
            .filter_map(|p| pk_index(p))
            .filter_map(|i| projection.iter().position(|&s| s == i).map(|s| s as u32))
            .collect();
        let table = Table {
            id,
            database: database.into(),
            name: name.into(),
            columns: cols,
            primary_key,
        };
        self.router.on_table(&table);
        self.tables.insert(table);
        self.declared.insert(
            id,
            Declared {
                width: columns.len(),
                projection,
            },
        );
    }

    /// Queues a row change of a declared table, or records it as unsubscribed.
    fn row(
        &mut self,
        table: u32,
        kind: Kind,
        before: Option<&[Option<&str>]>,
        after: Option<&[Option<&str>]>,
    ) -> &mut Self {
        let event = self.queued.len();
        let (Some(t), Some(named)) = (self.declared.get(&table), self.tables.get(table)) else {
            self.misuse
                .get_or_insert_with(|| format!("event {event}: table {table} was not declared"));
            self.queued.push(false);
            return self;
        };
        if !self.selection.wants(&named.database, &named.name, kind) {
            self.queued.push(false);
            return self;
        }
        let before = before.filter(|_| self.selection.before_image(kind));
        for image in before.iter().chain(after.iter()) {
            if image.len() != t.width {
                self.misuse.get_or_insert_with(|| {
                    format!(
                        "event {event}: {} values for {}.{}, which has {} columns",
                        image.len(),
                        named.database,
                        named.name,
                        t.width
                    )
                });
            }
        }
        self.batch.begin_event(
            table,
            kind,
            t.projection.len() as u16,
            before.is_some(),
            after.is_some(),
            0,
        );
        for image in before.iter().chain(after.iter()) {
            for &i in &t.projection {
                self.batch
                    .push_cell(image.get(i).copied().flatten().map(str::as_bytes));
            }
        }
        self.queued.push(true);
        self
    }

    /// Queues an insert of `after` (every column of the declared table, in order).
    pub fn insert(&mut self, table: u32, after: &[Option<&str>]) -> &mut Self {
        self.row(table, Kind::Insert, None, Some(after))
    }

    /// Queues an update from `before` to `after`. The router sees `before` only if it
    /// subscribed to before-images.
    pub fn update(
        &mut self,
        table: u32,
        before: &[Option<&str>],
        after: &[Option<&str>],
    ) -> &mut Self {
        self.row(table, Kind::Update, Some(before), Some(after))
    }

    /// Queues a delete of `before`.
    pub fn delete(&mut self, table: u32, before: &[Option<&str>]) -> &mut Self {
        self.row(table, Kind::Delete, Some(before), None)
    }

    /// Queues a DDL statement on `database.table` (`table` empty for database-level
    /// statements).
    pub fn ddl(&mut self, database: &str, table: &str, sql: &str) -> &mut Self {
        if !self.selection.wants(database, table, Kind::Ddl) {
            self.queued.push(false);
            return self;
        }
        self.batch
            .begin_event(abi::DDL_TABLE, Kind::Ddl, 3, false, true, 0);
        for v in [database, table, sql] {
            self.batch.push_cell(Some(v.as_bytes()));
        }
        self.queued.push(true);
        self
    }

    /// Routes the queued events as one batch and returns one outcome per queued event,
    /// in order ([`Outcome::Unsubscribed`] for those the router never saw). An event of
    /// an undeclared table or a row of the wrong width is an error naming it.
    pub fn run(&mut self) -> Result<Vec<Outcome>, String> {
        let queued = std::mem::take(&mut self.queued);
        let buf = self.batch.finish();
        self.batch.clear();
        if let Some(m) = self.misuse.take() {
            return Err(m);
        }
        let batch = abi::Batch::parse(&buf).map_err(|e| e.to_string())?;
        let mut out = Decisions::new();
        if !batch.is_empty() {
            self.router.route(&self.tables, &batch, &mut out)?;
        }
        let bytes = out.finish();
        let parsed = abi::parse_decisions(&bytes, batch.len()).map_err(|e| e.to_string())?;
        let mut routed = parsed.into_iter().map(|d| match d {
            ParsedDecision::Drop => Ok(Outcome::Dropped),
            ParsedDecision::Route(ds) => ds
                .into_iter()
                .map(|d| {
                    let topic = match &d.topic {
                        ParsedTopic::Index(i) => self
                            .subscription
                            .topics
                            .get(*i as usize)
                            .cloned()
                            .ok_or_else(|| format!("topic index {i} is not declared"))?,
                        ParsedTopic::Name(r) => {
                            String::from_utf8_lossy(&bytes[r.clone()]).into_owned()
                        }
                    };
                    Ok(Sent {
                        topic,
                        key: d.key_in(&bytes),
                        partition: d.partition,
                        headers: d.headers_in(&bytes),
                    })
                })
                .collect::<Result<Vec<_>, String>>()
                .map(Outcome::Sent),
        });
        queued
            .into_iter()
            .map(|shown| match shown {
                true => routed.next().unwrap_or_else(|| {
                    Err("the router decided for fewer events than it was given".into())
                }),
                false => Ok(Outcome::Unsubscribed),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PRIMARY_KEY;
    use crate::abi::Destination;

    /// Sends every event to topic "t" with a key describing what it saw: the table's
    /// shipped columns and the event's cells, so a test can assert on both.
    struct Echo {
        seen_columns: Vec<String>,
    }

    impl Router for Echo {
        fn configure(config: &Config) -> Result<(Self, Subscription), String> {
            let mut sub = Subscription::all().topics(["t"]);
            if let Some(cols) = config.get("columns") {
                sub = sub.columns(cols.split(',').map(str::to_string));
            }
            if let Some(t) = config.get("tables") {
                sub = sub.tables(t);
            }
            if let Some(t) = config.get("exclude") {
                sub = sub.exclude(t);
            }
            if config.get("no-deletes").is_some() {
                sub = sub.kinds(&[Kind::Insert, Kind::Update, Kind::Ddl]);
            }
            if config.get("no-before").is_some() {
                sub = sub.before_images(false);
            }
            Ok((
                Echo {
                    seen_columns: Vec::new(),
                },
                sub,
            ))
        }

        fn on_table(&mut self, table: &Table) {
            let pk: Vec<&str> = table.pk_names().collect();
            self.seen_columns.push(format!(
                "{}: {} pk {}",
                table.name,
                table
                    .columns
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                pk.join(",")
            ));
        }

        fn route(
            &mut self,
            _tables: &Tables,
            batch: &abi::Batch<'_>,
            out: &mut Decisions,
        ) -> Result<(), String> {
            for ev in batch.iter() {
                let image = |after: bool| {
                    (0..usize::from(ev.columns))
                        .map(|c| if after { ev.after(c) } else { ev.before(c) })
                        .map(|cell| cell.text().unwrap_or("~").to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let key = format!(
                    "{}|{}",
                    if ev.has_before() {
                        image(false)
                    } else {
                        String::new()
                    },
                    if ev.has_after() {
                        image(true)
                    } else {
                        String::new()
                    },
                );
                out.send(Destination::to_index(0).key(key.as_bytes()));
            }
            Ok(())
        }
    }

    fn keys(outcomes: &[Outcome]) -> Vec<String> {
        outcomes
            .iter()
            .map(|o| match o {
                Outcome::Sent(s) => {
                    String::from_utf8_lossy(s[0].key.as_deref().unwrap_or_default()).into_owned()
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn declare(h: &mut Harness<Echo>) {
        h.table(
            1,
            "shop",
            "orders",
            &[("note", "text"), ("ID", "bigint"), ("total", "int")],
            &["ID"],
        );
        h.table(
            2,
            "crm",
            "users",
            &[("id", "int"), ("name", "text")],
            &["id"],
        );
    }

    #[test]
    fn columns_are_projected_as_the_agent_projects_them() {
        let mut h = Harness::<Echo>::new(&[("columns", &format!("{PRIMARY_KEY},Total"))])
            .expect("configures");
        declare(&mut h);
        assert_eq!(
            h.router.seen_columns,
            ["orders: ID,total pk ID", "users: id pk id"]
        );
        let out = h
            .insert(1, &[Some("hello"), Some("7"), Some("30")])
            .update(2, &[Some("1"), Some("a")], &[Some("1"), Some("b")])
            .delete(1, &[Some("x"), Some("8"), None])
            .run()
            .expect("routes");
        assert_eq!(keys(&out), ["|7,30", "1|1", "8,~|"]);
    }

    #[test]
    fn unsubscribed_tables_kinds_and_images_never_reach_the_router() {
        let mut h = Harness::<Echo>::new(&[
            ("tables", "shop\\..*,crm\\..*"),
            ("exclude", "crm.users"),
            ("no-deletes", ""),
            ("no-before", ""),
        ])
        .expect("configures");
        declare(&mut h);
        let out = h
            .insert(2, &[Some("1"), Some("a")])
            .update(
                1,
                &[Some("a"), Some("1"), Some("2")],
                &[Some("b"), Some("1"), Some("3")],
            )
            .delete(1, &[Some("b"), Some("1"), Some("3")])
            .ddl("crm", "users", "ALTER TABLE users ADD c INT")
            .ddl("shop", "orders", "ALTER TABLE orders ADD c INT")
            .run()
            .expect("routes");
        assert_eq!(
            keys(&out),
            [
                "Unsubscribed",
                "|b,1,3",
                "Unsubscribed",
                "Unsubscribed",
                "|shop,orders,ALTER TABLE orders ADD c INT",
            ]
        );
    }

    #[test]
    fn an_undeclared_table_or_a_short_row_is_named() {
        let mut h = Harness::<Echo>::new(&[]).expect("configures");
        declare(&mut h);
        let e = h.insert(9, &[Some("1")]).run().expect_err("undeclared");
        assert!(e.contains("table 9 was not declared"), "{e}");
        let e = h.insert(2, &[Some("1")]).run().expect_err("short");
        assert!(
            e.contains("1 values for crm.users, which has 2 columns"),
            "{e}"
        );
        let ok = h
            .insert(2, &[Some("1"), None])
            .run()
            .expect("next batch is clean");
        assert_eq!(keys(&ok), ["|1,~"]);
    }
}
