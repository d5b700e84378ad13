//! The checkpoint file: where replication resumes after a restart.
//!
//! Invariants: it only ever holds a transaction boundary whose messages, and all earlier
//! ones, the sink acknowledged; it is replaced atomically (write a temporary file, fsync,
//! rename, fsync the directory), so a crash leaves the old or the new checkpoint, never
//! a torn one.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::binlog::gtid::GtidState;
use crate::event::Checkpoint;

/// Reads the checkpoint; `None` when the file does not exist.
pub fn load(path: &Path) -> anyhow::Result<Option<Checkpoint>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading checkpoint {}", path.display())),
    };
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("checkpoint {} is not JSON", path.display()))?;
    let file = v.get("file").and_then(|x| x.as_str()).unwrap_or_default();
    let position = v.get("position").and_then(|x| x.as_u64());
    let gtid = v
        .get("gtid")
        .and_then(|x| x.as_str())
        .filter(|g| !g.is_empty())
        .map(GtidState::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("checkpoint {}: gtid: {e}", path.display()))?;
    let Some(position) = position else {
        bail!("checkpoint {} has no `position`", path.display());
    };
    if file.is_empty() && gtid.is_none() {
        bail!(
            "checkpoint {} has neither `file` nor `gtid`",
            path.display()
        );
    }
    Ok(Some(Checkpoint {
        file: Arc::from(file),
        position,
        gtid,
    }))
}

/// The checkpoint as the file (and the admin API) show it.
pub fn to_json(cp: &Checkpoint) -> serde_json::Value {
    serde_json::json!({
        "file": &*cp.file,
        "position": cp.position,
        "gtid": cp.gtid.as_ref().map(|g| g.to_string()).unwrap_or_default(),
    })
}

/// Replaces the checkpoint atomically.
pub fn store(path: &Path, cp: &Checkpoint) -> anyhow::Result<()> {
    let body = to_json(cp);
    let tmp = path.with_extension("tmp");
    {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(body.to_string().as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename is durable only once the directory entry is.
        std::fs::File::open(dir).and_then(|d| d.sync_all()).ok();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let dir = std::env::temp_dir().join(format!("sluice-cp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("cp");
        assert!(load(&p).unwrap().is_none());
        let cp = Checkpoint {
            file: Arc::from("binlog.000003"),
            position: 1234,
            gtid: Some(GtidState::parse("0-1-42").unwrap()),
        };
        store(&p, &cp).unwrap();
        assert_eq!(load(&p).unwrap(), Some(cp));
        std::fs::write(&p, "{").unwrap();
        assert!(load(&p).is_err());
        std::fs::write(&p, "{\"file\":\"x\"}").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("position"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
