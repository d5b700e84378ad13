//! `[sink.canal_server]`: where Sluice serves Canal's TCP protocol, which destinations
//! (topics) it serves, and who may connect — checked here so a bad setting is an error
//! naming its key before anything listens.
//!
//! Invariant: a listener reachable from other hosts requires a user and password (the
//! double-SHA1 hash Canal's `canal.passwd` holds, from the environment or a file, never
//! from the config file itself).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use super::auth;

/// Serves Canal's TCP protocol to existing Canal clients: each destination is a topic
/// modules route to; a client's ack moves the checkpoint.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCanalServer {
    /// Listen address (default `127.0.0.1:11111`, Canal's port, loopback only).
    pub listen: Option<String>,
    /// The destinations served: each is a topic modules route to (Canal's
    /// `canal.destinations`).
    #[serde(default)]
    pub destinations: Vec<String>,
    /// The user clients must name (Canal's `canal.user`; absent: clients are not
    /// authenticated, allowed on loopback only).
    pub user: Option<String>,
    /// Environment variable holding Canal's `canal.passwd`: hex of
    /// `SHA1(SHA1(password))`, as MySQL's `PASSWORD()` prints it (required with `user`;
    /// absent without).
    pub passwd_env: Option<String>,
    /// File holding it (instead of `passwd_env`; absent: see `user`).
    pub passwd_file: Option<PathBuf>,
    /// Where each destination's acknowledged position is kept (default
    /// `canal-cursors` beside the config file).
    pub cursor_dir: Option<PathBuf>,
    /// The largest `fetch_size` a GET may ask for (default 65536 entries); a larger one
    /// is an error to that client.
    pub max_fetch_size: Option<usize>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct CanalServerConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Destinations served.
    pub destinations: Vec<String>,
    /// User and the stored password hash, when authentication is on.
    pub auth: Option<(String, auth::Stored)>,
    /// Cursor directory.
    pub cursor_dir: PathBuf,
    /// GET limit.
    pub max_fetch_size: usize,
}

impl RawCanalServer {
    /// Checks every key; `rel` resolves relative paths.
    pub fn validate(&self, rel: &dyn Fn(&Path) -> PathBuf) -> anyhow::Result<CanalServerConfig> {
        let text = self.listen.as_deref().unwrap_or("127.0.0.1:11111");
        let listen: SocketAddr = text
            .parse()
            .with_context(|| format!("sink.canal_server.listen: `{text}` is not IP:PORT"))?;
        if self.destinations.is_empty() {
            bail!(
                "sink.canal_server.destinations: name at least one destination (a topic modules route to)"
            );
        }
        for d in &self.destinations {
            if d.is_empty() || d.len() > 255 {
                bail!("sink.canal_server.destinations: `{d}` is not a destination name");
            }
        }
        let passwd_file = self.passwd_file.as_deref().map(rel);
        let stored = crate::secret::from_env_or_file(
            "sink.canal_server.passwd",
            self.passwd_env.as_deref(),
            passwd_file.as_deref(),
        )?;
        let auth = match (&self.user, stored) {
            (Some(u), Some(p)) => {
                let Some(hash) = auth::parse_stored(p.expose()) else {
                    bail!(
                        "sink.canal_server.passwd: not 40 hex digits (Canal's canal.passwd: hex of SHA1(SHA1(password)), as MySQL's PASSWORD() prints it)"
                    );
                };
                Some((u.clone(), hash))
            }
            (None, None) => None,
            (Some(_), None) => {
                bail!("sink.canal_server.user: set `passwd_env` or `passwd_file` too")
            }
            (None, Some(_)) => bail!("sink.canal_server: a password is set without `user`"),
        };
        if auth.is_none() && !listen.ip().is_loopback() {
            bail!(
                "sink.canal_server.listen: `{listen}` is reachable from other hosts; set `user` and `passwd_env` (or `passwd_file`), or listen on loopback"
            );
        }
        let max_fetch_size = self.max_fetch_size.unwrap_or(65_536);
        if max_fetch_size == 0 {
            bail!("sink.canal_server.max_fetch_size: must be at least 1");
        }
        Ok(CanalServerConfig {
            listen,
            destinations: self.destinations.clone(),
            auth,
            cursor_dir: rel(self
                .cursor_dir
                .as_deref()
                .unwrap_or(Path::new("canal-cursors"))),
            max_fetch_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> anyhow::Result<CanalServerConfig> {
        toml::from_str::<RawCanalServer>(text)?.validate(&|p| Path::new("/etc/sluice").join(p))
    }

    #[test]
    fn settings_are_checked_by_name() {
        let c = cfg("destinations = [\"example\"]").expect("defaults");
        assert_eq!(c.listen.to_string(), "127.0.0.1:11111");
        assert_eq!(c.cursor_dir, Path::new("/etc/sluice/canal-cursors"));
        assert!(c.auth.is_none());
        for (text, words) in [
            ("", "sink.canal_server.destinations"),
            (
                "destinations = [\"a\"]\nlisten = \"nohost\"",
                "sink.canal_server.listen",
            ),
            (
                "destinations = [\"a\"]\nlisten = \"0.0.0.0:11111\"",
                "reachable from other hosts",
            ),
            (
                "destinations = [\"a\"]\nuser = \"canal\"",
                "sink.canal_server.user",
            ),
            (
                "destinations = [\"a\"]\nuser = \"canal\"\npasswd_env = \"SLUICE_NO_SUCH_VARIABLE\"",
                "sink.canal_server.passwd_env",
            ),
            (
                "destinations = [\"a\"]\nuser = \"canal\"\npasswd_env = \"HOME\"",
                "not 40 hex digits",
            ),
            (
                "destinations = [\"a\"]\nmax_fetch_size = 0",
                "max_fetch_size",
            ),
            ("destinations = [\"a\"]\nlisten_on = \"x\"", "unknown field"),
        ] {
            let e = cfg(text).expect_err(text);
            assert!(format!("{e:#}").contains(words), "{text}: {e:#}");
        }
    }

    #[test]
    fn a_password_hash_from_a_file_turns_authentication_on() {
        let f = std::env::temp_dir().join(format!("sluice-canal-passwd-{}", std::process::id()));
        std::fs::write(&f, "E3619321C1A937C46A0D8BD1DAC39F93B27D4458\n").expect("write");
        let c = cfg(&format!(
            "destinations = [\"a\"]\nlisten = \"0.0.0.0:11111\"\nuser = \"canal\"\npasswd_file = \"{}\"",
            f.display()
        ))
        .expect("auth on");
        let _ = std::fs::remove_file(&f);
        let (user, stored) = c.auth.expect("auth");
        assert_eq!(user, "canal");
        assert_eq!(stored, auth::stored_of(b"canal"));
    }
}
