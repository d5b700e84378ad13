//! The live source: a replication client that turns a MySQL/MariaDB server's binlog into
//! [`SourceItem`](crate::event::SourceItem)s.
//!
//! Invariants: it resumes only at transaction boundaries; after a reconnect it skips
//! what it already emitted of an open transaction, so nothing is lost or duplicated;
//! transient failures (EOF, server restart, killed dump thread, read timeout) reconnect
//! with backoff, while bad data, a purged position or a server-id conflict stop it with
//! an error that says what to do.

mod config;
mod dictionary;
mod mysql;

pub use config::{SourceConfig, StartPosition, TableSelection};
pub use mysql::{
    BinlogSource, Received, ServerEnd, SourceError, SourceStats, bytes_behind, probe_lag,
};
