//! Modules built into the binary (`agent/build.rs`): `file = "builtin:canal-compat"` in
//! a config loads one with no wasm toolchain and no file on the host, and `sluice module
//! export NAME` writes it out (to read, change or pin). A module file path and a
//! builtin name go through [`read`], so every command accepts either.

use std::path::Path;

use anyhow::Context;

include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// The prefix naming a builtin module instead of a file.
pub const PREFIX: &str = "builtin:";

/// The component of builtin module `name`.
pub fn bytes(name: &str) -> Option<&'static [u8]> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// The builtin modules' names.
pub fn names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

/// The builtin name `path` refers to (`builtin:NAME`), if it does.
pub fn name_of(path: &Path) -> Option<&str> {
    path.to_str()?.strip_prefix(PREFIX)
}

/// Why `name` is not a builtin module here.
pub fn unknown(name: &str) -> String {
    if BUILTIN.is_empty() {
        format!(
            "`{PREFIX}{name}`: this sluice binary was built without builtin modules (the wasm32-unknown-unknown target was missing at build time)"
        )
    } else {
        format!(
            "`{PREFIX}{name}` is not a builtin module (builtin: {})",
            names().join(", ")
        )
    }
}

/// The component at `path`: a builtin (`builtin:NAME`) or a file.
pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    match name_of(path) {
        Some(name) => bytes(name)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| anyhow::anyhow!(unknown(name))),
        None => std::fs::read(path).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_resolve_and_others_are_named() {
        assert_eq!(
            name_of(Path::new("builtin:canal-compat")),
            Some("canal-compat")
        );
        assert_eq!(name_of(Path::new("/etc/m.wasm")), None);
        let e = read(Path::new("builtin:nosuch")).expect_err("unknown");
        assert!(e.to_string().contains("builtin:nosuch"), "{e}");
        // The test build has the wasm target (scripts/test.sh installs it).
        for n in ["canal-compat", "tags", "table-filter"] {
            let b = bytes(n).unwrap_or_else(|| panic!("{n} is built in"));
            assert!(b.starts_with(b"\0asm"), "{n}");
        }
    }
}
