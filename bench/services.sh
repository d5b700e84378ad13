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
