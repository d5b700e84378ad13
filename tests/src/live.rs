//! The live MariaDB the tests use: started (idempotently) by `scripts/mariadb.sh`, on
//! loopback, with its own datadir and port. A test that cannot start it fails.

use std::process::Command;
use std::sync::OnceLock;

use mysql_async::prelude::Queryable;
use sluice::source::SourceConfig;

/// Connection facts printed by `scripts/mariadb.sh env`.
#[derive(Debug, Clone)]
pub struct Server {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Replication user and password.
    pub repl: (String, String),
    /// Admin user and password (for writing test data).
    pub admin: (String, String),
}

fn script(arg: &str) -> String {
    let path = crate::repo_root().join("scripts/mariadb.sh");
    let out = Command::new("bash")
        .arg(&path)
        .arg(arg)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    assert!(
        out.status.success(),
        "{} {arg} failed:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts the server if needed and returns how to reach it.
pub fn server() -> Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        script("start");
        let env = script("env");
        let get = |k: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")).map(str::to_string))
                .unwrap_or_else(|| panic!("mariadb.sh env did not print {k}"))
        };
        Server {
            port: get("SLUICE_MYSQL_PORT").parse().expect("port is a number"),
            repl: (get("SLUICE_MYSQL_USER"), get("SLUICE_MYSQL_PASSWORD")),
            admin: (
                get("SLUICE_MYSQL_ADMIN_USER"),
                get("SLUICE_MYSQL_ADMIN_PASSWORD"),
            ),
        }
    })
    .clone()
}

/// Restarts the server (for reconnect tests).
pub fn restart() {
    script("restart");
}

impl Server {
    /// An admin connection.
    pub async fn admin(&self) -> mysql_async::Conn {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some(self.admin.0.clone()))
            .pass(Some(self.admin.1.clone()))
            .prefer_socket(false);
        mysql_async::Conn::new(opts)
            .await
            .expect("admin connection to the test MariaDB")
    }

    /// A source config for this server with a test-chosen server id.
    pub fn source(&self, server_id: u32) -> SourceConfig {
        SourceConfig::new(
            "127.0.0.1",
            self.port,
            &self.repl.0,
            &self.repl.1,
            server_id,
        )
    }
}

/// Runs statements, panicking with the statement on failure.
pub async fn exec(conn: &mut mysql_async::Conn, sql: &str) {
    conn.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("`{sql}` failed: {e}"));
}
