//! Builds the example and hostile modules for the integration tests: `cargo build` for
//! wasm32-unknown-unknown into `target/guests` (a separate target dir, so the outer
//! build's lock is not contended), then wraps each core module into a component and
//! exposes its path as `GUEST_<NAME>` to the tests.

use std::path::PathBuf;
use std::process::Command;

const GUESTS: &[&str] = &[
    "canal-compat",
    "table-filter",
    "tags",
    "hostile",
    "wasi-importer",
];

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for dir in ["guest-examples", "sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let target_dir = root.join("target").join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--profile",
            "guest",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for g in GUESTS {
        cmd.args(["-p", g]);
    }
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo for the guest modules");
    assert!(
        status.success(),
        "building the guest modules failed (is the target installed? rustup target add wasm32-unknown-unknown)"
    );
    for g in GUESTS {
        let core_path = target_dir
            .join("wasm32-unknown-unknown/guest")
            .join(format!("{}.wasm", g.replace('-', "_")));
        let core = std::fs::read(&core_path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", core_path.display()));
        let component = wit_component::ComponentEncoder::default()
            .module(&core)
            .and_then(|e| e.validate(true).encode())
            .unwrap_or_else(|e| panic!("componentizing {g}: {e:#}"));
        let path = out.join(format!("{g}.wasm"));
        std::fs::write(&path, component)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        println!(
            "cargo:rustc-env=GUEST_{}={}",
            g.to_uppercase().replace('-', "_"),
            path.display()
        );
    }
}
