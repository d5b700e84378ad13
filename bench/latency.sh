#!/usr/bin/env bash
# Commit-to-delivery latency at a steady write rate (default 10k rows/s in autocommit
# transactions of 50 rows, 20 s after a 3 s warm-up): MariaDB -> sluice run -> tansu,
# consumed in the benchmark process. One run each: Kafka with the canal-compat module,
# Kafka with no module, Kafka with the module and one message per transaction.
# Prints p50/p90/p99/max of "COMMIT returned -> last row consumed" and commit-to-ack
# p50/p99: for the agent its `sluice_delivery_seconds` histogram (transaction read ->
# last message acknowledged), for the baseline its own delivery reports (first row
# queued -> last row acknowledged). Ratios are to two baselines: the same rows produced
# straight to tansu by an idempotent acks=all producer (the broker and client floor, no
# agent), alone and while the same transactions are committed to MariaDB (the floor
# beside the database load every agent run also carries).
# The whole set runs once per partition count in PARTITIONS (default "3 12"):
# librdkafka puts one partition in each produce request, so the partition count sets
# how many requests each linger window sends to the broker.
#
#   bench/latency.sh [RATE] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${1:-10000}"
# librdkafka linger.ms for the agent and the baseline producer (the agent's default is 5).
export LINGER_MS="${LINGER_MS:-5}"
SECONDS_RUN="${2:-20}"

EXTRA_BINS=latency-bench source bench/services.sh
BENCH="$PWD/target/release/latency-bench"
sql -e "CREATE DATABASE IF NOT EXISTS bench; DROP TABLE IF EXISTS bench.lat;
CREATE TABLE bench.lat (id BIGINT PRIMARY KEY, txn BIGINT, pad VARCHAR(64));"

WORK="$(mktemp -d)"
AGENT_PID=""
cleanup() { [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
PORT=19181

run() { # name module(yes/no) message-unit
    local name=$1 module=$2 unit=$3 topic
    scripts/tansu.sh restart >/dev/null
    scripts/tansu.sh topic bench.lat "$PARTS" >/dev/null
    scripts/tansu.sh topic bench-all "$PARTS" >/dev/null
    rm -f "$WORK/cp"
    {
        cat <<TOML
[source]
host = "127.0.0.1"
port = $SLUICE_MYSQL_PORT
user = "$SLUICE_MYSQL_USER"
password_env = "SLUICE_MYSQL_PASSWORD"
server_id = 1000778
start = "latest"
heartbeat_ms = 1000
[checkpoint]
path = "$WORK/cp"
[admin]
listen = "127.0.0.1:$PORT"
[sink]
kind = "kafka"
brokers = "127.0.0.1:19092"
default_topic = "bench-all"
message = "$unit"
[sink.librdkafka]
"linger.ms" = "$LINGER_MS"
TOML
        if [ "$module" = yes ]; then
            cat <<TOML
[[modules]]
name = "canal"
file = "$PWD/target/modules/canal-compat.wasm"
[modules.config]
"canal.mq.topic" = "bench.default"
"canal.mq.dynamicTopic" = 'bench\..*'
"canal.mq.partitionsNum" = "$PARTS"
"canal.mq.partitionHash" = '.*\..*:\$pk\$'
TOML
        fi
    } >"$WORK/sluice.toml"
    topic=bench-all; [ "$module" = yes ] && topic=bench.lat
    "$SLUICE" run -c "$WORK/sluice.toml" 2>"$WORK/log" &
    AGENT_PID=$!
    until grep -q "Replicating." "$WORK/log"; do
        kill -0 $AGENT_PID 2>/dev/null || { cat "$WORK/log" >&2; exit 1; }
        sleep 0.1
    done
    echo "$name $("$BENCH" --port "$SLUICE_MYSQL_PORT" --topic "$topic" --partitions "$PARTS" --rate "$RATE" \
        --seconds "$SECONDS_RUN" --metrics "http://127.0.0.1:$PORT/metrics")"
    kill -TERM $AGENT_PID; wait $AGENT_PID || true; AGENT_PID=""
}

baseline() { # name [--db-load]: the broker and client floor, rows produced straight to tansu
    local name=$1; shift
    scripts/tansu.sh restart >/dev/null
    scripts/tansu.sh topic bench.lat "$PARTS" >/dev/null
    echo "$name $("$BENCH" --direct "$@" --port "$SLUICE_MYSQL_PORT" --topic bench.lat \
        --partitions "$PARTS" --rate "$RATE" --seconds "$SECONDS_RUN")"
}

for PARTS in ${PARTITIONS:-3 12}; do
    RESULTS=$(mktemp)
    {
        baseline "direct-producer"
        baseline "direct+db-writes" --db-load
        run "kafka+canal-compat" yes event
        run "kafka+no-module" no event
        run "kafka+canal+txn-msg" yes transaction
    } >"$RESULTS"
    echo
    echo "latency at a steady $RATE rows/s (autocommit transactions of 50 rows, ${SECONDS_RUN} s after 3 s warm-up, linger.ms=$LINGER_MS, $PARTS partitions), ms"
    awk '
    { name[NR]=$1; rate[NR]=$2; p50[NR]=$3; p90[NR]=$4; p99[NR]=$5; mx[NR]=$6; miss[NR]=$7; a50[NR]=$8; a99[NR]=$9 }
    END {
      printf "%-20s %7s %7s %7s %7s %7s %5s %8s %8s %12s %12s\n", "run", "rows/s", "p50", "p90", "p99", "max", "lost", "ack p50", "ack p99", "ack99/direct", "ack99/dir+db"
      for (i=1;i<=NR;i++) printf "%-20s %7.0f %7.2f %7.2f %7.2f %7.2f %5d %8.2f %8.2f %12.2f %12.2f\n", name[i], rate[i], p50[i], p90[i], p99[i], mx[i], miss[i], a50[i], a99[i], a99[i]/a99[1], a99[i]/a99[2]
    }' "$RESULTS"
    rm -f "$RESULTS"
done
