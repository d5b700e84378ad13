//! The checkpoint file: where replication resumes after a restart.
//!
//! Invariants: it only ever holds a transaction boundary whose messages, and all earlier
//! ones, the sink acknowledged; it is replaced atomically (write a temporary file, fsync,
//! rename, fsync the directory), so a crash leaves the old or the new checkpoint, never
//! a torn one.
//!
//! One agent per checkpoint: [`Lock`] holds an exclusive `flock` on `<checkpoint>.lock`
//! for the life of the process, so a second agent started with the same config stops
//! before it connects (and, with the same server id, kills the first's replication).
//!
//! Writes normally go through [`Writer`], a thread of their own: on a database host the
//! disk is busy and an fsync can take tens of milliseconds, which must not stall the
//! pipeline. Only the newest pending checkpoint is written; a failed write is reported
//! at the next submission and stops the run (it restarts from the last good file).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use anyhow::{Context, bail};

use crate::event::Checkpoint;
use crate::gtid::GtidState;

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

/// An exclusive claim on a checkpoint path, held until dropped (or the process ends,
/// however it ends: the kernel releases a `flock` with the last descriptor). The lock is
/// on a sibling file because the checkpoint itself is replaced by rename, which would
/// leave a lock on the old inode.
#[derive(Debug)]
pub struct Lock {
    _file: std::fs::File,
    path: PathBuf,
}

/// Another process holds the checkpoint.
#[derive(Debug, thiserror::Error)]
#[error(
    "checkpoint {checkpoint} is in use by another agent ({holder}); two agents on one \
     checkpoint would replicate under one server id and overwrite each other's position. \
     Stop the other agent, or give this one its own `checkpoint.path` and `source.server_id`"
)]
pub struct LockedError {
    /// The checkpoint path.
    pub checkpoint: String,
    /// Who holds it, as its lock file says (`pid N`).
    pub holder: String,
}

impl Lock {
    /// Takes the lock of `checkpoint` without waiting, and writes this process's pid into
    /// the lock file for the next one to name.
    pub fn acquire(checkpoint: &Path) -> anyhow::Result<Lock> {
        let mut name = checkpoint.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening the checkpoint lock {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let held = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = match held.trim().parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    Err(_) => "pid unknown".to_string(),
                };
                return Err(LockedError {
                    checkpoint: checkpoint.display().to_string(),
                    holder,
                }
                .into());
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e)
                    .with_context(|| format!("locking the checkpoint lock {}", path.display()));
            }
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_all().ok();
        Ok(Lock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What a written checkpoint is announced to (metrics, status).
type OnWritten = Box<dyn Fn(&Checkpoint) + Send>;

#[derive(Default)]
struct WriterState {
    pending: Option<Checkpoint>,
    writing: bool,
    error: Option<String>,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<WriterState>,
    changed: Condvar,
}

/// Writes checkpoints on a thread of its own, newest first (see the module docs).
pub struct Writer {
    shared: Arc<Shared>,
    path: PathBuf,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts the writer for `path`; `on_written` runs after each durable write.
    pub fn start(
        path: &Path,
        on_written: impl Fn(&Checkpoint) + Send + 'static,
    ) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared::default());
        let (s, p) = (shared.clone(), path.to_path_buf());
        let on_written: OnWritten = Box::new(on_written);
        let handle = std::thread::Builder::new()
            .name("sluice-checkpoint".into())
            .spawn(move || write_loop(&s, &p, on_written))
            .context("starting the checkpoint writer")?;
        Ok(Writer {
            shared,
            path: path.to_path_buf(),
            handle: Some(handle),
        })
    }

    fn lock(&self) -> anyhow::Result<std::sync::MutexGuard<'_, WriterState>> {
        self.shared
            .state
            .lock()
            .map_err(|_| anyhow::anyhow!("checkpoint writer state poisoned"))
    }

    fn take_error(&self, st: &mut WriterState) -> anyhow::Result<()> {
        match st.error.take() {
            Some(e) => Err(anyhow::anyhow!(
                "writing checkpoint {}: {e}",
                self.path.display()
            )),
            None => Ok(()),
        }
    }

    /// Queues `cp` (replacing any checkpoint not yet written); fails with the error of
    /// an earlier write.
    pub fn submit(&self, cp: Checkpoint) -> anyhow::Result<()> {
        let mut st = self.lock()?;
        self.take_error(&mut st)?;
        st.pending = Some(cp);
        self.shared.changed.notify_all();
        Ok(())
    }

    /// Fails with the error of an earlier write, if any.
    pub fn check(&self) -> anyhow::Result<()> {
        let mut st = self.lock()?;
        self.take_error(&mut st)
    }

    /// Waits until everything submitted is written.
    pub fn flush(&self) -> anyhow::Result<()> {
        let mut st = self.lock()?;
        while (st.pending.is_some() || st.writing) && st.error.is_none() {
            st = self
                .shared
                .changed
                .wait(st)
                .map_err(|_| anyhow::anyhow!("checkpoint writer state poisoned"))?;
        }
        self.take_error(&mut st)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Ok(mut st) = self.shared.state.lock() {
            st.stop = true;
        }
        self.shared.changed.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn write_loop(shared: &Shared, path: &Path, on_written: OnWritten) {
    loop {
        let cp = {
            let Ok(mut st) = shared.state.lock() else {
                return;
            };
            while st.pending.is_none() && !st.stop {
                st = match shared.changed.wait(st) {
                    Ok(st) => st,
                    Err(_) => return,
                };
            }
            let Some(cp) = st.pending.take() else {
                return; // stopped with nothing pending
            };
            st.writing = true;
            cp
        };
        let result = store(path, &cp);
        if result.is_ok() {
            on_written(&cp);
        }
        if let Ok(mut st) = shared.state.lock() {
            st.writing = false;
            if let Err(e) = result {
                st.error = Some(format!("{e:#}"));
            }
        }
        shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_checkpoint_is_refused_naming_the_holder() {
        let dir = std::env::temp_dir().join(format!("sluice-cplock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cp = dir.join("checkpoint");
        let first = Lock::acquire(&cp).unwrap();
        let e = Lock::acquire(&cp).unwrap_err();
        let locked = e.downcast_ref::<LockedError>().expect("a LockedError");
        assert_eq!(locked.holder, format!("pid {}", std::process::id()));
        assert!(e.to_string().contains("in use by another agent"), "{e}");
        drop(first);
        // Released with the descriptor: the next agent gets it.
        let again = Lock::acquire(&cp).unwrap();
        assert!(again.path().ends_with("checkpoint.lock"));
    }

    #[test]
    fn writer_writes_the_newest_and_reports_failures() {
        let dir = std::env::temp_dir().join(format!("sluice-cpw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("cp");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let w = Writer::start(&p, move |cp| s.lock().unwrap().push(cp.position)).unwrap();
        for pos in [10, 20, 30] {
            w.submit(Checkpoint {
                file: Arc::from("binlog.000001"),
                position: pos,
                gtid: None,
            })
            .unwrap();
        }
        w.flush().unwrap();
        assert_eq!(load(&p).unwrap().map(|c| c.position), Some(30));
        assert_eq!(seen.lock().unwrap().last(), Some(&30));
        drop(w);

        // A directory that does not exist: the failure surfaces, naming the file.
        let bad = dir.join("missing").join("cp");
        let w = Writer::start(&bad, |_| {}).unwrap();
        let cp = Checkpoint {
            file: Arc::from("binlog.000001"),
            position: 1,
            gtid: None,
        };
        w.submit(cp.clone()).unwrap();
        let err = w.flush().unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

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
