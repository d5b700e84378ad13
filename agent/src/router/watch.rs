//! New module versions arriving as files: `<modules dir>/<module name>.wasm`.
//!
//! Polled rather than watched through inotify: a poll every second costs a `stat` per
//! module, works on every filesystem (including the bind mounts and NFS that module
//! deployments use), and cannot miss an event. A file counts as changed when its size or
//! modification time moves and its content hash differs from the last one seen, so a
//! touch without a change does not start a canary. Half-written files are left for the
//! next poll: a file must be unchanged across two polls before it is read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    len: u64,
    mtime: Option<SystemTime>,
    hash: Option<[u8; 32]>,
    stable: bool,
}

/// Polls a directory for module files.
#[derive(Debug)]
pub struct ModuleDir {
    dir: PathBuf,
    seen: HashMap<String, Seen>,
}

impl ModuleDir {
    /// Watches `dir`; files present now count as already loaded.
    pub fn new(dir: &Path) -> Self {
        let mut d = ModuleDir {
            dir: dir.to_path_buf(),
            seen: HashMap::new(),
        };
        for (name, path, len, mtime) in d.list() {
            let hash = std::fs::read(&path).ok().map(|b| Sha256::digest(&b).into());
            d.seen.insert(
                name,
                Seen {
                    len,
                    mtime,
                    hash,
                    stable: true,
                },
            );
        }
        d
    }

    fn list(&self) -> Vec<(String, PathBuf, u64, Option<SystemTime>)> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let path = e.path();
                if path.extension()? != "wasm" {
                    return None;
                }
                let name = path.file_stem()?.to_str()?.to_string();
                let meta = e.metadata().ok()?;
                Some((name, path, meta.len(), meta.modified().ok()))
            })
            .collect()
    }

    /// Module files that changed since the last poll and have settled: (name, bytes).
    pub fn poll(&mut self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for (name, path, len, mtime) in self.list() {
            let prev = self.seen.get(&name).cloned();
            let moved = prev
                .as_ref()
                .is_none_or(|p| p.len != len || p.mtime != mtime);
            if moved {
                // Wait one more poll for the writer to finish.
                self.seen.insert(
                    name,
                    Seen {
                        len,
                        mtime,
                        hash: prev.and_then(|p| p.hash),
                        stable: false,
                    },
                );
                continue;
            }
            let Some(p) = prev else { continue };
            if p.stable {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let hash: [u8; 32] = Sha256::digest(&bytes).into();
            let changed = p.hash != Some(hash);
            self.seen.insert(
                name.clone(),
                Seen {
                    len,
                    mtime,
                    hash: Some(hash),
                    stable: true,
                },
            );
            if changed {
                out.push((name, bytes));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_settled_changes_once() {
        let dir = std::env::temp_dir().join(format!("sluice-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.wasm"), b"v1").unwrap();
        let mut w = ModuleDir::new(&dir);
        assert!(w.poll().is_empty(), "files present at start are not new");
        std::fs::write(dir.join("a.wasm"), b"v2-longer").unwrap();
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        assert!(
            w.poll().is_empty(),
            "first sighting waits for the file to settle"
        );
        assert_eq!(w.poll(), vec![("a".to_string(), b"v2-longer".to_vec())]);
        assert!(w.poll().is_empty(), "reported once");
        std::fs::write(dir.join("b.wasm"), b"new").unwrap();
        w.poll();
        assert_eq!(w.poll(), vec![("b".to_string(), b"new".to_vec())]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
