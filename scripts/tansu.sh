#!/usr/bin/env bash
# Throwaway Kafka-protocol broker (tansu, in-memory storage) for tests and benchmarks.
#
#   scripts/tansu.sh start|stop|status|install|topic NAME PARTITIONS
#
# Installs tansu 0.6.0 from crates.io into ~/.cache/sluice/tansu when missing (about 20
# minutes the first time; later runs reuse it). Listens on 127.0.0.1:$SLUICE_TANSU_PORT
# (default 19092). Memory storage: a restart starts empty.
set -euo pipefail

PORT="${SLUICE_TANSU_PORT:-19092}"
ROOT="${SLUICE_TANSU_ROOT:-$HOME/.cache/sluice/tansu}"
BIN="$ROOT/bin/tansu"
RUN="$ROOT/run-$PORT"
URL="tcp://127.0.0.1:$PORT"

log() { echo "tansu.sh: $*" >&2; }
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

install() {
    if [ -x "$BIN" ]; then return; fi
    log "installing tansu 0.6.0 into $ROOT (one-time, ~20 minutes)"
    mkdir -p "$ROOT"
    cargo install tansu --version 0.6.0 --locked --features dynostore --root "$ROOT" >"$ROOT/install.log" 2>&1 \
        || { tail -n 40 "$ROOT/install.log" >&2; exit 1; }
}

running() {
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

start() {
    install
    if running; then
        log "already running on $URL"
        return
    fi
    mkdir -p "$RUN"
    # tansu reads a .env from its working directory; run it from an empty one.
    (
        cd "$RUN"
        nohup "$BIN" broker --listener-url "$URL" --advertised-listener-url "$URL" \
            --storage-engine memory://tansu/ >"$RUN/broker.log" 2>&1 </dev/null &
        echo $! >"$RUN/pid"
    )
    for _ in $(seq 1 100); do
        running && break
        sleep 0.1
    done
    if ! running; then
        log "broker did not come up:"
        tail -n 30 "$RUN/broker.log" >&2 || true
        exit 1
    fi
    log "running on $URL"
}

stop() {
    stop_pidfile "$RUN/pid"
    # A broker started by an older copy of this script, if its pid file is gone.
    pkill -f "tansu broker --listener-url $URL" 2>/dev/null || true
    for _ in $(seq 1 50); do
        running || break
        sleep 0.1
    done
    if running; then
        log "something else listens on $URL; stop it first"
        exit 1
    fi
    log "stopped"
}

topic() {
    "$BIN" topic create --broker "$URL" --partitions "$2" "$1" >/dev/null 2>&1 \
        || "$BIN" topic create --broker "$URL" --partitions "$2" "$1"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    install) install ;;
    status) if running; then echo "running on $URL"; else echo "not running"; exit 3; fi ;;
    topic) topic "$2" "$3" ;;
    pid) cat "$RUN/pid" ;;
    *) echo "usage: $0 start|stop|restart|status|install|topic NAME PARTITIONS|pid" >&2; exit 2 ;;
esac
