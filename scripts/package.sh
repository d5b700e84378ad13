#!/usr/bin/env bash
# Builds what ships to a database host: the stripped agent (`--profile dist`, with the
# example modules built in) and its systemd unit, as target/sluice-VERSION-linux-ARCH.tar.gz.
#
#   scripts/package.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
cargo build --profile dist --locked --bin sluice
BIN=target/dist/sluice
VERSION="$("$BIN" --version | awk '{print $2}')"
NAME="sluice-$VERSION-linux-$(uname -m)"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/$NAME"
install -m 0755 "$BIN" "$STAGE/$NAME/sluice"
install -m 0644 scripts/packaging/sluice.service "$STAGE/$NAME/"
"$BIN" --version >"$STAGE/$NAME/VERSION"
tar -C "$STAGE" -czf "target/$NAME.tar.gz" "$NAME"
echo "target/$NAME.tar.gz: binary $(stat -c %s "$BIN") bytes ($("$BIN" --version))"
