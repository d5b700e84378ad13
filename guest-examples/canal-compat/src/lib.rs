//! Canal-compatible routing: reads Canal's own MQ settings from the module config and
//! gives every row the topic and partition Canal would give it.
//!
//! Settings (names as in `canal.properties`; values copied verbatim, `\\` escapes
//! included): `canal.mq.topic` (default topic), `canal.mq.dynamicTopic`,
//! `canal.mq.partition` (fixed partition when no hash is configured),
//! `canal.mq.partitionsNum`, `canal.mq.partitionHash`,
//! `canal.mq.dynamicTopicPartitionNum`, `canal.mq.database.hash` (alias `databaseHash`,
//! default true), the instance filters `canal.instance.filter.regex` /
//! `canal.instance.filter.black.regex`, and Canal's event filters (true drops what they
//! name, as Canal's parser does): `canal.instance.filter.query.ddl` (DDL),
//! `.query.dml` (statement-format DML, a QUERY event), `.query.dcl` (GRANT, REVOKE,
//! user management), `.rows` (all row changes), `.dml.insert` / `.dml.update` /
//! `.dml.delete`. `canal.instance.filter.druid.ddl` and
//! `canal.instance.filter.transaction.entry` are accepted and change nothing here (DDL
//! is parsed by the agent; FlatMessages carry no transaction entries).
//! `canal.instance.filter.table.error = true` is refused: Sluice never skips a table it
//! cannot decode. Any other key is refused by name (the SDK's unknown-key check).

use sluice_sdk::canal::{
    DynamicTopics, HashMode, PartitionHash, TopicPartitions, canal_partition, java_hash_code,
};
use sluice_sdk::prelude::*;

/// Per-table decisions, computed once when the table is announced so that routing a
/// row is only hashing its key cells.
struct TableRoute {
    /// Dynamic topic (`None`: the default topic).
    topic: Option<String>,
    partitions: i32,
    rule: Rule,
}

enum Rule {
    /// One partition for every row: Canal's fixed partition (no partitionHash), the
    /// table-name hash, or 0 (no matching rule).
    Constant(i32),
    /// Hash these cells (`None`: a configured column the table lacks, hashed as "").
    Cells {
        seed: i32,
        cells: Vec<Option<usize>>,
    },
}

/// The router.
pub struct CanalCompat {
    tables: Vec<Option<TableRoute>>,
    default_topic: String,
    dynamic: DynamicTopics,
    fixed_partition: i32,
    partitions: i32,
    hash: PartitionHash,
    topic_partitions: TopicPartitions,
    database_hash: bool,
    /// Statement events dropped: (DDL, DML, DCL).
    drop_query: (bool, bool, bool),
}

/// What kind of statement a QUERY event's SQL is, as Canal sorts them.
#[derive(Debug, PartialEq, Eq)]
enum Statement {
    Ddl,
    Dml,
    Dcl,
}

fn statement(sql: &str) -> Statement {
    let mut words = sql
        .split(|c: char| c.is_whitespace() || c == '(')
        .filter(|w| !w.is_empty() && !w.starts_with("/*"))
        .map(|w| w.to_ascii_uppercase());
    let first = words.next().unwrap_or_default();
    let second = words.next().unwrap_or_default();
    match (first.as_str(), second.as_str()) {
        ("INSERT" | "UPDATE" | "DELETE" | "REPLACE" | "LOAD", _) => Statement::Dml,
        ("GRANT" | "REVOKE", _)
        | ("CREATE" | "DROP" | "ALTER" | "RENAME", "USER" | "ROLE")
        | ("SET", "PASSWORD" | "ROLE" | "DEFAULT") => Statement::Dcl,
        _ => Statement::Ddl,
    }
}

impl CanalCompat {
    fn partitions_for(&self, topic: &str) -> i32 {
        self.topic_partitions
            .for_topic(topic)
            .unwrap_or(self.partitions)
            .max(1)
    }

