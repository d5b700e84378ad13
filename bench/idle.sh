#!/usr/bin/env bash
# Idle cost: CPU an agent uses while connected and replicating with nothing to publish
# (canal-compat module loaded, Kafka sink on tansu), over SECONDS after a 5 s settle,
# per thread. An agent runs on every database host, so idle should round to nothing.
#
#   bench/idle.sh [SECONDS]     (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_RUN="${1:-20}"

# SLUICE_BIN: another build to compare (e.g. an older commit's binary).
source bench/services.sh
scripts/tansu.sh topic bench-all 12 >/dev/null 2>&1 || true

WORK="$(mktemp -d)"
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
cat >"$WORK/sluice.toml" <<TOML
[source]
host = "127.0.0.1"
port = $SLUICE_MYSQL_PORT
user = "$SLUICE_MYSQL_USER"
password_env = "SLUICE_MYSQL_PASSWORD"
server_id = 1000780
start = "latest"
[checkpoint]
path = "$WORK/cp"
[admin]
listen = "127.0.0.1:0"
[sink]
kind = "kafka"
brokers = "127.0.0.1:19092"
default_topic = "bench-all"
[[modules]]
name = "canal"
file = "$PWD/target/modules/canal-compat.wasm"
[modules.config]
"canal.mq.dynamicTopic" = 'bench\..*'
"canal.mq.partitionsNum" = "12"
TOML
"$SLUICE" run -c "$WORK/sluice.toml" 2>"$WORK/log" &
PID=$!
until grep -q "Replicating." "$WORK/log"; do
    kill -0 $PID 2>/dev/null || { cat "$WORK/log" >&2; exit 1; }
    sleep 0.1
done
sleep 5
TICK=$(getconf CLK_TCK)
ticks() { for t in /proc/$PID/task/*; do echo "$(tr ' ' _ <"$t/comm") $(awk '{ print $14 + $15 }' "$t/stat")"; done; }
ticks | sort >"$WORK/before"
sleep "$SECONDS_RUN"
ticks | sort >"$WORK/after"
echo "idle agent over ${SECONDS_RUN} s (CPU ms per thread; threads of one name summed):"
join -a1 -e0 -o 0,1.2,2.2 <(awk '{a[$1]+=$2} END {for (k in a) print k, a[k]}' "$WORK/after" | sort) \
    <(awk '{a[$1]+=$2} END {for (k in a) print k, a[k]}' "$WORK/before" | sort) |
    awk -v tick="$TICK" -v s="$SECONDS_RUN" '
    { d = ($2 - $3) * 1000 / tick; total += d; printf "  %-22s %6.0f\n", $1, d }
    END { printf "  %-22s %6.0f  (%.2f%% of one core)\n", "total", total, total / (s * 10) }'
