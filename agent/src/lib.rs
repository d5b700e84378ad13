//! Sluice: a MySQL/MariaDB change-data-capture edge agent.
//!
//! Layout:
//! - [`json`], [`gtid`], [`ddl`]: the ground floor (JSON escaping, GTIDs and their
//!   sets, DDL statement targets), depending on nothing else in the crate;
//! - [`event`]: the change event every later stage consumes;
//! - [`binlog`]: the decoder, raw event bytes to [`event::SourceItem`]s, shared by
//!   offline files and the live stream (with [`binlog::schema`], table definitions
//!   from `information_schema`);
//! - [`source`]: the live replication client (connect, start position, reconnect);
//! - [`mod@format`]: Canal FlatMessage and Debezium-style JSON;
//! - [`router`]: the WebAssembly module host, policies and hot swap;
//! - [`pipeline`], [`sink`], [`checkpoint`]: `sluice run` from source to broker (one
//!   folder per publisher under `sink/`), and what is safe to resume from;
//! - [`config`], [`secret`]: `sluice.toml` and values never printed;
//! - [`admin`], [`control`], [`metrics`]: the HTTP admin API, the commands it sends the
//!   pipeline, and the Prometheus metrics.

pub mod admin;
pub mod binlog;
pub mod checkpoint;
pub mod config;
pub mod control;
pub mod ddl;
pub mod event;
pub mod format;
pub mod gtid;
pub mod human;
pub mod json;
pub mod metrics;
pub mod migrate;
pub mod pipeline;
pub mod router;
pub mod secret;
pub mod sink;
pub mod source;

/// An error and its causes on one line (`a: b: c`), as anyhow's `{:#}` prints them,
/// without a cause that the message before it already ends with (several errors here
/// name their cause in their own message, for logs that print only that message).
pub fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_already_named_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(crate::binlog::BinlogError::Io {
            file: "/x".into(),
            source: io,
        })
        .context("replay stopped");
        assert_eq!(super::describe(&e), "replay stopped: /x: no such file");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::describe(&e), "outer: inner");
    }
}
