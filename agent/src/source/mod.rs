//! The live source: a replication client that turns a MySQL/MariaDB server's binlog into
//! [`crate::event::SourceItem`]s.
//!
//! Invariants: it resumes only at transaction boundaries; after a reconnect it skips
//! what it already emitted of an open transaction, so nothing is lost or duplicated;
//! transient failures (EOF, server restart, killed dump thread, read timeout) reconnect
//! with backoff, while bad data, a purged position or a server-id conflict stop it with
//! an error that says what to do.

pub mod catchup;
mod config;
mod dictionary;
mod mysql;

pub use config::{SourceConfig, StartPosition, TableSelection};
pub use mysql::{
    BinlogSource, Received, ServerEnd, SourceError, SourceStats, bytes_behind, captured_tables,
    probe_lag,
};

use crate::event::SourceItem;

/// What the pipeline reads: the binlog's items, in order. [`BinlogSource`] is the live
/// one; the pipeline's own tests read from memory.
pub trait ItemSource: Send + 'static {
    /// The next item. An error ends the run (the live source has already retried what
    /// a retry can fix).
    fn next_item(
        &mut self,
    ) -> impl std::future::Future<Output = Result<SourceItem, SourceError>> + Send;

    /// Where the stream is, shared with the lag probe and the pipeline.
    fn received(&self) -> Received {
        Received::default()
    }
}

impl ItemSource for BinlogSource {
    fn next_item(
        &mut self,
    ) -> impl std::future::Future<Output = Result<SourceItem, SourceError>> + Send {
        self.next()
    }

    fn received(&self) -> Received {
        BinlogSource::received(self)
    }
}
