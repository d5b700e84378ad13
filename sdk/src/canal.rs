//! Canal's routing semantics, for modules that must give the same answers Canal gives:
//! its regex table filters, Java's `String.hashCode`, dynamic topics
//! (`canal.mq.dynamicTopic`) and partition hashing (`canal.mq.partitionHash`), as in
//! Canal's `MQMessageUtils` and `AviaterRegexFilter`.

use regex::{Regex, RegexBuilder};

/// Java's `String.hashCode`: `s[0]*31^(n-1) + ... + s[n-1]` over UTF-16 code units, with
/// wrapping `int` arithmetic.
pub fn java_hash_code(s: &str) -> i32 {
    let mut h: i32 = 0;
    for unit in s.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    h
}

/// Canal's partition of a hash: `Math.abs(Math.abs(hash) % partitions)`. Java's
/// `Math.abs(Integer.MIN_VALUE)` stays negative, so the remainder is taken of a
/// possibly negative number and made positive afterwards, which keeps such rows in one
/// fixed partition.
pub fn canal_partition(hash: i32, partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    (hash.wrapping_abs() % partitions).wrapping_abs()
}

/// Undoes the escaping of a Java `.properties` value (`db\\..*` in the file is
/// `db\..*` to Canal), so values copied from `canal.properties` work unchanged.
pub fn unescape_properties(s: &str) -> String {
    s.replace("\\\\", "\\")
}

fn is_wildcard(s: &str) -> bool {
    s.contains([
        '*', '?', '+', '|', '(', ')', '{', '}', '[', ']', '\\', '$', '^',
    ])
}

fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split([',', ';']).map(str::trim).filter(|p| !p.is_empty())
}

/// One pattern of a Canal list: a plain name (compared ASCII case-insensitively) or a
/// case-insensitive regex that must match the whole name.
#[derive(Debug, Clone)]
enum NamePattern {
    Simple(String),
    Regex(Regex),
}

impl NamePattern {
    fn new(p: &str) -> Result<Self, String> {
        if is_wildcard(p) {
            RegexBuilder::new(&format!("^(?:{p})$"))
                .case_insensitive(true)
                .build()
                .map(NamePattern::Regex)
                .map_err(|e| format!("`{p}` is not a valid regular expression: {e}"))
        } else {
            Ok(NamePattern::Simple(p.to_string()))
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Simple(s) => s.eq_ignore_ascii_case(name),
            NamePattern::Regex(r) => r.is_match(name),
        }
    }
}

/// Canal's table filter (`canal.instance.filter.regex`, `black.regex`): comma-separated
/// patterns matched against `database.table`, case-insensitively, whole name.
#[derive(Debug, Clone, Default)]
pub struct TableFilter {
    patterns: Vec<Regex>,
}

impl TableFilter {
    /// Parses a filter; empty matches nothing (callers treat "no filter" themselves).
    pub fn parse(filter: &str) -> Result<Self, String> {
        let filter = unescape_properties(filter);
        let mut patterns = Vec::new();
        for p in split_list(&filter) {
            let re = RegexBuilder::new(&format!("^(?:{p})$"))
                .case_insensitive(true)
                .build()
                .map_err(|e| format!("`{p}` is not a valid table pattern: {e}"))?;
            patterns.push(re);
        }
        Ok(TableFilter { patterns })
    }

    /// A filter of whole patterns, not split on commas (so `{1,3}` stays one regex):
    /// what a list in a config file gives. Each is matched like [`TableFilter::parse`]'s.
    pub fn from_patterns<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut out = Vec::new();
        for p in patterns {
            let re = RegexBuilder::new(&format!("^(?:{p})$"))
                .case_insensitive(true)
                .build()
                .map_err(|e| format!("`{p}` is not a valid table pattern: {e}"))?;
            out.push(re);
        }
        Ok(TableFilter { patterns: out })
    }

    /// Whether the filter has no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `database.table` matches one of the patterns.
    pub fn matches(&self, database: &str, table: &str) -> bool {
        let name = format!("{database}.{table}");
        self.patterns.iter().any(|p| p.is_match(&name))
    }
}

#[derive(Debug, Clone)]
struct TopicRule {
    /// Explicit topic (`topic:patterns`), or `None` for "the matched name, lowercased".
    topic: Option<String>,
    pattern: NamePattern,
    /// For regexes: whether the pattern is for `db.table` (contains `\.`) or for `db`.
    table_level: bool,
}

/// `canal.mq.dynamicTopic`: which topic a `database.table` goes to.
#[derive(Debug, Clone, Default)]
pub struct DynamicTopics {
    rules: Vec<TopicRule>,
}