    fn plan(&self, t: &Table) -> TableRoute {
        let topic = self.dynamic.topic_for(&t.database, &t.name);
        let partitions = self.partitions_for(topic.as_deref().unwrap_or(&self.default_topic));
        let seed = if self.database_hash {
            java_hash_code(&t.database)
        } else {
            0
        };
        let rule = if self.hash.is_empty() {
            Rule::Constant(self.fixed_partition)
        } else {
            match self.hash.mode_for(&t.database, &t.name) {
                None => Rule::Constant(0),
                Some(HashMode::Table) => {
                    Rule::Constant(canal_partition(java_hash_code(&t.name), partitions))
                }
                Some(HashMode::PrimaryKey) => Rule::Cells {
                    seed,
                    cells: t.primary_key.iter().map(|&i| Some(i as usize)).collect(),
                },
                // Canal looks names up in the row map, which is case-sensitive.
                Some(HashMode::Columns(cols)) => Rule::Cells {
                    seed,
                    cells: cols
                        .iter()
                        .map(|c| t.columns.iter().position(|col| col.name == *c))
                        .collect(),
                },
            }
        };
        TableRoute {
            topic,
            partitions,
            rule,
        }
    }
}

fn flag(config: &Config, keys: &[&str], default: bool) -> Result<bool, String> {
    for k in keys {
        if let Some(v) = config.get(k) {
            return match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                other => Err(format!("config `{k}` = `{other}` is not true or false")),
            };
        }
    }
    Ok(default)
}

impl Router for CanalCompat {
    fn configure(config: &Config) -> Result<(Self, Subscription), String> {
        let r = CanalCompat {
            tables: Vec::new(),
            default_topic: config.get_or("canal.mq.topic", "example").to_string(),
            dynamic: DynamicTopics::parse(config.get_or("canal.mq.dynamicTopic", ""))
                .map_err(|e| format!("canal.mq.dynamicTopic: {e}"))?,
            fixed_partition: config.parse_or("canal.mq.partition", 0)?,
            partitions: config.parse_or("canal.mq.partitionsNum", 1)?,
            hash: PartitionHash::parse(config.get_or("canal.mq.partitionHash", ""))
                .map_err(|e| format!("canal.mq.partitionHash: {e}"))?,
            topic_partitions: TopicPartitions::parse(
                config.get_or("canal.mq.dynamicTopicPartitionNum", ""),
            )
            .map_err(|e| format!("canal.mq.dynamicTopicPartitionNum: {e}"))?,
            database_hash: flag(config, &["canal.mq.database.hash", "databaseHash"], true)?,
            drop_query: (
                flag(config, &["canal.instance.filter.query.ddl"], false)?,
                flag(config, &["canal.instance.filter.query.dml"], false)?,
                flag(config, &["canal.instance.filter.query.dcl"], false)?,
            ),
        };
        // Accepted, no effect here (see the module docs).
        flag(config, &["canal.instance.filter.druid.ddl"], true)?;
        flag(config, &["canal.instance.filter.transaction.entry"], false)?;
        if flag(config, &["canal.instance.filter.table.error"], false)? {
            return Err("canal.instance.filter.table.error = true is not supported: Sluice stops on a table it cannot decode rather than skipping its rows".into());
        }
        let rows = !flag(config, &["canal.instance.filter.rows"], false)?;
        let mut kinds = Vec::new();
        for (kind, key) in [
            (Kind::Insert, "canal.instance.filter.dml.insert"),
            (Kind::Update, "canal.instance.filter.dml.update"),
            (Kind::Delete, "canal.instance.filter.dml.delete"),
        ] {
            if rows && !flag(config, &[key], false)? {
                kinds.push(kind);
            }
        }
        if r.drop_query != (true, true, true) {
            kinds.push(Kind::Ddl);
        }
        if r.partitions < 1 {
            return Err(format!(
                "canal.mq.partitionsNum must be at least 1, not {}",
                r.partitions
            ));
        }
        // Rows are hashed on their key or on the columns the rules name: nothing else
        // needs to cross into the module.
        let columns = std::iter::once(PRIMARY_KEY.to_string()).chain(r.hash.columns());
        let sub = Subscription::all()
            .kinds(&kinds)
            .tables(config.get_or("canal.instance.filter.regex", ""))
            .exclude(config.get_or("canal.instance.filter.black.regex", ""))
            .columns(columns)
            .before_images(false)
            // The default topic first (decisions refer to it by index), then every
            // topic the dynamic rules name outright, so `sluice topics create` and
            // `sluice check` know them.
            .topics(std::iter::once(r.default_topic.clone()).chain(r.dynamic.named_topics()));
        Ok((r, sub))
    }

    fn on_table(&mut self, table: &Table) {
        let plan = self.plan(table);
        let i = table.id as usize;
        if self.tables.len() <= i {
            self.tables.resize_with(i + 1, || None);
        }
        self.tables[i] = Some(plan);
    }

