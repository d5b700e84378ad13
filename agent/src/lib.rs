//! Sluice: a MySQL/MariaDB change-data-capture edge agent.
//!
//! Layout:
//! - [`binlog`]: the decoder, raw event bytes to [`event::SourceItem`]s, shared by
//!   offline files and the live stream;
//! - [`event`]: the change event every later stage consumes;
//! - [`source`]: the live replication client (connect, start position, reconnect);
//! - [`schema`]: table definitions from `information_schema`;
//! - [`mod@format`]: Canal FlatMessage and Debezium-style JSON;
//! - [`ddl`]: statement targets for DDL events;
//! - [`router`]: the WebAssembly module host, policies and hot swap;
//! - [`pipeline`], [`sink`], [`checkpoint`]: `sluice run` from source to broker, and
//!   what is safe to resume from;
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
pub mod metrics;
pub mod pipeline;
pub mod router;
pub mod schema;
pub mod secret;
pub mod sink;
pub mod source;
