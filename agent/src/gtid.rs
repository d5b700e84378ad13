//! Global transaction ids of both server families.
//!
//! MySQL: `uuid[:tag]:gno` and sets of interval lists (`uuid:1-5:7,uuid2:1-3`).
//! MariaDB: `domain-server-seq` and a replication state holding the last GTID per domain
//! (`0-1-100,1-2-7`). Both render and parse in the servers' own text forms, so a position
//! can be copied between Sluice, the server and its tools.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A 16-byte server UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid(pub [u8; 16]);

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for Uuid {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let hex: Vec<u8> = s.bytes().filter(|b| *b != b'-').collect();
        if hex.len() != 32 {
            return Err(format!("`{s}` is not a UUID (expected 32 hex digits)"));
        }
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks(2).enumerate() {
            let txt = std::str::from_utf8(pair).map_err(|_| format!("`{s}` is not a UUID"))?;
            out[i] = u8::from_str_radix(txt, 16).map_err(|_| format!("`{s}` is not a UUID"))?;
        }
        Ok(Uuid(out))
    }
}

/// One MySQL GTID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MysqlGtid {
    /// Originating server.
    pub uuid: Uuid,
    /// Tag (MySQL 8.4+), empty when untagged.
    pub tag: String,
    /// Transaction number.
    pub gno: u64,
}

impl fmt::Display for MysqlGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tag.is_empty() {
            write!(f, "{}:{}", self.uuid, self.gno)
        } else {
            write!(f, "{}:{}:{}", self.uuid, self.tag, self.gno)
        }
    }
}

/// A MySQL GTID set: per (uuid, tag), sorted disjoint half-open intervals `[start, end)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MysqlGtidSet {
    sets: BTreeMap<(Uuid, String), Vec<(u64, u64)>>,
}

impl MysqlGtidSet {
    /// Adds the interval `[start, end)` for `uuid`/`tag`.
    pub fn add_interval(&mut self, uuid: Uuid, tag: &str, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let list = self.sets.entry((uuid, tag.to_string())).or_default();
        list.push((start, end));
        list.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(list.len());
        for &(s, e) in list.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        *list = merged;
    }

    /// Adds one GTID.
    pub fn add(&mut self, gtid: &MysqlGtid) {
        self.add_interval(gtid.uuid, &gtid.tag, gtid.gno, gtid.gno.saturating_add(1));
    }

    /// Whether the set holds `gtid`.
    pub fn contains(&self, gtid: &MysqlGtid) -> bool {
        self.sets
            .get(&(gtid.uuid, gtid.tag.clone()))
            .is_some_and(|l| l.iter().any(|&(s, e)| s <= gtid.gno && gtid.gno < e))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Iterates (uuid, tag, intervals).
    pub fn iter(&self) -> impl Iterator<Item = (&Uuid, &str, &[(u64, u64)])> {
        self.sets
            .iter()
            .map(|((u, t), l)| (u, t.as_str(), l.as_slice()))
    }
}

impl fmt::Display for MysqlGtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for ((uuid, tag), list) in &self.sets {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{uuid}")?;
            if !tag.is_empty() {
                write!(f, ":{tag}")?;
            }
            for &(s, e) in list {
                if e - s == 1 {
                    write!(f, ":{s}")?;
                } else {
                    write!(f, ":{s}-{}", e - 1)?;
                }
            }
        }
        Ok(())
    }
}

impl FromStr for MysqlGtidSet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut set = MysqlGtidSet::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut fields = part.split(':');
            let uuid: Uuid = fields.next().unwrap_or_default().trim().parse()?;
            let mut tag = String::new();
            for field in fields {
                let field = field.trim();
                if field.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                    tag = field.to_ascii_lowercase();
                    continue;
                }
                let (a, b) = match field.split_once('-') {
                    Some((a, b)) => (a, b),
                    None => (field, field),
                };
                let bad = || format!("`{field}` in GTID set `{s}` is not N or N-M");
                let a: u64 = a.parse().map_err(|_| bad())?;
                let b: u64 = b.parse().map_err(|_| bad())?;
                if a == 0 || b < a {
                    return Err(bad());
                }
                set.add_interval(uuid, &tag, a, b + 1);
            }
        }
        Ok(set)
    }
}

/// One MariaDB GTID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MariadbGtid {
    /// Replication domain.
    pub domain: u32,
    /// Originating server.
    pub server_id: u32,
    /// Sequence number within the domain.
    pub seq: u64,
}

impl fmt::Display for MariadbGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq)
    }
}

impl FromStr for MariadbGtid {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a MariaDB GTID (expected domain-server-seq)");
        let mut it = s.trim().split('-');
        let (Some(d), Some(sv), Some(q), None) = (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(bad());
        };
        Ok(MariadbGtid {
            domain: d.parse().map_err(|_| bad())?,
            server_id: sv.parse().map_err(|_| bad())?,
            seq: q.parse().map_err(|_| bad())?,
        })
    }
}

