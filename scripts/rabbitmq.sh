#!/usr/bin/env bash
# Throwaway 3-node RabbitMQ cluster on loopback for tests, benchmarks and the quick start.
#
#   scripts/rabbitmq.sh start|stop|status|install|wipe
#   scripts/rabbitmq.sh stop-node N|start-node N     # one node (1..3), for failover tests
#   scripts/rabbitmq.sh ctl N ARGS...                  # rabbitmqctl against node N
#   scripts/rabbitmq.sh ports                          # the AMQP ports, comma-separated
#   scripts/rabbitmq.sh management                     # node 1's management API URL
#
# Idempotent and non-interactive. Installs Debian's rabbitmq-server when missing and
# never touches the system service: every node runs from the package's own scripts
# (/usr/lib/rabbitmq/bin, not the /usr/sbin wrappers that switch user and cookie) with
# its own name (rabbitN@localhost), AMQP port ($SLUICE_RABBIT_PORT + N - 1, default
# 35672..35674), distribution port (+10000), data and logs under
# ~/.cache/sluice/rabbitmq, one Erlang cookie under a fixed HOME, and epmd on
# 127.0.0.1 only. Node 1 also serves the management API (plugin rabbitmq_management)
# on 127.0.0.1:$SLUICE_RABBIT_PORT+1000 (default 36672), which `sluice check` reads
# bindings from. User guest/guest (loopback only), vhost /. Started with no node
# running, it starts from empty data (queues and messages of earlier runs are gone).
set -euo pipefail

BASE_PORT="${SLUICE_RABBIT_PORT:-35672}"
ROOT="${SLUICE_RABBIT_DIR:-$HOME/.cache/sluice/rabbitmq}"
NODES=3
BIN=/usr/lib/rabbitmq/bin

log() { echo "rabbitmq.sh: $*" >&2; }
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

install() {
    if [ -x "$BIN/rabbitmq-server" ]; then return; fi
    log "installing rabbitmq-server from Debian packages"
    apt_install rabbitmq-server
    # A system node the package may have started anyway would hold epmd's names only;
    # ours have their own, but stop it so it costs nothing.
    as_root pkill -u rabbitmq -f beam 2>/dev/null || true
}

port() { echo $((BASE_PORT + $1 - 1)); }
management_port() { echo $((BASE_PORT + 1000)); }

# Runs a command in the environment of node N (the node itself, or CLI tools talking
# to it).
with_node() {
    local n="$1" dir="$ROOT/node$1"
    shift
    (
        export HOME="$ROOT/home" ERL_EPMD_ADDRESS=127.0.0.1
        export RABBITMQ_NODENAME="rabbit$n@localhost"
        export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$(port "$n")"
        export RABBITMQ_DIST_PORT="$(($(port "$n") + 10000))"
        # Inter-node traffic on loopback only.
        export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
        export RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log"
        export RABBITMQ_PID_FILE="$dir/pid" RABBITMQ_CONFIG_FILE="$dir/rabbitmq"
        export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
        export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
        export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
        exec "$@"
    )
}

ctl() {
    local n="$1"
    shift
    with_node "$n" "$BIN/rabbitmqctl" -n "rabbit$n@localhost" "$@"
}

listening() {
    (exec 3<>"/dev/tcp/127.0.0.1/$(port "$1")") 2>/dev/null
}

prepare() {
    mkdir -p "$ROOT/home"
    if [ ! -f "$ROOT/home/.erlang.cookie" ]; then
        head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$ROOT/home/.erlang.cookie"
        chmod 400 "$ROOT/home/.erlang.cookie"
    fi
    for n in $(seq 1 $NODES); do
        local dir="$ROOT/node$n"
        mkdir -p "$dir/mnesia" "$dir/log"
        cat >"$dir/rabbitmq.conf" <<EOF
loopback_users.guest = true
# Several nodes share two cores in tests: keep each one's footprint small.
vm_memory_high_watermark.relative = 0.1
disk_free_limit.absolute = 50MB
log.file.level = info
log.console = false
# The cluster forms at first boot: each node joins the others listed here.
cluster_formation.peer_discovery_backend = classic_config
cluster_formation.classic_config.nodes.1 = rabbit1@localhost
cluster_formation.classic_config.nodes.2 = rabbit2@localhost
cluster_formation.classic_config.nodes.3 = rabbit3@localhost
EOF
        echo "[]." >"$dir/advanced.config"
        if [ "$n" = 1 ]; then
            # One management listener is enough: it shows the whole cluster.
            echo "[rabbitmq_management]." >"$dir/enabled_plugins"
            cat >>"$dir/rabbitmq.conf" <<EOF
management.tcp.ip = 127.0.0.1
management.tcp.port = $(management_port)
EOF
        else
            echo "[]." >"$dir/enabled_plugins"
        fi
        : >"$dir/rabbitmq-env.conf"
    done
}

