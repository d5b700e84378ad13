#!/usr/bin/env bash
# RabbitMQ end to end: a backlog of ROWS rows drained by `sluice run` with canal-compat
# (12 partitions) into quorum queues on the three-node test cluster, beside the floor:
# a direct lapin publisher (`rabbit-bench`, confirms on one channel, the agent's window)
# sending exactly the messages the agent sends (taken from a file-sink run of the same
# backlog) to the same exchange and queues, and beside the agent's Kafka run of the same
# backlog (tansu, 12 partitions). Prints wall time, rows/s, messages/s, the agent's CPU
# seconds and peak RSS, and the agent's time over the floor's.
#
#   bench/rabbitmq.sh [ROWS]      (default 200000; REPEAT=3 interleaved rounds, medians)
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-200000}"
REPEAT="${REPEAT:-3}"

EXTRA_BINS="rabbit-bench" source bench/services.sh
scripts/rabbitmq.sh start >/dev/null
PORTS="$(scripts/rabbitmq.sh ports)"
PORT="${PORTS%%,*}"
ADDRS="$(echo "$PORTS" | tr ',' '\n' | sed 's/.*/"127.0.0.1:&"/' | paste -sd, -)"
QUEUES=()
for p in $(seq 0 11); do QUEUES+=("bench.t10.$p"); done
python3 -c 'import pika' 2>/dev/null || python3 -m pip install --quiet pika
queues() { python3 tests/py/rabbit.py setup "$PORTS" bench "${QUEUES[@]}"; }

write_backlog "$ROWS"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

agent() { drain_with_sink "$1" 1000778; }

RABBIT="[sink]
kind = \"rabbitmq\"
[sink.rabbitmq]
addresses = [$ADDRS]
exchange = \"bench\"
routing_key = \"{topic}.{partition}\""
record_messages 1000778
RESULTS=$(mktemp)
for ((round = 1; round <= REPEAT; round++)); do
    queues
    r="$(agent "$RABBIT")" || exit 1
    echo "agent $r"
    queues
    read -r _ secs < <(target/release/rabbit-bench "$WORK/messages.jsonl" "$PORT" bench 20000)
    echo "direct $secs 0 0"
    kafka_round 1000778 || exit 1
done >"$RESULTS"
queues
echo
echo "RabbitMQ, $ROWS rows x 10 columns through canal-compat ($MESSAGES messages, 12 quorum queues, 3 nodes)"
echo "median of $REPEAT interleaved runs"
report_vs_floor "$RESULTS" "$ROWS" "$MESSAGES" rabbitmq "direct lapin, confirms"
rm -f "$RESULTS"
