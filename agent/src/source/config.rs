//! Settings of the live source.

use std::time::Duration;

use sluice_sdk::canal::TableFilter;

use crate::gtid::GtidState;

/// Where replication starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// The server's current end of binlog.
    Latest,
    /// The oldest binlog the server still has.
    Earliest,
    /// A file and offset (must be a transaction boundary).
    FilePos {
        /// Binlog file name.
        file: String,
        /// Offset in it.
        pos: u64,
    },
    /// A GTID state: MySQL executed set or MariaDB per-domain state.
    Gtid(GtidState),
}

impl std::str::FromStr for StartPosition {
    type Err = String;

    /// `latest`, `earliest`, `FILE:POS`, `gtid:SET`.
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        match t {
            "latest" => return Ok(StartPosition::Latest),
            "earliest" => return Ok(StartPosition::Earliest),
            _ => {}
        }
        if let Some(g) = t.strip_prefix("gtid:") {
            return GtidState::parse(g).map(StartPosition::Gtid);
        }
        match t.rsplit_once(':') {
            Some((file, pos)) if !file.is_empty() => {
                let pos: u64 = pos
                    .parse()
                    .map_err(|_| format!("`{pos}` in `{t}` is not a byte offset"))?;
                if pos < 4 {
                    return Err(format!("offset {pos} in `{t}` is inside the file header"));
                }
                Ok(StartPosition::FilePos {
                    file: file.to_string(),
                    pos,
                })
            }
            _ => Err(format!(
                "`{t}` is not a start position (expected latest, earliest, FILE:POS or gtid:SET)"
            )),
        }
    }
}

/// Which tables are captured (`source.include`, `source.exclude`): patterns matched
/// against `database.table`, whole name, case-insensitively, as Canal's
/// `canal.instance.filter.regex` and `filter.black.regex` are. No include list captures
/// every table; an exclude match always wins.
#[derive(Debug, Clone, Default)]
pub struct TableSelection {
    include: TableFilter,
    exclude: TableFilter,
}

impl TableSelection {
    /// Compiles the two lists; the error names the first bad pattern and its list.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, String> {
        let list = |key: &str, ps: &[String]| {
            TableFilter::from_patterns(ps.iter().map(String::as_str))
                .map_err(|e| format!("source.{key}: {e}"))
        };
        Ok(TableSelection {
            include: list("include", include)?,
            exclude: list("exclude", exclude)?,
        })
    }

    /// Whether changes of `database.table` are captured. Statements without a table
    /// (`CREATE DATABASE`) are matched as `database.`.
    pub fn captures(&self, database: &str, table: &str) -> bool {
        (self.include.is_empty() || self.include.matches(database, table))
            && !self.exclude.matches(database, table)
    }

    /// Whether every table is captured (no lists).
    pub fn is_all(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }
}

/// How to reach the server and how to replicate from it.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Replication user.
    pub user: String,
    /// Its password (never logged).
    pub password: crate::secret::Secret,
    /// Replica server id: unique among all replicas of this server.
    pub server_id: u32,
    /// Where to start when there is no checkpoint.
    pub start: StartPosition,
    /// Heartbeat period the server is asked for.
    pub heartbeat: Duration,
    /// Silence after which the connection is considered dead (default 3 heartbeats).
    pub read_timeout: Duration,
    /// Time allowed for connecting and the startup checks.
    pub connect_timeout: Duration,
    /// First reconnect delay; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
    /// Offset from UTC, in seconds, for TIMESTAMP text.
    pub tz_offset_secs: i32,
    /// Which tables are captured; the others are skipped before their rows are decoded.
    pub tables: std::sync::Arc<TableSelection>,
}

impl SourceConfig {
    /// Defaults for everything but the address and credentials.
    pub fn new(host: &str, port: u16, user: &str, password: &str, server_id: u32) -> Self {
        SourceConfig {
            host: host.to_string(),
            port,
            user: user.to_string(),
            password: crate::secret::Secret::new(password),
            server_id,
            start: StartPosition::Latest,
            heartbeat: Duration::from_secs(5),
            read_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(10),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            tz_offset_secs: 0,
            tables: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions() {
        assert_eq!("latest".parse::<StartPosition>(), Ok(StartPosition::Latest));
        assert_eq!(
            "binlog.000003:1234".parse::<StartPosition>(),
            Ok(StartPosition::FilePos {
                file: "binlog.000003".into(),
                pos: 1234
            })
        );
        assert!(matches!(
            "gtid:0-1-100".parse::<StartPosition>(),
            Ok(StartPosition::Gtid(GtidState::Mariadb(_)))
        ));
        assert!("binlog.000003:x".parse::<StartPosition>().is_err());
        assert!("nonsense".parse::<StartPosition>().is_err());
    }

    #[test]
    fn table_selection_includes_then_excludes() {
        let s = |inc: &[&str], exc: &[&str]| {
            let v = |x: &[&str]| x.iter().map(|p| p.to_string()).collect::<Vec<_>>();
            TableSelection::new(&v(inc), &v(exc)).expect("valid patterns")
        };
        let all = s(&[], &[]);
        assert!(all.is_all() && all.captures("any", "thing"));
        let shop = s(&[r"shop\..*", r"crm\.user_[0-9]{1,3}"], &[r"shop\.tmp_.*"]);
        assert!(shop.captures("shop", "orders"));
        assert!(
            shop.captures("SHOP", "Orders"),
            "case-insensitive, as Canal"
        );
        assert!(!shop.captures("shop", "tmp_x"), "exclude wins");
        assert!(
            shop.captures("crm", "user_12"),
            "a pattern with a comma is one pattern"
        );
        assert!(!shop.captures("crm", "user_1234"), "whole name");
        assert!(!shop.captures("other", "orders"));
        assert!(shop.captures("shop", ""), "CREATE DATABASE shop is `shop.`");
        let only_excl = s(&[], &[r"mysql\..*"]);
        assert!(only_excl.captures("shop", "orders") && !only_excl.captures("mysql", "user"));
        let bad = TableSelection::new(&[], &["shop\\.(".into()]).unwrap_err();
        assert!(
            bad.starts_with("source.exclude: `shop\\.(` is not a valid table pattern"),
            "{bad}"
        );
    }
}
