//! Canal-compatible routing: reads Canal's own MQ settings from the module config and
//! gives every row the topic and partition Canal would give it.
//!
//! Settings (names as in `canal.properties`; values copied verbatim, `\\` escapes
//! included): `canal.mq.topic` (default topic), `canal.mq.dynamicTopic`,
//! `canal.mq.partition` (fixed partition when no hash is configured),
//! `canal.mq.partitionsNum`, `canal.mq.partitionHash`,
//! `canal.mq.dynamicTopicPartitionNum`, `canal.mq.database.hash` (alias `databaseHash`,
//! default true), and the instance filters `canal.instance.filter.regex` /
//! `canal.instance.filter.black.regex`.

use sluice_sdk::canal::{
    DynamicTopics, HashMode, PartitionHash, TopicPartitions, canal_partition, java_hash_code,
    row_hash,
};
use sluice_sdk::prelude::*;

/// The router.
pub struct CanalCompat {
    default_topic: String,
    dynamic: DynamicTopics,
    fixed_partition: i32,
    partitions: i32,
    hash: PartitionHash,
    topic_partitions: TopicPartitions,
    database_hash: bool,
}

impl CanalCompat {
    fn partitions_for(&self, topic: &str) -> i32 {
        self.topic_partitions
            .for_topic(topic)
            .unwrap_or(self.partitions)
            .max(1)
    }

    /// Canal's partition for one row event.
    fn partition(&self, table: Option<&Table>, ev: &EventRef<'_>, topic: &str) -> i32 {
        if self.hash.is_empty() {
            return self.fixed_partition;
        }
        let (Some(t), false) = (table, ev.kind == Kind::Ddl) else {
            return 0;
        };
        let n = self.partitions_for(topic);
        match self.hash.mode_for(&t.database, &t.name) {
            None => 0,
            Some(HashMode::Table) => canal_partition(java_hash_code(&t.name), n),
            Some(HashMode::PrimaryKey) => {
                let values = t.primary_key.iter().map(|&i| ev.current(i as usize).text());
                canal_partition(row_hash(&t.database, self.database_hash, values), n)
            }
            Some(HashMode::Columns(cols)) => {
                // Canal looks names up in the row map, which is case-sensitive.
                let values = cols.iter().map(|c| {
                    t.columns
                        .iter()
                        .position(|col| col.name == *c)
                        .and_then(|i| ev.current(i).text())
                });
                canal_partition(row_hash(&t.database, self.database_hash, values), n)
            }
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
        };
        if r.partitions < 1 {
            return Err(format!(
                "canal.mq.partitionsNum must be at least 1, not {}",
                r.partitions
            ));
        }
        let sub = Subscription::all()
            .tables(config.get_or("canal.instance.filter.regex", ""))
            .exclude(config.get_or("canal.instance.filter.black.regex", ""))
            .before_images(false)
            .topics([r.default_topic.clone()]);
        Ok((r, sub))
    }

    fn route(
        &mut self,
        tables: &Tables,
        batch: &Batch<'_>,
        out: &mut Decisions,
    ) -> Result<(), String> {
        for ev in batch.iter() {
            let table = tables.of(&ev);
            let (db, name) = match (table, ev.ddl()) {
                (Some(t), _) => (t.database.as_str(), t.name.as_str()),
                (None, Some((db, t, _))) => (db, t),
                (None, None) => ("", ""),
            };
            let dynamic = self.dynamic.topic_for(db, name);
            let topic = dynamic.as_deref().unwrap_or(&self.default_topic);
            let partition = self.partition(table, &ev, topic);
            let dest = match &dynamic {
                Some(t) => Destination::to_name(t),
                None => Destination::to_index(0),
            };
            out.send(dest.partition(partition));
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
