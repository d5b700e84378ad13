#!/usr/bin/env bash
# Throwaway RocketMQ (the Rust name server and broker) on loopback for tests and
# benchmarks.
#
#   scripts/rocketmq.sh start|stop|restart|status|install|wipe
#   scripts/rocketmq.sh stop-broker|start-broker   # the broker alone (its store kept)
#   scripts/rocketmq.sh stop-namesrv|start-namesrv # the name server alone (empty again)
#   scripts/rocketmq.sh namesrv            # the name server's address (HOST:PORT)
#
# Installs rocketmq-namesrv and rocketmq-broker 1.0 from crates.io into
# ~/.cache/sluice/rocketmq when missing (about 17 minutes the first time; later runs
# reuse them). The name server listens on 127.0.0.1:$SLUICE_ROCKETMQ_PORT (default
# 19876); the broker on 127.0.0.1:$SLUICE_ROCKETMQ_PORT+1035 (default 20911; its fast
# port is that - 2 and its HA port that + 1), with its store under
# ~/.cache/sluice/rocketmq/run; a second broker (cluster SyncCluster, a SYNC_MASTER with
# no slave, so it never answers SEND_OK) on that + 20. A start from nothing running
# starts from an empty store.
set -euo pipefail

PORT="${SLUICE_ROCKETMQ_PORT:-19876}"
ROOT="${SLUICE_ROCKETMQ_ROOT:-$HOME/.cache/sluice/rocketmq}"
VERSION="${SLUICE_ROCKETMQ_VERSION:-1.0.0}"
NAMESRV="$ROOT/bin/rocketmq-namesrv-rust"
BROKER="$ROOT/bin/rocketmq-broker-rust"
RUN="$ROOT/run"

log() { echo "rocketmq.sh: $*" >&2; }
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

install() {
    if [ -x "$NAMESRV" ] && [ -x "$BROKER" ]; then return; fi
    log "installing rocketmq-namesrv and rocketmq-broker $VERSION into $ROOT (one-time, ~17 minutes)"
    mkdir -p "$ROOT"
    # One target directory for both: they share most of their ~500 crates.
    CARGO_TARGET_DIR="$ROOT/target" cargo install rocketmq-namesrv rocketmq-broker \
        ${VERSION:+--version "$VERSION"} --locked --root "$ROOT" \
        >"$ROOT/install.log" 2>&1 || { tail -n 40 "$ROOT/install.log" >&2; exit 1; }
    rm -rf "$ROOT/target"
}

BROKER_PORT=$((PORT + 1035))   # 20911 by default; the broker's fast port is this - 2
HA_PORT=$((BROKER_PORT + 1))
SYNC_PORT=$((BROKER_PORT + 20))   # 20931: the SYNC_MASTER broker without a slave

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Starts a process in the background, its pid in $RUN/$1.pid and output in $RUN/$1.log,
# then waits (20 s at most) until it listens on port $2.
launch() {
    local name="$1" port="$2"
    shift 2
    # `&` on nohup alone, so $! is the server's own pid (nohup execs it).
    (
        cd "$RUN" || exit 1
        nohup "$@" >"$RUN/$name.log" 2>&1 </dev/null &
        echo $! >"$RUN/$name.pid"
    )
    for _ in $(seq 1 200); do
        listening "$port" && return 0
        kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null || break
        sleep 0.1
    done
    log "$name did not come up on 127.0.0.1:$port:"
    tail -n 30 "$RUN/$name.log" >&2 || true
    exit 1
}

