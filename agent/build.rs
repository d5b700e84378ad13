//! Builds the example modules shipped inside the binary (`file = "builtin:NAME"`,
//! `sluice module export NAME`): `cargo build` for wasm32-unknown-unknown into
//! `target/guests` (its own target directory, so the outer build's lock is not
//! contended), then wraps each core module into a component.
//!
//! Without the wasm target the agent still builds, with no builtin modules: a warning
//! here, and a clear error when a config names one.

use std::path::{Path, PathBuf};
use std::process::Command;

const BUILTIN: &[&str] = &["canal-compat", "tags", "table-filter"];

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.parent().map(PathBuf::from).unwrap_or_default();
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for dir in ["guest-examples", "sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=SLUICE_NO_BUILTIN");
    let version = git_version(&root);
    println!("cargo:rustc-env=SLUICE_BUILD_COMMIT={version}");
    // HEAD names the branch; its log changes with every commit and checkout.
    for f in [".git/HEAD", ".git/logs/HEAD"] {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    // The WIT package modules are built against (`package sluice:router@X;`).
    let wit = std::fs::read_to_string(root.join("wit/router.wit")).unwrap_or_default();
    let package = wit
        .lines()
        .find_map(|l| l.trim().strip_prefix("package "))
        .map(|p| p.trim_end_matches(';').trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SLUICE_WIT_PACKAGE={package}");

    let built = if std::env::var_os("SLUICE_NO_BUILTIN").is_some() {
        Err("SLUICE_NO_BUILTIN is set".to_string())
    } else {
        build(&root, &out)
    };
    let mut code = String::from("/// Modules built into this binary: (name, component).\n");
    code.push_str("pub const BUILTIN: &[(&str, &[u8])] = &[\n");
    match built {
        Ok(paths) => {
            for (name, path) in paths {
                code.push_str(&format!(
                    "    ({name:?}, include_bytes!({:?})),\n",
                    path.display().to_string()
                ));
            }
        }
        Err(e) => {
            println!("cargo:warning=no builtin modules in this build: {e}");
        }
    }
    code.push_str("];\n");
    std::fs::write(out.join("builtin.rs"), code).expect("writing builtin.rs");
}

/// The commit this build is from (`git describe`), or `unknown` outside a checkout.
fn git_version(root: &Path) -> String {
    Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn build(root: &Path, out: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let target_dir = root.join("target").join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--quiet",
            "--profile",
            "guest",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for g in BUILTIN {
        cmd.args(["-p", g]);
    }
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("running cargo for the builtin modules: {e}"))?;
    if !status.success() {
        return Err(
            "building them failed (rustup target add wasm32-unknown-unknown, then rebuild)".into(),
        );
    }
    let mut paths = Vec::new();
    for g in BUILTIN {
        let core_path = target_dir
            .join("wasm32-unknown-unknown/guest")
            .join(format!("{}.wasm", g.replace('-', "_")));
        let core = std::fs::read(&core_path)
            .map_err(|e| format!("reading {}: {e}", core_path.display()))?;
        let component = wit_component::ComponentEncoder::default()
            .module(&core)
            .and_then(|e| e.validate(true).encode())
            .map_err(|e| format!("componentizing {g}: {e:#}"))?;
        let path = out.join(format!("builtin-{g}.wasm"));
        std::fs::write(&path, component).map_err(|e| format!("writing {}: {e}", path.display()))?;
        paths.push((g.to_string(), path));
    }
    Ok(paths)
}
