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

agent() { # sink-toml -> "wall cpu rss"
    rm -f "$WORK/cp" "$WORK/out.jsonl"
    cat >"$WORK/sluice.toml" <<TOML
[source]
host = "127.0.0.1"
port = $SLUICE_MYSQL_PORT
user = "$SLUICE_MYSQL_USER"
password_env = "SLUICE_MYSQL_PASSWORD"
server_id = 1000778
start = "$FILE:$POS"
[router]
batch = 1000
[checkpoint]
path = "$WORK/cp"
[admin]
listen = "127.0.0.1:0"
TOML
    canal_module_toml >>"$WORK/sluice.toml"
    echo "$1" >>"$WORK/sluice.toml"
    local r
    r="$(drain_backlog "$WORK/sluice.toml" "$WORK/cp")"
    [ -n "$r" ] || { echo "rabbitmq.sh: the agent run failed" >&2; exit 1; }
    echo "$r"
}

RABBIT="[sink]
kind = \"rabbitmq\"
[sink.rabbitmq]
addresses = [$ADDRS]
exchange = \"bench\"
routing_key = \"{topic}.{partition}\""
KAFKA="[sink]
kind = \"kafka\"
brokers = \"127.0.0.1:${SLUICE_TANSU_PORT:-19092}\""
FILESINK="[sink]
kind = \"file\"
path = \"$WORK/out.jsonl\""

# The messages the agent publishes, for the direct publisher (also warms the cache).
agent "$FILESINK" >/dev/null || exit 1
cp "$WORK/out.jsonl" "$WORK/messages.jsonl"
MESSAGES=$(wc -l <"$WORK/messages.jsonl")
RESULTS=$(mktemp)
for ((round = 1; round <= REPEAT; round++)); do
    queues
    r="$(agent "$RABBIT")" || exit 1
    echo "agent $r"
    queues
    read -r _ secs < <(target/release/rabbit-bench "$WORK/messages.jsonl" "$PORT" bench 20000)
    echo "direct $secs 0 0"
    scripts/tansu.sh restart >/dev/null
    scripts/tansu.sh topic bench.t10 12 >/dev/null
    r="$(agent "$KAFKA")" || exit 1
    echo "kafka $r"
done >"$RESULTS"
queues
echo
echo "RabbitMQ, $ROWS rows x 10 columns through canal-compat ($MESSAGES messages, 12 quorum queues, 3 nodes)"
echo "median of $REPEAT interleaved runs"
awk -v rows="$ROWS" -v msgs="$MESSAGES" '
function median(a, n,    i, j, t, b) {
  for (i = 1; i <= n; i++) b[i] = a[i]
  for (i = 2; i <= n; i++) for (j = i; j > 1 && b[j-1] > b[j]; j--) { t = b[j]; b[j] = b[j-1]; b[j-1] = t }
  return n % 2 ? b[(n+1)/2] : (b[n/2] + b[n/2+1]) / 2
}
{ k = ++n[$1]; wall[$1, k] = $2; cpu[$1, k] = $3; if ($4 > rss[$1]) rss[$1] = $4 }
END {
  for (k = 1; k <= n["agent"]; k++) { a[k] = wall["agent", k]; c[k] = cpu["agent", k] }
  for (k = 1; k <= n["direct"]; k++) d[k] = wall["direct", k]
  for (k = 1; k <= n["kafka"]; k++) { kw[k] = wall["kafka", k]; kc[k] = cpu["kafka", k] }
  ma = median(a, n["agent"]); md = median(d, n["direct"]); mk = median(kw, n["kafka"])
  printf "%-28s %8s %10s %10s %7s %8s\n", "run", "wall s", "rows/s", "msgs/s", "cpu s", "RSS MiB"
  printf "%-28s %8.2f %10.0f %10.0f %7.2f %8.1f\n", "sluice run (rabbitmq)", ma, rows / ma, msgs / ma, median(c, n["agent"]), rss["agent"] / 1024
  printf "%-28s %8.2f %10.0f %10.0f %7s %8s\n", "direct lapin, confirms", md, rows / md, msgs / md, "-", "-"
  printf "%-28s %8.2f %10.0f %10.0f %7.2f %8.1f\n", "sluice run (kafka, tansu)", mk, rows / mk, msgs / mk, median(kc, n["kafka"]), rss["kafka"] / 1024
  printf "agent time / direct time: %.2f (target <= 1.3); RabbitMQ / Kafka: %.2f\n", ma / md, ma / mk
}' "$RESULTS"
rm -f "$RESULTS"