    fn route(
        &mut self,
        _tables: &Tables,
        batch: &Batch<'_>,
        out: &mut Decisions,
    ) -> Result<(), String> {
        for ev in batch.iter() {
            if let Some((db, name, sql)) = ev.ddl() {
                let dropped = match statement(sql) {
                    Statement::Ddl => self.drop_query.0,
                    Statement::Dml => self.drop_query.1,
                    Statement::Dcl => self.drop_query.2,
                };
                if dropped {
                    out.drop_event();
                    continue;
                }
                // DDL: its table's topic, partition 0 (Canal's fixed partition when no
                // hash is configured).
                let p = if self.hash.is_empty() {
                    self.fixed_partition
                } else {
                    0
                };
                match self.dynamic.topic_for(db, name) {
                    Some(t) => out.send(Destination::to_name(&t).partition(p)),
                    None => out.send(Destination::to_index(0).partition(p)),
                }
                continue;
            }
            let Some(Some(t)) = self.tables.get(ev.table as usize) else {
                return Err(format!(
                    "event for table id {} that was never announced",
                    ev.table
                ));
            };
            let partition = match &t.rule {
                Rule::Constant(p) => *p,
                Rule::Cells { seed, cells } => {
                    let mut h = *seed;
                    for c in cells {
                        h ^= java_hash_code(c.and_then(|i| ev.current(i).text()).unwrap_or(""));
                    }
                    canal_partition(h, t.partitions)
                }
            };
            match &t.topic {
                Some(topic) => out.send(Destination::to_name(topic).partition(partition)),
                None => out.send(Destination::to_index(0).partition(partition)),
            }
        }
        Ok(())
    }
}

sluice_sdk::export_router!(CanalCompat);

#[cfg(test)]
mod tests {
    use super::*;

    fn harness(cfg: &[(&str, &str)]) -> Harness<CanalCompat> {
        let mut h = Harness::<CanalCompat>::new(cfg).expect("configures");
        h.table(
            1,
            "mytest",
            "user",
            &[("id", "int(11)"), ("name", "varchar(32)")],
            &["id"],
        );
        h.table(
            2,
            "db_a",
            "t",
            &[("k", "varchar(8)"), ("v", "int(11)")],
            &["k"],
        );
        h.table(3, "other", "x", &[("a", "int(11)")], &[]);
        h
    }

    fn sent(o: &Outcome) -> (&str, Option<i32>) {
        match o {
            Outcome::Sent(s) => (s[0].topic.as_str(), s[0].partition),
            Outcome::Dropped => ("<dropped>", None),
            Outcome::Unsubscribed => ("<unsubscribed>", None),
        }
    }

    /// Expected partitions were computed outside Rust (Python, with Java's `hashCode`,
    /// `^`, `Math.abs` and `%` semantics):
    /// hash = "mytest".hashCode() ^ "<id>".hashCode(); partition = abs(abs(hash) % 4).
    #[test]
    fn pk_hash_with_database_hash() {
        let mut h = harness(&[
            ("canal.mq.topic", "fallback"),
            ("canal.mq.dynamicTopic", "mytest.user,topicA:db_a\\\\..*"),
            ("canal.mq.partitionsNum", "4"),
            ("canal.mq.partitionHash", ".*\\\\..*:$pk$"),
        ]);
        h.insert(1, &[Some("1"), Some("a")]);
        h.insert(1, &[Some("2"), Some("b")]);
        h.delete(1, &[Some("3"), Some("c")]);
        h.insert(2, &[Some("k"), Some("1")]);
        h.insert(3, &[Some("9")]);
        h.ddl("mytest", "user", "ALTER TABLE user ADD c INT");
        let out = h.run().unwrap();
        assert_eq!(java_hash_code("mytest"), -1_059_087_298);
        assert_eq!(sent(&out[0]), ("mytest.user", Some(1)));
        assert_eq!(sent(&out[1]), ("mytest.user", Some(0)));
        // Deletes hash the before-image.
        assert_eq!(sent(&out[2]), ("mytest.user", Some(3)));
        assert_eq!(sent(&out[3]), ("topicA", Some(3)));
        // No primary key: only the database hash.
        assert_eq!(sent(&out[4]), ("fallback", Some(0)));
        // DDL goes to partition 0 of its table's topic.
        assert_eq!(sent(&out[5]), ("mytest.user", Some(0)));
    }