impl DynamicTopics {
    /// Parses `mytest.user,mytest.order,topicA:db_a\..*,.*\..*`.
    pub fn parse(config: &str) -> Result<Self, String> {
        let config = unescape_properties(config);
        let mut rules = Vec::new();
        for item in split_list(&config) {
            let (topic, pat) = match item.find(':') {
                Some(i) => (Some(item[..i].trim().to_string()), item[i + 1..].trim()),
                None => (None, item),
            };
            if pat.is_empty() {
                continue;
            }
            rules.push(TopicRule {
                topic,
                pattern: NamePattern::new(pat)?,
                table_level: pat.contains("\\."),
            });
        }
        Ok(DynamicTopics { rules })
    }

    /// The topics the rules name outright: `topic:pattern` rules' topics and plain
    /// names' own (lowercased, as routed); a regex without a topic names none (its
    /// topics come from the tables it matches).
    pub fn named_topics(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .rules
            .iter()
            .filter_map(|r| match (&r.topic, &r.pattern) {
                (Some(t), _) => Some(t.clone()),
                (None, NamePattern::Simple(n)) => Some(n.to_lowercase()),
                (None, NamePattern::Regex(_)) => None,
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn match_name(&self, name: &str) -> Option<String> {
        let has_dot = name.contains('.');
        for r in &self.rules {
            let hit = match &r.pattern {
                NamePattern::Simple(_) => r.pattern.matches(name),
                NamePattern::Regex(_) if has_dot => r.table_level && r.pattern.matches(name),
                NamePattern::Regex(_) => !r.table_level && r.pattern.matches(name),
            };
            if hit {
                return Some(r.topic.clone().unwrap_or_else(|| name.to_lowercase()));
            }
        }
        None
    }

    /// The topic for `database.table`, trying the table-level name then the database
    /// name; `None` means Canal's default topic.
    pub fn topic_for(&self, database: &str, table: &str) -> Option<String> {
        if database.is_empty() || table.is_empty() {
            return None;
        }
        self.match_name(&format!("{database}.{table}"))
            .or_else(|| self.match_name(database))
    }
}

/// How Canal hashes a table's rows to partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashMode {
    /// `db.tbl` without columns: the table name's hash, all rows in one partition.
    Table,
    /// `db.tbl:$pk$`: the primary-key values.
    PrimaryKey,
    /// `db.tbl:col1^col2`: these columns' values.
    Columns(Vec<String>),
}

/// `canal.mq.partitionHash` rules.
#[derive(Debug, Clone, Default)]
pub struct PartitionHash {
    rules: Vec<(NamePattern, HashMode)>,
}

impl PartitionHash {
    /// Parses `test.table:id^name,.*\..*:$pk$,other.t`.
    pub fn parse(config: &str) -> Result<Self, String> {
        let config = unescape_properties(config);
        let mut rules = Vec::new();
        for item in split_list(&config) {
            let (pat, mode) = match item.rfind(':') {
                Some(i) if i > 0 => {
                    let cols = &item[i + 1..];
                    let mode = if cols.eq_ignore_ascii_case("$pk$") {
                        HashMode::PrimaryKey
                    } else {
                        HashMode::Columns(
                            cols.split('^')
                                .filter(|c| !c.is_empty())
                                .map(str::to_string)
                                .collect(),
                        )
                    };
                    (&item[..i], mode)
                }
                _ => (item, HashMode::Table),
            };
            rules.push((NamePattern::new(pat)?, mode));
        }
        Ok(PartitionHash { rules })
    }

    /// Whether there are no rules (Canal then uses its fixed `canal.mq.partition`).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every column a rule names (`db.tbl:col1^col2`), once each: with the primary key,
    /// all a Canal-style router needs of a row.
    pub fn columns(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, m) in &self.rules {
            if let HashMode::Columns(cols) = m {
                for c in cols {
                    if !out.iter().any(|o| o.eq_ignore_ascii_case(c)) {
                        out.push(c.clone());
                    }
                }
            }
        }
        out
    }

    /// The first rule matching `database.table`.
    pub fn mode_for(&self, database: &str, table: &str) -> Option<&HashMode> {
        let name = format!("{database}.{table}");
        self.rules
            .iter()
            .find(|(p, _)| p.matches(&name))
            .map(|(_, m)| m)
    }
}

/// Canal's row hash for [`HashMode::PrimaryKey`] / [`HashMode::Columns`]: the
/// database name's hash when `database_hash` is on (Canal's default), XORed with each
/// key value's hash; a missing value hashes as the empty string.
pub fn row_hash<'a>(
    database: &str,
    database_hash: bool,
    values: impl IntoIterator<Item = Option<&'a str>>,
) -> i32 {
    let mut h = if database_hash {
        java_hash_code(database)
    } else {
        0
    };
    for v in values {
        h ^= java_hash_code(v.unwrap_or(""));
    }
    h
}