start() {
    install
    if listening "$PORT" && listening "$BROKER_PORT" && listening "$SYNC_PORT"; then
        log "already running: name server 127.0.0.1:$PORT, broker 127.0.0.1:$BROKER_PORT"
        return
    fi
    stop >/dev/null 2>&1 || true
    # A throwaway store: nothing of an earlier run survives a start.
    rm -rf "$RUN"
    mkdir -p "$RUN/conf" "$RUN/store"
    cat >"$RUN/conf/broker.toml" <<EOF
[broker]
namesrvAddr = "127.0.0.1:$PORT"
brokerIp1 = "127.0.0.1"
listenPort = $BROKER_PORT
storePathRootDir = "$RUN/store"
# Topics are created on purpose (sluice ctl create-topic, scripts/rocketmq.sh topic),
# never by a send.
autoCreateTopicEnable = false
# Registers with the name server every 10 s (the least it takes; default 30 s), so a
# restarted name server knows the broker's topics again soon.
registerNameServerPeriod = 10000

[broker.brokerServerConfig]
bindAddress = "127.0.0.1"

[broker.brokerIdentity]
brokerName = "sluice-test"
brokerClusterName = "SluiceCluster"
brokerId = 0

[store]
storeType = "LocalFile"
brokerRole = "ASYNC_MASTER"
storePathRootDir = "$RUN/store"
haListenAddress = "127.0.0.1"
haListenPort = $HA_PORT
EOF
    export ROCKETMQ_HOME="$RUN" ROCKETMQ_SECURITY_PROFILE=development-insecure-loopback
    # A second broker, alone in cluster SyncCluster, as a SYNC_MASTER without a slave:
    # it stores each message but never answers SEND_OK (tests of the `accept` setting).
    mkdir -p "$RUN/sync/store"
    sed -e "s/^listenPort = .*/listenPort = $SYNC_PORT/" \
        -e "s/^haListenPort = .*/haListenPort = $((SYNC_PORT + 1))/" \
        -e 's/^brokerName = .*/brokerName = "sluice-sync"/' \
        -e 's/^brokerClusterName = .*/brokerClusterName = "SyncCluster"/' \
        -e 's/^brokerRole = .*/brokerRole = "SYNC_MASTER"\ninSyncReplicas = 2\ntotalReplicas = 2\nslaveTimeout = 1000/' \
        -e "s#$RUN/store#$RUN/sync/store#" \
        "$RUN/conf/broker.toml" >"$RUN/conf/sync.toml"
    start_namesrv
    start_broker
    launch sync "$SYNC_PORT" "$BROKER" -c "$RUN/conf/sync.toml" -n "127.0.0.1:$PORT"
    log "running: name server 127.0.0.1:$PORT, broker 127.0.0.1:$BROKER_PORT (store $RUN/store), SYNC_MASTER broker 127.0.0.1:$SYNC_PORT"
}

# The name server alone (it keeps routes in memory: the broker registers again within
# its heartbeat period).
start_namesrv() {
    if listening "$PORT"; then return; fi
    export ROCKETMQ_HOME="$RUN" ROCKETMQ_SECURITY_PROFILE=development-insecure-loopback
    launch namesrv "$PORT" "$NAMESRV" --listenPort "$PORT" --bindAddress 127.0.0.1 \
        --rocketmqHome "$RUN"
}

# The broker counts its disk as (size - available) / size and refuses every write from
# 90% (a limit its configuration cannot raise), which on a filesystem with reserved
# blocks comes well before `df` says 90%. Say so before a test fails on it.
disk_check() {
    local size avail
    read -r size avail < <(df -Pk "$RUN" | awk 'NR == 2 {print $2, $4}')
    if [ -n "$size" ] && [ "$size" -gt 0 ] && [ $(((size - avail) * 100 / size)) -ge 88 ]; then
        log "warning: the disk holding $RUN is $(((size - avail) * 100 / size))% full as the broker counts it (size minus available); it refuses writes from 90%: free space (e.g. old target/ directories)"
    fi
}

# The broker alone, on the store and configuration `start` wrote (its data survives).
start_broker() {
    if listening "$BROKER_PORT"; then return; fi
    disk_check
    export ROCKETMQ_HOME="$RUN" ROCKETMQ_SECURITY_PROFILE=development-insecure-loopback
    launch broker "$BROKER_PORT" "$BROKER" -c "$RUN/conf/broker.toml" -n "127.0.0.1:$PORT"
}

stop_one() { stop_pidfile "$RUN/$1.pid"; }

stop() {
    stop_one sync
    stop_one broker
    stop_one namesrv
    log "stopped"
}

status() {
    for what in "name server:$PORT" "broker:$BROKER_PORT" "sync broker:$SYNC_PORT"; do
        if listening "${what##*:}"; then echo "${what%%:*} 127.0.0.1:${what##*:} up"; else
            echo "${what%%:*} 127.0.0.1:${what##*:} down"
        fi
    done
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) status ;;
    wipe) stop; rm -rf "$RUN" ;;
    stop-broker) stop_one broker ;;
    start-broker) start_broker ;;
    stop-namesrv) stop_one namesrv ;;
    start-namesrv) start_namesrv ;;
    namesrv) echo "127.0.0.1:$PORT" ;;
    *) echo "usage: $0 start|stop|restart|status|install|wipe|stop-broker|start-broker|stop-namesrv|start-namesrv|namesrv" >&2; exit 2 ;;
esac
