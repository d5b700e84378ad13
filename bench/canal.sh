#!/usr/bin/env bash
# Canal's TCP protocol end to end: a backlog of ROWS rows drained by `sluice run` with
# canal-compat into a destination the agent serves itself (`kind = "canal-server"`),
# consumed by a Canal client (`canal-bench`: getWithoutAck(1000), then an immediate ack
# of each batch, every entry decoded), beside the agent's Kafka run of the same backlog
# (tansu, 12 partitions). A run ends when the agent's checkpoint passes the backlog, so
# for the Canal server every row was fetched and acknowledged by the client. Prints wall
# time, rows/s, the agent's CPU seconds and peak RSS, and the ratio to Kafka.
#
#   bench/canal.sh [ROWS]      (default 200000; REPEAT=3 interleaved rounds, medians)
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-200000}"
REPEAT="${REPEAT:-3}"

EXTRA_BINS="canal-bench" source bench/services.sh
write_backlog "$ROWS"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PORT="${SLUICE_CANAL_BENCH_PORT:-21111}"
CANAL="[sink]
kind = \"canal-server\"
[sink.canal_server]
listen = \"127.0.0.1:$PORT\"
destinations = [\"bench.t10\"]
cursor_dir = \"$WORK/cursors\""

RESULTS=$(mktemp)
for ((round = 1; round <= REPEAT; round++)); do
    rm -rf "$WORK/cursors"
    # The client connects as soon as the agent listens, and reads until every row came.
    target/release/canal-bench "$PORT" bench.t10 "$ROWS" >"$WORK/client.out" &
    client=$!
    r="$(drain_with_sink "$CANAL" 1000781)" || { kill "$client" 2>/dev/null; exit 1; }
    wait "$client"
    echo "canal $r $(cat "$WORK/client.out")"
    kafka_round 1000781 || exit 1
done >"$RESULTS"
echo
echo "Canal TCP, $ROWS rows x 10 columns through canal-compat, batches of 1000 acknowledged at once"
echo "median of $REPEAT interleaved runs"
awk -v rows="$ROWS" '
function median(a, n,    i, j, t, b) {
  for (i = 1; i <= n; i++) b[i] = a[i]
  for (i = 2; i <= n; i++) for (j = i; j > 1 && b[j-1] > b[j]; j--) { t = b[j]; b[j] = b[j-1]; b[j-1] = t }
  return n % 2 ? b[(n+1)/2] : (b[n/2] + b[n/2+1]) / 2
}
{ k = ++n[$1]; wall[$1, k] = $2; cpu[$1, k] = $3; if ($4 > rss[$1]) rss[$1] = $4; if ($1 == "canal") got[k] = $5 }
END {
  for (k = 1; k <= n["canal"]; k++) { a[k] = wall["canal", k]; c[k] = cpu["canal", k]; if (got[k] != rows) bad = 1 }
  for (k = 1; k <= n["kafka"]; k++) { kw[k] = wall["kafka", k]; kc[k] = cpu["kafka", k] }
  ma = median(a, n["canal"]); mk = median(kw, n["kafka"])
  printf "%-30s %8s %10s %7s %8s\n", "run", "wall s", "rows/s", "cpu s", "RSS MiB"
  printf "%-30s %8.2f %10.0f %7.2f %8.1f\n", "sluice run (canal-server)", ma, rows / ma, median(c, n["canal"]), rss["canal"] / 1024
  printf "%-30s %8.2f %10.0f %7.2f %8.1f\n", "sluice run (kafka, tansu)", mk, rows / mk, median(kc, n["kafka"]), rss["kafka"] / 1024
  printf "canal-server time / Kafka time: %.2f\n", ma / mk
  if (bad) { print "a client run did not receive every row" > "/dev/stderr"; exit 1 }
}' "$RESULTS"
rm -f "$RESULTS"