/// `canal.mq.dynamicTopicPartitionNum`: partition count per topic (`topic:4,.*:2`).
#[derive(Debug, Clone, Default)]
pub struct TopicPartitions {
    rules: Vec<(NamePattern, Option<i32>)>,
}

impl TopicPartitions {
    /// Parses the setting.
    pub fn parse(config: &str) -> Result<Self, String> {
        let config = unescape_properties(config);
        let mut rules = Vec::new();
        for item in split_list(&config) {
            if let Some(i) = item.rfind(':')
                && i > 0
            {
                let n = item[i + 1..].trim();
                let num = if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                    n.parse().ok()
                } else {
                    None
                };
                rules.push((NamePattern::new(&item[..i])?, num));
            }
        }
        Ok(TopicPartitions { rules })
    }

    /// The partition count configured for `topic`.
    pub fn for_topic(&self, topic: &str) -> Option<i32> {
        self.rules
            .iter()
            .find(|(p, _)| p.matches(topic))
            .and_then(|(_, n)| *n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_codes() {
        // Values from Java: "".hashCode() == 0, "a" == 97, "hello" == 99162322,
        // "polygenelubricants" == Integer.MIN_VALUE, "😀" (two UTF-16 units) == 1772899,
        // "中文" == 646394 (computed by hand: 20013 * 31 + 25991).
        assert_eq!(java_hash_code(""), 0);
        assert_eq!(java_hash_code("a"), 97);
        assert_eq!(java_hash_code("hello"), 99_162_322);
        assert_eq!(java_hash_code("polygenelubricants"), i32::MIN);
        assert_eq!(java_hash_code("😀"), 1_772_899);
        assert_eq!(java_hash_code("中文"), 646_394);
    }

    #[test]
    fn min_value_stays_in_range() {
        // Math.abs(MIN_VALUE) % 3 == -2 in Java, and the outer abs makes it 2.
        assert_eq!(canal_partition(i32::MIN, 3), 2);
        assert_eq!(canal_partition(-7, 3), 1);
        assert_eq!(canal_partition(7, 3), 1);
        assert_eq!(canal_partition(5, 0), 0);
    }

    #[test]
    fn dynamic_topics_like_canal() {
        let t = DynamicTopics::parse("mytest.user,mytest.order,topicA:db_a\\\\..*,db_b").unwrap();
        assert_eq!(
            t.topic_for("mytest", "user").as_deref(),
            Some("mytest.user")
        );
        assert_eq!(
            t.topic_for("MyTest", "Order").as_deref(),
            Some("mytest.order")
        );
        assert_eq!(t.topic_for("db_a", "x").as_deref(), Some("topicA"));
        // Schema-level simple name: the topic is the schema name.
        assert_eq!(t.topic_for("db_b", "anything").as_deref(), Some("db_b"));
        assert_eq!(t.topic_for("other", "t"), None);
        assert_eq!(t.topic_for("", "t"), None);
        // What the rules name outright (the regex rule without a topic names none).
        assert_eq!(
            t.named_topics(),
            ["db_b", "mytest.order", "mytest.user", "topicA"]
        );
        // A schema-level regex does not match table names and vice versa.
        let t = DynamicTopics::parse("s:shop.*,t:shop\\..*").unwrap();
        assert_eq!(t.topic_for("shop", "orders").as_deref(), Some("t"));
        let t = DynamicTopics::parse("s:shop.*").unwrap();
        assert_eq!(t.topic_for("shop", "orders").as_deref(), Some("s"));
    }

    #[test]
    fn partition_hash_rules() {
        let p = PartitionHash::parse("test.t1:id^name,test.t2,.*\\..*:$pk$").unwrap();
        assert_eq!(
            p.mode_for("test", "t1"),
            Some(&HashMode::Columns(vec!["id".into(), "name".into()]))
        );
        assert_eq!(p.mode_for("TEST", "T2"), Some(&HashMode::Table));
        assert_eq!(p.mode_for("x", "y"), Some(&HashMode::PrimaryKey));
        assert!(PartitionHash::parse("bad(:id").is_err());
    }

    #[test]
    fn table_filters() {
        let f = TableFilter::parse("shop\\..*,crm.user").unwrap();
        assert!(f.matches("shop", "orders"));
        assert!(f.matches("CRM", "USER"));
        assert!(!f.matches("crm", "users"));
        assert!(!f.matches("shopx", "orders"));
    }

    #[test]
    fn topic_partition_counts() {
        let t = TopicPartitions::parse("big:8,.*:2,odd:x").unwrap();
        assert_eq!(t.for_topic("big"), Some(8));
        assert_eq!(t.for_topic("small"), Some(2));
    }
}
