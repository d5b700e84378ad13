# Sourced by the agent benchmarks (e2e.sh, latency.sh, idle.sh): starts the throwaway
# MariaDB and tansu, exports the connection settings, builds the release agent (plus
# any binaries named in EXTRA_BINS) and the canal-compat module, and defines `sql`.
# SLUICE_BIN runs another build of the agent instead (e.g. an older commit's binary).
scripts/mariadb.sh start >/dev/null
scripts/tansu.sh start >/dev/null
eval "$(scripts/mariadb.sh env)"
export SLUICE_MYSQL_PASSWORD SLUICE_MYSQL_ADMIN_USER SLUICE_MYSQL_ADMIN_PASSWORD
BINS=(--bin sluice)
for b in ${EXTRA_BINS:-}; do BINS+=(--bin "$b"); done
cargo build --release --quiet "${BINS[@]}"
SLUICE="${SLUICE_BIN:-$PWD/target/release/sluice}"
"$PWD/target/release/sluice" module build guest-examples/canal-compat --out target/modules \
    --profile guest >/dev/null

sql() {
    mariadb --no-defaults --protocol=tcp -h 127.0.0.1 -P "$SLUICE_MYSQL_PORT" \
        -u"$SLUICE_MYSQL_ADMIN_USER" -p"$SLUICE_MYSQL_ADMIN_PASSWORD" -N -B "$@"
}

# Writes a backlog of $1 rows (10 mixed columns) into bench.t10 and sets FILE POS (where
# it starts) and END_FILE END_POS (where it ends).
write_backlog() {
    local ROWS=$1
    sql -e "CREATE DATABASE IF NOT EXISTS bench; DROP TABLE IF EXISTS bench.t10;
    CREATE TABLE bench.t10 (id BIGINT PRIMARY KEY, a INT, b BIGINT, c VARCHAR(32), d DECIMAL(12,2),
      e DATETIME(3), f DOUBLE, g TINYINT, h VARCHAR(64), i DATE) DEFAULT CHARSET=utf8mb4;"
    read -r FILE POS _ < <(sql -e "SHOW MASTER STATUS")
    echo "writing $ROWS rows from $FILE:$POS ..." >&2
    for ((s = 1; s <= ROWS; s += 10000)); do
        e=$((s + 9999)); [ "$e" -gt "$ROWS" ] && e=$ROWS
        echo "INSERT INTO bench.t10 SELECT seq, seq * 7, seq * 1000003, CONCAT('name-', seq),
          seq / 100, '2024-01-01 00:00:00' + INTERVAL seq SECOND, seq / 3, seq % 128, MD5(seq),
          '2024-01-01' + INTERVAL (seq % 1000) DAY FROM bench.seq_${s}_to_${e};"
    done | sql
    read -r END_FILE END_POS _ < <(sql -e "SHOW MASTER STATUS")
}

# Runs `sluice run -c $1` (log in $1.log) until its checkpoint ($2) reaches END_POS,
# then stops it; prints "wall-seconds cpu-seconds peak-rss-KiB".
drain_backlog() {
    local config=$1 cp=$2 t0 t1 out
    out="$(mktemp)"
    t0=$(date +%s.%N)
    /usr/bin/time -f "%U %S %M" -o "$out" "$SLUICE" run -c "$config" 2>"$config.log" &
    local pid=$!
    while ! grep -q "\"position\":$END_POS" "$cp" 2>/dev/null; do
        if ! kill -0 $pid 2>/dev/null; then cat "$config.log" >&2; exit 1; fi
        sleep 0.05
    done
    t1=$(date +%s.%N)
    pkill -TERM -P $pid sluice 2>/dev/null || kill -TERM $pid
    wait $pid || true
    read -r user sys rss <"$out"
    rm -f "$out"
    echo "$(echo "$t1 - $t0" | bc) $(echo "$user + $sys" | bc) $rss"
}

# The canal-compat module section the agent benchmarks route with (dynamic topic per
# table, 12 partitions by primary key).
canal_module_toml() {
    cat <<TOML
[[modules]]
name = "canal"
file = "$PWD/target/modules/canal-compat.wasm"
[modules.config]
"canal.mq.dynamicTopic" = 'bench\..*'
"canal.mq.partitionsNum" = "12"
"canal.mq.partitionHash" = '.*\..*:\$pk\$'
TOML
}

# Drains the backlog (from $FILE:$POS) with `sluice run`, canal-compat and the sink
# section $1, its config and checkpoint under $WORK, as replica $2 (server id); prints
# "wall-seconds cpu-seconds peak-rss-KiB".
drain_with_sink() {
    rm -f "$WORK/cp" "$WORK/out.jsonl"
    cat >"$WORK/sluice.toml" <<TOML
[source]
host = "127.0.0.1"
port = $SLUICE_MYSQL_PORT
user = "$SLUICE_MYSQL_USER"
password_env = "SLUICE_MYSQL_PASSWORD"
server_id = $2
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
    [ -n "$r" ] || { echo "the agent run failed (log: $WORK/sluice.toml.log)" >&2; return 1; }
    echo "$r"
}

# Prints the medians of a results file ($1: lines "agent|direct|kafka wall cpu rss")
# for $2 rows and $3 messages: the agent on broker $4, the floor named $5, and the
# agent's Kafka run, with the agent's time over the floor's.
report_vs_floor() {
    awk -v rows="$2" -v msgs="$3" -v broker="$4" -v floor="$5" '
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
  printf "%-28s %8.2f %10.0f %10.0f %7.2f %8.1f\n", "sluice run (" broker ")", ma, rows / ma, msgs / ma, median(c, n["agent"]), rss["agent"] / 1024
  printf "%-28s %8.2f %10.0f %10.0f %7s %8s\n", floor, md, rows / md, msgs / md, "-", "-"
  printf "%-28s %8.2f %10.0f %10.0f %7.2f %8.1f\n", "sluice run (kafka, tansu)", mk, rows / mk, msgs / mk, median(kc, n["kafka"]), rss["kafka"] / 1024
  printf "agent time / direct time: %.2f (target <= 1.3); %s / Kafka: %.2f\n", ma / md, broker, ma / mk
}' "$1"
}

# The messages the agent publishes for the backlog, as a file-sink run writes them
# ($WORK/messages.jsonl, for a direct publisher to send the same ones); sets MESSAGES.
# Also warms the module cache.
record_messages() {
    drain_with_sink "[sink]
kind = \"file\"
path = \"$WORK/out.jsonl\"" "$1" >/dev/null || return 1
    cp "$WORK/out.jsonl" "$WORK/messages.jsonl"
    MESSAGES=$(wc -l <"$WORK/messages.jsonl")
}

# One agent run of the backlog to Kafka (tansu restarted empty, topic bench.t10 with 12
# partitions), as replica $1; prints "kafka wall cpu rss".
kafka_round() {
    scripts/tansu.sh restart >/dev/null
    scripts/tansu.sh topic bench.t10 12 >/dev/null
    local r
    r="$(drain_with_sink "[sink]
kind = \"kafka\"
brokers = \"127.0.0.1:${SLUICE_TANSU_PORT:-19092}\"" "$1")" || return 1
    echo "kafka $r"
}
