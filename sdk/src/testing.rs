//! Native unit testing of routers: feed tables and events, get decisions back as plain
//! values, without building WebAssembly.

use crate::abi::{self, BatchWriter, Decisions, Kind, ParsedDecision, ParsedTopic};
use crate::router::{Column, Config, Router, Subscription, Table, Tables};

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
}

/// Drives a [`Router`] natively.
pub struct Harness<R: Router> {
    router: R,
    /// What the router subscribed to.
    pub subscription: Subscription,
    tables: Tables,
    batch: BatchWriter,
}

impl<R: Router> Harness<R> {
    /// Configures a router from key/value pairs.
    pub fn new(config: &[(&str, &str)]) -> Result<Self, String> {
        let (router, subscription) = R::configure(&Config::new(config.iter().copied()))?;
        Ok(Harness {
            router,
            subscription,
            tables: Tables::default(),
            batch: BatchWriter::new(),
        })
    }

    /// Announces a table: `columns` are (name, sql type), `pk` names the key columns.
    pub fn table(
        &mut self,
        id: u32,
        database: &str,
        name: &str,
        columns: &[(&str, &str)],
        pk: &[&str],
    ) {
        let cols: Vec<Column> = columns
            .iter()
            .map(|(n, t)| Column {
                name: n.to_string(),
                sql_type: t.to_string(),
                binary: t.contains("binary") || t.contains("blob"),
            })
            .collect();
        let primary_key = pk
            .iter()
            .filter_map(|p| cols.iter().position(|c| c.name == *p).map(|i| i as u32))
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
    }

    fn push_image(&mut self, values: &[Option<&str>]) {
        for v in values {
            self.batch.push_cell(v.map(str::as_bytes));
        }
    }

    /// Queues an insert of `after`.
    pub fn insert(&mut self, table: u32, after: &[Option<&str>]) -> &mut Self {
        self.batch
            .begin_event(table, Kind::Insert, after.len() as u16, false, true, 0);
        self.push_image(after);
        self
    }

    /// Queues an update from `before` to `after`.
    pub fn update(
        &mut self,
        table: u32,
        before: &[Option<&str>],
        after: &[Option<&str>],
    ) -> &mut Self {
        self.batch
            .begin_event(table, Kind::Update, after.len() as u16, true, true, 0);
        self.push_image(before);
        self.push_image(after);
        self
    }

    /// Queues a delete of `before`.
    pub fn delete(&mut self, table: u32, before: &[Option<&str>]) -> &mut Self {
        self.batch
            .begin_event(table, Kind::Delete, before.len() as u16, true, false, 0);
        self.push_image(before);
        self
    }

    /// Queues a DDL statement.
    pub fn ddl(&mut self, database: &str, table: &str, sql: &str) -> &mut Self {
        self.batch
            .begin_event(abi::DDL_TABLE, Kind::Ddl, 3, false, true, 0);
        self.push_image(&[Some(database), Some(table), Some(sql)]);
        self
    }

    /// Routes the queued events as one batch and returns one outcome per event.
    pub fn run(&mut self) -> Result<Vec<Outcome>, String> {
        let buf = self.batch.finish();
        self.batch.clear();
        let batch = abi::Batch::parse(&buf).map_err(|e| e.to_string())?;
        let mut out = Decisions::new();
        self.router.route(&self.tables, &batch, &mut out)?;
        let bytes = out.finish();
        let parsed = abi::parse_decisions(&bytes, batch.len()).map_err(|e| e.to_string())?;
        parsed
            .into_iter()
            .map(|d| match d {
                ParsedDecision::Drop => Ok(Outcome::Dropped),
                ParsedDecision::Route(ds) => ds
                    .into_iter()
                    .map(|d| {
                        let topic = match d.topic {
                            ParsedTopic::Index(i) => self
                                .subscription
                                .topics
                                .get(i as usize)
                                .cloned()
                                .ok_or_else(|| format!("topic index {i} is not declared"))?,
                            ParsedTopic::Name(r) => String::from_utf8_lossy(&bytes[r]).into_owned(),
                        };
                        Ok(Sent {
                            topic,
                            key: d.key.map(|r| bytes[r].to_vec()),
                            partition: d.partition,
                            headers: d
                                .headers
                                .into_iter()
                                .map(|(n, v)| {
                                    (
                                        String::from_utf8_lossy(&bytes[n]).into_owned(),
                                        bytes[v].to_vec(),
                                    )
                                })
                                .collect(),
                        })
                    })
                    .collect::<Result<Vec<_>, String>>()
                    .map(Outcome::Sent),
            })
            .collect()
    }
}
