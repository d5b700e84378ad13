//! Shared helpers of Sluice's integration tests: corpus paths, offline decoding, the
//! throwaway MariaDB started by `scripts/mariadb.sh`, and a parser for mysqlbinlog's
//! `###` row output used as an independent oracle.
//!
//! Tests that need a service start it through these helpers and fail loudly when it
//! cannot run; nothing here skips.

pub mod agent;
pub mod canal;
pub mod e2e;
pub mod events;
pub mod kafka;
pub mod live;
pub mod rabbit;
pub mod rocket;
pub mod vv;

use std::path::{Path, PathBuf};

use sluice::binlog::file::{ReadError, read_file};
use sluice::binlog::{BinlogError, Decoder, DecoderOptions};
use sluice::event::SourceItem;

/// Sends the agent's logs to the test output (shown for failing tests). Idempotent.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// A fresh, empty directory for one test: `<tmp>/sluice-<name>-<pid>`, whatever an
/// earlier run left there removed first.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch directory");
    dir
}

/// `../shared/corpora`, or `$SLUICE_CORPORA`. Panics (failing the test) when missing.
pub fn corpora() -> PathBuf {
    let p = std::env::var_os("SLUICE_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/corpora"));
    assert!(
        p.join("INDEX.md").is_file(),
        "binlog corpora not found at {} (set SLUICE_CORPORA)",
        p.display()
    );
    p
}

/// Decodes a whole file; items of the events before an error are returned with it.
pub fn decode_file(path: &Path) -> (Vec<SourceItem>, Option<BinlogError>) {
    decode_file_with(path, Decoder::new("", DecoderOptions::default()))
}

/// [`decode_file`] with a decoder set up by the caller (e.g. a table filter).
pub fn decode_file_with(path: &Path, mut dec: Decoder) -> (Vec<SourceItem>, Option<BinlogError>) {
    let mut items = Vec::new();
    let res = read_file(
        path,
        &mut dec,
        |i| -> Result<(), std::convert::Infallible> {
            items.push(i);
            Ok(())
        },
    );
    match res {
        Ok(_) => (items, None),
        Err(ReadError::Binlog(e)) => (items, Some(e)),
        Err(ReadError::Emit(never)) => match never {},
    }
}