/// MariaDB replication state: the last GTID applied per domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MariadbGtidState {
    domains: BTreeMap<u32, MariadbGtid>,
}

impl MariadbGtidState {
    /// Records `gtid` as the latest of its domain.
    pub fn update(&mut self, gtid: MariadbGtid) {
        self.domains.insert(gtid.domain, gtid);
    }

    /// Whether no domain is known.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// The GTIDs, by domain.
    pub fn gtids(&self) -> impl Iterator<Item = &MariadbGtid> {
        self.domains.values()
    }

    /// Whether `gtid` is at or before this state in its domain (already applied).
    pub fn covers(&self, gtid: &MariadbGtid) -> bool {
        self.domains
            .get(&gtid.domain)
            .is_some_and(|g| g.seq >= gtid.seq)
    }
}

impl fmt::Display for MariadbGtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for g in self.domains.values() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{g}")?;
        }
        Ok(())
    }
}

impl FromStr for MariadbGtidState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut st = MariadbGtidState::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            st.update(part.parse()?);
        }
        Ok(st)
    }
}

/// A transaction's GTID, of either family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Gtid {
    /// MySQL `uuid[:tag]:gno`.
    Mysql(MysqlGtid),
    /// MariaDB `domain-server-seq`.
    Mariadb(MariadbGtid),
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtid::Mysql(g) => g.fmt(f),
            Gtid::Mariadb(g) => g.fmt(f),
        }
    }
}

/// Executed-GTID state of either family, as a checkpoint holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GtidState {
    /// MySQL executed GTID set.
    Mysql(MysqlGtidSet),
    /// MariaDB per-domain state.
    Mariadb(MariadbGtidState),
}

impl GtidState {
    /// Adds a committed transaction's GTID.
    pub fn add(&mut self, gtid: &Gtid) {
        match (self, gtid) {
            (GtidState::Mysql(s), Gtid::Mysql(g)) => s.add(g),
            (GtidState::Mariadb(s), Gtid::Mariadb(g)) => s.update(*g),
            (state, gtid) => {
                *state = match gtid {
                    Gtid::Mysql(g) => {
                        let mut s = MysqlGtidSet::default();
                        s.add(g);
                        GtidState::Mysql(s)
                    }
                    Gtid::Mariadb(g) => {
                        let mut s = MariadbGtidState::default();
                        s.update(*g);
                        GtidState::Mariadb(s)
                    }
                }
            }
        }
    }

    /// Parses either form: a MariaDB state if every element looks like `d-s-n`, else a
    /// MySQL GTID set.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Ok(st) = s.parse::<MariadbGtidState>() {
            return Ok(GtidState::Mariadb(st));
        }
        s.parse::<MysqlGtidSet>().map(GtidState::Mysql)
    }
}

impl fmt::Display for GtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GtidState::Mysql(s) => s.fmt(f),
            GtidState::Mariadb(s) => s.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_set_round_trips_and_merges() {
        let s: MysqlGtidSet =
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7, 3E11FA47-71CA-11E1-9E33-C80AA9429562:6"
                .parse()
                .unwrap();
        assert_eq!(s.to_string(), "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-7");
        let g = MysqlGtid {
            uuid: "3e11fa47-71ca-11e1-9e33-c80aa9429562".parse().unwrap(),
            tag: String::new(),
            gno: 8,
        };
        assert!(!s.contains(&g));
        let mut s2 = s.clone();
        s2.add(&g);
        assert_eq!(s2.to_string(), "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-8");
        assert!("zz:1".parse::<MysqlGtidSet>().is_err());
        assert!(
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:0"
                .parse::<MysqlGtidSet>()
                .is_err()
        );
    }

    #[test]
    fn tagged_sets_render_like_mysql() {
        let s: MysqlGtidSet = "55778904-0299-11f1-b1b8-4ef0c4956feb:1-13:mytag:1-2"
            .parse()
            .unwrap();
        assert_eq!(
            s.to_string(),
            "55778904-0299-11f1-b1b8-4ef0c4956feb:1-13,55778904-0299-11f1-b1b8-4ef0c4956feb:mytag:1-2"
        );
    }

    #[test]
    fn mariadb_state() {
        let mut st: MariadbGtidState = "0-1-100,1-2-7".parse().unwrap();
        assert!(st.covers(&"0-1-99".parse().unwrap()));
        assert!(!st.covers(&"0-1-101".parse().unwrap()));
        st.update("0-3-101".parse().unwrap());
        assert_eq!(st.to_string(), "0-3-101,1-2-7");
        assert!("0-1".parse::<MariadbGtid>().is_err());
        assert!(matches!(
            GtidState::parse("0-1-5"),
            Ok(GtidState::Mariadb(_))
        ));
    }
}
