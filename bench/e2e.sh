#!/usr/bin/env bash
# End-to-end throughput: MariaDB -> sluice run -> sink, draining a backlog of ROWS rows
# (10 mixed columns), in one run: Kafka (tansu) with the canal-compat module, Kafka with
# no module (built-in routing), the local file sink with the module, and Kafka with the
# module again on a first start (module compiled, not loaded from the cache). Prints rows/s,
# CPU seconds and peak RSS of the agent, the CPU seconds the broker and MariaDB spent in
# the same window (all three share the machine's cores), and ratios.
#
#   bench/e2e.sh [ROWS]     (default 1000000; REPEAT=3 interleaved rounds, medians)
#   KAFKA_PROPERTIES='"compression.type" = "lz4"' bench/e2e.sh   (extra librdkafka settings)
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-1000000}"
REPEAT="${REPEAT:-3}"

source bench/services.sh
write_backlog "$ROWS"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
DB_PID=$(scripts/mariadb.sh pid)

run() { # name sink-toml module(yes/no)
    local name=$1 sink=$2 module=$3
    scripts/tansu.sh restart >/dev/null
    scripts/tansu.sh topic bench.t10 12 >/dev/null
    scripts/tansu.sh topic bench-all 12 >/dev/null
    rm -f "$WORK/cp" "$WORK/out.jsonl"
    {
        cat <<TOML
[source]
host = "127.0.0.1"
port = $SLUICE_MYSQL_PORT
user = "$SLUICE_MYSQL_USER"
password_env = "SLUICE_MYSQL_PASSWORD"
server_id = 1000777
start = "${START:-$FILE:$POS}"
[router]
batch = 1000
[checkpoint]
path = "$WORK/cp"
[admin]
listen = "127.0.0.1:0"
TOML
        if [ "$module" = yes ]; then canal_module_toml; fi
        echo "$sink"
    } >"$WORK/sluice.toml"
    local broker_pid broker0 db0 wall cpu rss
    broker_pid=$(scripts/tansu.sh pid)
    broker0=$(cpu_ticks "$broker_pid"); db0=$(cpu_ticks "$DB_PID")
    read -r wall cpu rss < <(drain_backlog "$WORK/sluice.toml" "$WORK/cp")
    [ -n "${rss:-}" ] || { echo "e2e.sh: the $name run failed" >&2; exit 1; }
    local broker_cpu db_cpu
    broker_cpu=$(echo "($(cpu_ticks "$broker_pid") - $broker0) / $TICK" | bc -l)
    db_cpu=$(echo "($(cpu_ticks "$DB_PID") - $db0) / $TICK" | bc -l)
    echo "$name $wall $cpu $rss $broker_cpu $db_cpu"
}

KAFKA="[sink]
kind = \"kafka\"
brokers = \"127.0.0.1:19092\"
default_topic = \"bench-all\"
[sink.librdkafka]
${KAFKA_PROPERTIES:-}"
FILESINK="[sink]
kind = \"file\"
path = \"$WORK/out.jsonl\""

# Warm the precompiled-module cache (beside the checkpoint) as any restart of a
# deployed agent finds it: a run with nothing to read, stopped once it replicates.
warm() {
    START="$END_FILE:$END_POS" run warm "$FILESINK" yes >/dev/null
}
RESULTS=$(mktemp)
warm
# Rounds interleave the configurations so the machine's noise falls on all of them.
for ((round = 1; round <= REPEAT; round++)); do
    run "kafka+canal-compat" "$KAFKA" yes
    run "kafka+no-module" "$KAFKA" no
    run "file+canal-compat" "$FILESINK" yes
    # A first start: the module compiles (empty cache) before the backlog drains, so
    # its peak RSS includes the compiler's.
    rm -rf "$WORK/module-cache"
    run "kafka+canal,cold-start" "$KAFKA" yes
done >"$RESULTS"
echo
echo "end to end, $ROWS rows x 10 columns drained from a backlog ($FILE:$POS .. $END_FILE:$END_POS)"
echo "median of $REPEAT interleaved runs (rows/s range: slowest..fastest; RSS: highest)"
awk -v rows="$ROWS" '
function median(a, n,    i, j, t, b) {
  for (i = 1; i <= n; i++) b[i] = a[i]
  for (i = 2; i <= n; i++) for (j = i; j > 1 && b[j-1] > b[j]; j--) { t = b[j]; b[j] = b[j-1]; b[j-1] = t }
  return n % 2 ? b[(n+1)/2] : (b[n/2] + b[n/2+1]) / 2
}
{
  if (!($1 in n)) order[++names] = $1
  k = ++n[$1]
  wall[$1, k] = $2; cpu[$1, k] = $3; bcpu[$1, k] = $5; dcpu[$1, k] = $6
  if ($4 > rss[$1]) rss[$1] = $4
}
END {
  printf "%-22s %8s %10s %21s %7s %8s %12s %11s %15s\n", "run", "wall s", "rows/s", "range", "cpu s", "RSS MiB", "broker cpu s", "mariadb cpu", "x kafka+module"
  for (o = 1; o <= names; o++) {
    name = order[o]; m = n[name]; lo = 1e18; hi = 0
    for (k = 1; k <= m; k++) {
      w[k] = wall[name, k]; c[k] = cpu[name, k]; b[k] = bcpu[name, k]; d[k] = dcpu[name, k]
      if (w[k] < lo) lo = w[k]; if (w[k] > hi) hi = w[k]
    }
    mw = median(w, m); if (o == 1) base = mw
    printf "%-22s %8.2f %10.0f %10.0f..%-10.0f %7.2f %8.1f %12.2f %11.2f %15.2f\n", name, mw, rows / mw, rows / hi, rows / lo, median(c, m), rss[name] / 1024, median(b, m), median(d, m), base / mw
  }
}' "$RESULTS"
rm -f "$RESULTS"
