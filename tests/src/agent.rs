//! Running the `sluice` binary as operators do: a config file, `sluice run` as a child
//! process, SIGTERM or kill -9, and the messages it published read back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `sluice` binary next to the test binary.
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|p| p.parent()).expect("target dir");
    let bin = dir.join("sluice");
    assert!(
        bin.is_file(),
        "{} not built (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// Runs `sluice ctl ARGS` against the admin API on loopback `port`: (exit code, stdout
/// and stderr).
pub fn ctl(port: u16, args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(binary())
        .arg("ctl")
        .arg("--admin")
        .arg(format!("http://127.0.0.1:{port}"))
        .args(args)
        .output()
        .expect("sluice ctl runs");
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A loopback port nothing listens on (for an agent's admin API).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// (status, body) of an unauthenticated GET to the admin API on `port`; status 0 when
/// nothing answered.
pub fn admin_get(port: u16, path: &str) -> (u16, String) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .new_agent();
    match agent.get(format!("http://127.0.0.1:{port}{path}")).call() {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.into_body().read_to_string().unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// The value of an unlabelled series in the agent's `/metrics` (`None` when absent).
pub fn metric(port: u16, series: &str) -> Option<f64> {
    let (_, text) = admin_get(port, "/metrics");
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A running agent.
pub struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    /// Starts `sluice run -c config`, logging to `log`, with `env` set.
    pub fn start(config: &Path, log: &Path, env: &[(&str, &str)]) -> Agent {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let err = out.try_clone().expect("log file");
        let mut cmd = Command::new(binary());
        cmd.arg("run")
            .arg("-c")
            .arg(config)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        cmd.env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("sluice run starts");
        Agent {
            child,
            log: log.to_path_buf(),
        }
    }

    /// Waits until the log contains `text` (occurrence number `nth`, 1-based).
    pub fn wait_log(&mut self, text: &str, nth: usize, timeout: Duration) {
        let t = Instant::now();
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.matches(text).count() >= nth {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sluice exited ({status}) before logging `{text}`:\n{log}");
            }
            assert!(
                t.elapsed() < timeout,
                "no `{text}` in the log after {timeout:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// kill -9.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (at most `timeout`) for the process to exit on its own: its exit code.
    pub fn wait_exit(mut self, timeout: Duration) -> Option<i32> {
        let t = Instant::now();
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            assert!(
                t.elapsed() < timeout,
                "sluice did not exit by itself within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the exit code.
    pub fn terminate(mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let t = Instant::now();
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.code();
            }
            if t.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("sluice did not stop within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One published message, as the tests need it.
#[derive(Debug, Clone)]
pub struct Published {
    /// Topic.
    pub topic: String,
    /// Partition (as decided, or as delivered).
    pub partition: i32,
    /// Headers.
    pub headers: std::collections::BTreeMap<String, String>,
    /// The FlatMessage.
    pub value: serde_json::Value,
}

/// A JSON object of string values as a header map (other values as empty strings).
pub fn headers_of(v: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    v.as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the local sink's file; a torn last line (kill -9 mid-write) is skipped.
pub fn read_file_sink(path: &Path) -> Vec<Published> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        out.push(Published {
            topic: v["topic"].as_str().unwrap_or_default().to_string(),
            partition: v["partition"].as_i64().unwrap_or(-1) as i32,
            headers: headers_of(&v["headers"]),
            value: v["value"].clone(),
        });
    }
    out
}