start_node() {
    local n="$1"
    if listening "$n"; then return; fi
    # The listener comes from RABBITMQ_NODE_IP_ADDRESS/PORT (a `listeners.tcp` line in
    # rabbitmq.conf as well would bind the port twice).
    # The whole subshell is redirected: it must not hold the caller's stdout open.
    (cd "$ROOT" && with_node "$n" nohup "$BIN/rabbitmq-server") \
        >"$ROOT/node$n/stdout.log" 2>&1 </dev/null &
    local pid=$! t=0
    until listening "$n" && ctl "$n" await_startup --timeout 5 >/dev/null 2>&1; do
        t=$((t + 1))
        if ! kill -0 "$pid" 2>/dev/null || [ "$t" -gt 120 ]; then
            log "node $n did not start:"
            tail -n 30 "$ROOT/node$n/stdout.log" >&2 || true
            exit 1
        fi
        sleep 0.5
    done
}

stop_node() {
    local n="$1"
    ctl "$n" stop >/dev/null 2>&1 || true
    for _ in $(seq 1 50); do
        listening "$n" || return 0
        sleep 0.1
    done
    pkill -f "rabbit$n@localhost" 2>/dev/null || true
}

clustered() {
    ctl 1 cluster_status --formatter json 2>/dev/null |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d.get("running_nodes",[])))' \
            2>/dev/null || echo 0
}

start() {
    install
    # A throwaway cluster: when no node runs, start from empty data, so nodes killed
    # earlier (a CI run ends everything) never wait at boot for peers that are gone.
    local any=0
    for n in $(seq 1 $NODES); do listening "$n" && any=1; done
    if [ "$any" = 0 ]; then
        pkill -f "rabbit[0-9]@localhost" 2>/dev/null || true
        for n in $(seq 1 $NODES); do rm -rf "$ROOT/node$n"; done
    fi
    prepare
    for n in $(seq 1 $NODES); do start_node "$n"; done
    local t=0
    until [ "$(clustered)" = "$NODES" ]; do
        t=$((t + 1))
        if [ "$t" -gt 60 ]; then
            log "the cluster did not form:"
            ctl 1 cluster_status >&2 || true
            exit 1
        fi
        sleep 0.5
    done
    log "running: nodes rabbit1..$NODES@localhost on 127.0.0.1:$(ports)"
}

stop() {
    for n in $(seq $NODES -1 1); do stop_node "$n"; done
    log "stopped"
}

status() {
    for n in $(seq 1 $NODES); do
        if listening "$n"; then echo "rabbit$n@localhost 127.0.0.1:$(port "$n") up"; else
            echo "rabbit$n@localhost 127.0.0.1:$(port "$n") down"
        fi
    done
}

ports() {
    local out=""
    for n in $(seq 1 $NODES); do out="$out${out:+,}$(port "$n")"; done
    echo "$out"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    install) install ;;
    wipe) stop; rm -rf "$ROOT" ;;
    stop-node) stop_node "${2:?node number}" ;;
    start-node) prepare; start_node "${2:?node number}" ;;
    ctl) shift; ctl "$@" ;;
    ports) ports ;;
    management) echo "http://127.0.0.1:$(management_port)" ;;
    *) echo "usage: $0 start|stop|status|install|wipe|stop-node N|start-node N|ctl N ...|ports|management" >&2; exit 2 ;;
esac
