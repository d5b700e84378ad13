#!/usr/bin/env bash
# RocketMQ end to end: a backlog of ROWS rows drained by `sluice run` with canal-compat
# (12 partitions) into a 12-queue topic on the test broker (`scripts/rocketmq.sh`),
# beside the floor: a direct rocketmq-client-rust producer (`rocket-bench`, one in-order
# sender per queue, as the agent) sending exactly the messages the agent sends (taken
# from a file-sink run of the same backlog) to the same queues, and beside the agent's
# Kafka run of the same backlog (tansu, 12 partitions). Prints wall time, rows/s,
# messages/s, the agent's CPU seconds and peak RSS, and the agent's time over the floor's.
#
#   bench/rocketmq.sh [ROWS]      (default 200000; REPEAT=3 interleaved rounds, medians)
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-200000}"
REPEAT="${REPEAT:-3}"

EXTRA_BINS="rocket-bench rmq" source bench/services.sh
scripts/rocketmq.sh start >/dev/null
NAMESRV="$(scripts/rocketmq.sh namesrv)"
target/release/rmq create "$NAMESRV" SluiceCluster bench_t10 12

write_backlog "$ROWS"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

agent() { drain_with_sink "$1" 1000779; }

# SLUICE_BENCH_ROCKETMQ: extra [sink.rocketmq] settings (e.g. `batch_max = 64`).
ROCKET="[sink]
kind = \"rocketmq\"
[sink.rocketmq]
namesrv = [\"$NAMESRV\"]
${SLUICE_BENCH_ROCKETMQ:-}"
record_messages 1000779
RESULTS=$(mktemp)
for ((round = 1; round <= REPEAT; round++)); do
    r="$(agent "$ROCKET")" || exit 1
    echo "agent $r"
    read -r _ secs < <(target/release/rocket-bench "$WORK/messages.jsonl" "$NAMESRV")
    echo "direct $secs 0 0"
    kafka_round 1000779 || exit 1
done >"$RESULTS"
echo
echo "RocketMQ, $ROWS rows x 10 columns through canal-compat ($MESSAGES messages, 12 queues, one broker)"
echo "median of $REPEAT interleaved runs"
report_vs_floor "$RESULTS" "$ROWS" "$MESSAGES" rocketmq "direct producer, per queue"
rm -f "$RESULTS"
