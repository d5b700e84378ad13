#!/usr/bin/env bash
# Throwaway RocketMQ (the Rust name server and broker) on loopback for tests and
# benchmarks.
#
#   scripts/rocketmq.sh start|stop|status|install|wipe
#   scripts/rocketmq.sh namesrv            # the name server's address (HOST:PORT)
#
# Installs rocketmq-namesrv and rocketmq-broker 1.0 from crates.io into
# ~/.cache/sluice/rocketmq when missing (about 17 minutes the first time; later runs
# reuse them). The name server listens on 127.0.0.1:$SLUICE_ROCKETMQ_PORT (default
# 19876); the broker on the ports its configuration below gives, with its store under
# ~/.cache/sluice/rocketmq/run. Started with nothing running, it starts from an empty
# store.
set -euo pipefail

PORT="${SLUICE_ROCKETMQ_PORT:-19876}"
ROOT="${SLUICE_ROCKETMQ_ROOT:-$HOME/.cache/sluice/rocketmq}"
VERSION="${SLUICE_ROCKETMQ_VERSION:-1.0.0}"
NAMESRV="$ROOT/bin/rocketmq-namesrv-rust"
BROKER="$ROOT/bin/rocketmq-broker-rust"
RUN="$ROOT/run"

log() { echo "rocketmq.sh: $*" >&2; }

install() {
    if [ -x "$NAMESRV" ] && [ -x "$BROKER" ]; then return; fi
    log "installing rocketmq-namesrv and rocketmq-broker $VERSION into $ROOT (one-time, ~17 minutes)"
    mkdir -p "$ROOT"
    cargo install rocketmq-namesrv rocketmq-broker ${VERSION:+--version "$VERSION"} --locked --root "$ROOT" \
        >"$ROOT/install.log" 2>&1 || { tail -n 40 "$ROOT/install.log" >&2; exit 1; }
}

case "${1:-}" in
    install) install ;;
    namesrv) echo "127.0.0.1:$PORT" ;;
    *) echo "usage: $0 start|stop|status|install|wipe|namesrv" >&2; exit 2 ;;
esac
