//! Turning a module crate into a component: `cargo build` for `wasm32-unknown-unknown`,
//! then `wit-component` wraps the core module (whose custom section, written by
//! wit-bindgen through the SDK, carries the world) into a component.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Wraps a core wasm module built with the SDK into a component.
pub fn componentize(core: &[u8]) -> anyhow::Result<Vec<u8>> {
    if core.get(..4) != Some(b"\0asm") {
        bail!("not a WebAssembly module (no \\0asm magic)");
    }
    // A component's layer field is 1 (byte 6): already a component, pass it through.
    if core.get(4..8) == Some(&[0x0d, 0x00, 0x01, 0x00]) {
        return Ok(core.to_vec());
    }
    wit_component::ComponentEncoder::default()
        .module(core)
        .context("reading the core module (was it built with sluice-sdk?)")?
        .validate(true)
        .encode()
        .context("encoding the component")
}

/// Builds the crate in `dir` for `wasm32-unknown-unknown` with `cargo` and writes
/// `<crate>.wasm` (a component) to `out_dir`. Returns its path.
pub fn build_module(dir: &Path, out_dir: &Path, profile: &str) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let name = package_name(&text)
        .with_context(|| format!("{} has no [package] name", manifest.display()))?;
    let target_dir = out_dir.join("cargo-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--target", "wasm32-unknown-unknown", "--profile", profile])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .status()
        .context("running cargo (is the wasm32-unknown-unknown target installed? `rustup target add wasm32-unknown-unknown`)")?;
    if !status.success() {
        bail!("cargo build of {} failed", dir.display());
    }
    let profile_dir = if profile == "dev" { "debug" } else { profile };
    let core_path = target_dir
        .join("wasm32-unknown-unknown")
        .join(profile_dir)
        .join(format!("{}.wasm", name.replace('-', "_")));
    let core =
        std::fs::read(&core_path).with_context(|| format!("reading {}", core_path.display()))?;
    let component = componentize(&core)?;
    std::fs::create_dir_all(out_dir)?;
    let out = out_dir.join(format!("{name}.wasm"));
    std::fs::write(&out, component).with_context(|| format!("writing {}", out.display()))?;
    Ok(out)
}

fn package_name(manifest: &str) -> Option<String> {
    let value: toml::Value = toml::from_str(manifest).ok()?;
    value
        .get("package")?
        .get("name")?
        .as_str()
        .map(str::to_string)
}