    #[test]
    fn columns_table_and_no_database_hash() {
        let mut h = harness(&[
            ("canal.mq.partitionsNum", "3"),
            ("canal.mq.partitionHash", "mytest.user:id^name,db_a.t"),
            ("canal.mq.database.hash", "false"),
            ("canal.mq.dynamicTopicPartitionNum", "example:5"),
        ]);
        h.insert(1, &[Some("7"), Some("zoë")]);
        h.insert(2, &[Some("k"), Some("1")]);
        h.insert(3, &[Some("1")]);
        let out = h.run().unwrap();
        // "7".hashCode() ^ "zoë".hashCode(), 5 partitions from dynamicTopicPartitionNum.
        assert_eq!(sent(&out[0]), ("example", Some(4)));
        // Table mode: "t".hashCode().
        assert_eq!(sent(&out[1]), ("example", Some(1)));
        // No rule for other.x: partition 0.
        assert_eq!(sent(&out[2]), ("example", Some(0)));
    }

    /// Canal's event filters drop what they name; the subscription keeps dropped kinds
    /// from reaching the module at all.
    #[test]
    fn canal_event_filters_drop_what_they_name() {
        let mut h = harness(&[
            ("canal.instance.filter.query.ddl", "true"),
            ("canal.instance.filter.query.dcl", "true"),
            ("canal.instance.filter.dml.delete", "true"),
            ("canal.instance.filter.druid.ddl", "true"),
            ("canal.instance.filter.transaction.entry", "false"),
        ]);
        h.insert(1, &[Some("1"), Some("a")]);
        h.delete(1, &[Some("1"), Some("a")]);
        h.ddl("mytest", "user", "ALTER TABLE user ADD c INT");
        h.ddl("mytest", "user", "GRANT SELECT ON mytest.* TO 'x'@'%'");
        h.ddl("mytest", "user", "INSERT INTO user VALUES (1, 'a')");
        let out = h.run().unwrap();
        let got: Vec<(&str, Option<i32>)> = out.iter().map(sent).collect();
        assert_eq!(
            got,
            [
                ("example", Some(0)),
                ("<unsubscribed>", None),
                ("<dropped>", None),
                ("<dropped>", None),
                // Statement-format DML stays: only query.dml drops it.
                ("example", Some(0)),
            ]
        );
        // filter.rows: no row change at all.
        let mut h = harness(&[("canal.instance.filter.rows", "true")]);
        h.insert(1, &[Some("1"), Some("a")]);
        assert_eq!(sent(&h.run().unwrap()[0]), ("<unsubscribed>", None));
    }

    /// A typo is refused with the key it was probably meant to be; a Canal setting
    /// Sluice cannot honour is refused by name.
    #[test]
    fn unknown_and_unsupported_keys_are_refused_by_name() {
        let e = Harness::<CanalCompat>::new(&[("canal.mq.partitonHash", ".*\\..*:$pk$")])
            .err()
            .expect("a typo is refused");
        assert!(
            e.contains("`canal.mq.partitonHash` (did you mean `canal.mq.partitionHash`?)"),
            "{e}"
        );
        let e = Harness::<CanalCompat>::new(&[("canal.instance.filter.table.error", "true")])
            .err()
            .expect("refused");
        assert!(e.contains("canal.instance.filter.table.error"), "{e}");
        let e = Harness::<CanalCompat>::new(&[("canal.instance.filter.query.ddl", "maybe")])
            .err()
            .expect("refused");
        assert!(e.contains("canal.instance.filter.query.ddl"), "{e}");
    }

    #[test]
    fn no_hash_uses_fixed_partition() {
        let mut h = harness(&[("canal.mq.partition", "2")]);
        h.insert(1, &[Some("1"), Some("a")]);
        assert_eq!(sent(&h.run().unwrap()[0]), ("example", Some(2)));
    }

    #[test]
    fn bad_settings_are_refused_with_the_key() {
        let e = Harness::<CanalCompat>::new(&[("canal.mq.partitionsNum", "x")])
            .err()
            .unwrap();
        assert!(e.contains("canal.mq.partitionsNum"), "{e}");
        let e = Harness::<CanalCompat>::new(&[("canal.mq.partitionHash", "a(:id")])
            .err()
            .unwrap();
        assert!(e.contains("canal.mq.partitionHash"), "{e}");
    }
}
