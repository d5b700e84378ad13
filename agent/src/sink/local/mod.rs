//! The local sink: one JSON object per line, `{"topic", "partition", "key", "headers",
//! "value"}`, on stdout or appended to a file. A transaction counts as acknowledged once
//! its lines are flushed (and, for files, fsynced before a checkpoint is written).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::acks::Acks;
use super::config::{NoKeys, PublisherConfig, Registration, Section, SinkConfig};
use super::{OutMessage, Publisher, Sink, SinkError};
use crate::event::Checkpoint;
use crate::json::push_json_string;

/// `kind = "stdout"`: no settings of its own.
pub const STDOUT: Registration = Registration {
    kind: "stdout",
    keys: <NoKeys as schemars::JsonSchema>::json_schema,
    section: |_| Ok(Arc::new(Local::Stdout)),
};

/// `kind = "file"`: `path`, relative to the config file.
pub const FILE: Registration = Registration {
    kind: "file",
    keys: <FileKeys as schemars::JsonSchema>::json_schema,
    section: file_section,
};

/// `[sink]` keys of `kind = "file"`.
#[derive(schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct FileKeys {
    /// The file messages are appended to, one JSON object per line (relative to the
    /// config file's directory); fsynced before each checkpoint (required).
    pub path: PathBuf,
}

fn file_section(s: &mut Section<'_>) -> anyhow::Result<Arc<dyn PublisherConfig>> {
    let path: PathBuf = s.require("path", "the file to append to")?;
    Ok(Arc::new(Local::File(s.path(&path))))
}

/// Where the local sink writes.
#[derive(Debug, Clone)]
pub enum Local {
    /// Standard output.
    Stdout,
    /// A JSON-lines file, appended to.
    File(PathBuf),
}

impl PublisherConfig for Local {
    fn kind(&self) -> &'static str {
        match self {
            Local::Stdout => "stdout",
            Local::File(_) => "file",
        }
    }

    fn open(&self, _sink: &SinkConfig) -> Result<Sink, SinkError> {
        Ok(match self {
            Local::Stdout => Box::new(LocalSink::stdout()),
            Local::File(p) => Box::new(LocalSink::file(p)?),
        })
    }
}

/// stdout or a file.
pub struct LocalSink {
    out: Box<dyn Write + Send>,
    file: Option<std::fs::File>,
    target: String,
    acks: Acks,
    line: Vec<u8>,
    unflushed: Vec<u64>,
}

impl LocalSink {
    /// Writes to standard output.
    pub fn stdout() -> Self {
        LocalSink {
            out: Box::new(std::io::BufWriter::with_capacity(
                1 << 16,
                std::io::stdout(),
            )),
            file: None,
            target: "stdout".into(),
            acks: Acks::default(),
            line: Vec::with_capacity(4096),
            unflushed: Vec::new(),
        }
    }

    /// Appends to `path`.
    pub fn file(path: &Path) -> Result<Self, SinkError> {
        let target = path.display().to_string();
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| SinkError::Io {
                target: target.clone(),
                source,
            })?;
        let sync = f.try_clone().map_err(|source| SinkError::Io {
            target: target.clone(),
            source,
        })?;
        Ok(LocalSink {
            out: Box::new(std::io::BufWriter::with_capacity(1 << 16, f)),
            file: Some(sync),
            target,
            acks: Acks::default(),
            line: Vec::with_capacity(4096),
            unflushed: Vec::new(),
        })
    }

    fn io(&self, source: std::io::Error) -> SinkError {
        SinkError::Io {
            target: self.target.clone(),
            source,
        }
    }
}

impl Publisher for LocalSink {
    /// Writes one message line.
    fn send(&mut self, m: OutMessage) -> Result<(), SinkError> {
        let l = &mut self.line;
        l.clear();
        l.extend_from_slice(b"{\"topic\":");
        push_json_string(l, &m.topic);
        l.extend_from_slice(b",\"partition\":");
        match m.partition {
            Some(p) => l.extend_from_slice(p.to_string().as_bytes()),
            None => l.extend_from_slice(b"null"),
        }
        l.extend_from_slice(b",\"key\":");
        match &m.key {
            Some(k) => push_json_string(l, &String::from_utf8_lossy(k)),
            None => l.extend_from_slice(b"null"),
        }
        l.extend_from_slice(b",\"headers\":{");
        for (i, (k, v)) in m.headers.iter().enumerate() {
            if i > 0 {
                l.push(b',');
            }
            push_json_string(l, k);
            l.push(b':');
            push_json_string(l, &String::from_utf8_lossy(v));
        }
        l.extend_from_slice(b"},\"value\":");
        l.extend_from_slice(&m.payload);
        l.extend_from_slice(b"}\n");
        if let Err(e) = self.out.write_all(&self.line) {
            return Err(self.io(e));
        }
        self.acks.sent(m.txn, 0);
        self.unflushed.push(m.txn);
        Ok(())
    }
    /// Flushes the transaction's lines; they count as acknowledged.
    fn commit(&mut self, txn: u64, cp: Checkpoint, seen: Instant) -> Result<(), SinkError> {
        if let Err(e) = self.out.flush() {
            return Err(self.io(e));
        }
        for t in self.unflushed.drain(..) {
            self.acks.acked(t, 0);
        }
        self.acks.committed(txn, cp, seen);
        Ok(())
    }
    /// The newest flushed boundary (the file is fsynced first).
    fn safe_checkpoint(&mut self) -> Result<Option<Checkpoint>, SinkError> {
        let cp = self.acks.safe().cloned();
        if cp.is_some()
            && let Some(f) = &self.file
        {
            // A checkpoint must not get ahead of the lines it covers.
            if f.sync_data().is_err() {
                return Ok(None);
            }
        }
        Ok(cp)
    }
    /// Flushes everything.
    fn drain(&mut self, _timeout: std::time::Duration) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.io(e))
    }
    /// (in flight, acknowledged).
    fn counts(&self) -> (u64, u64) {
        (self.acks.in_flight(), self.acks.acked_total())
    }
}
