#!/usr/bin/env bash
# Capture decode throughput: Sluice vs a naive mysql_common decode vs
# python-mysql-replication, on the same binlog, in one run.
#
#   bench/capture.sh [ROWS]     (default 1000000)
#
# Writes ROWS rows of 10 mixed columns into the throwaway MariaDB (fresh binlog files),
# then runs each decoder in its own process under /usr/bin/time (wall, CPU, peak RSS):
# offline over the binlog files, and live over the replication protocol from the same
# start position. Ratios are against the naive mysql_common decode of the same mode.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-1000000}"

scripts/mariadb.sh start >/dev/null
eval "$(scripts/mariadb.sh env)"
export SLUICE_MYSQL_PORT SLUICE_MYSQL_USER SLUICE_MYSQL_PASSWORD
DATA="${SLUICE_MARIADB_DIR:-$HOME/.cache/sluice/mariadb-$SLUICE_MYSQL_PORT}/data"
cargo build --release --quiet -p sluice-bench
BIN=target/release/capture-bench

VENV="$HOME/.cache/sluice/bench-venv"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "mysql-replication==1.0.9"
fi

sql() {
    mariadb --no-defaults --protocol=tcp -h 127.0.0.1 -P "$SLUICE_MYSQL_PORT" \
        -u"$SLUICE_MYSQL_ADMIN_USER" -p"$SLUICE_MYSQL_ADMIN_PASSWORD" -N -B "$@"
}

sql -e "CREATE DATABASE IF NOT EXISTS bench; DROP TABLE IF EXISTS bench.t10;
CREATE TABLE bench.t10 (id BIGINT PRIMARY KEY, a INT, b BIGINT, c VARCHAR(32), d DECIMAL(12,2),
  e DATETIME(3), f DOUBLE, g TINYINT, h VARCHAR(64), i DATE) DEFAULT CHARSET=utf8mb4;
FLUSH BINARY LOGS;"
read -r FILE POS _ < <(sql -e "SHOW MASTER STATUS")
echo "writing $ROWS rows from $FILE:$POS ..." >&2
BATCH=10000
for ((s = 1; s <= ROWS; s += BATCH)); do
    e=$((s + BATCH - 1)); [ "$e" -gt "$ROWS" ] && e=$ROWS
    echo "INSERT INTO bench.t10 SELECT seq, seq * 7, seq * 1000003, CONCAT('name-', seq),
      seq / 100, '2024-01-01 00:00:00' + INTERVAL seq SECOND, seq / 3, seq % 128, MD5(seq),
      '2024-01-01' + INTERVAL (seq % 1000) DAY FROM bench.seq_${s}_to_${e};"
done | sql
sql -e "FLUSH BINARY LOGS"
# The files holding the rows: from FILE up to (not including) the newest.
mapfile -t ALL < <(sql -e "SHOW BINARY LOGS" | awk '{print $1}')
FILES=()
on=0
for f in "${ALL[@]::${#ALL[@]}-1}"; do
    [ "$f" = "$FILE" ] && on=1
    [ "$on" = 1 ] && FILES+=("$DATA/$f")
done
BYTES=$(du -cb "${FILES[@]}" | tail -1 | cut -f1)
echo "binlog: ${#FILES[@]} file(s), $((BYTES / 1048576)) MiB" >&2

run() { # name cmd...
    local name=$1; shift
    local out t
    t=$(mktemp)
    out=$(/usr/bin/time -f "%e %U %S %M" -o "$t" "$@")
    read -r wall user sys rss <"$t"
    rm -f "$t"
    local rows secs
    rows=$(sed -n 's/.*rows=\([0-9]*\).*/\1/p' <<<"$out")
    echo "$name $rows $wall $user $sys $rss"
}

RESULTS=$(mktemp)
{
    run "sluice-file" "$BIN" sluice-file "${FILES[@]}"
    run "naive-mysql_common-file" "$BIN" naive-file "${FILES[@]}"
    run "sluice-live" "$BIN" sluice-live "$FILE:$POS" "$ROWS"
    run "naive-mysql_common-live" "$BIN" naive-live "$FILE:$POS" "$ROWS"
    run "python-mysql-replication-live" "$VENV/bin/python" bench/pyrepl.py "$FILE:$POS" "$ROWS"
} >"$RESULTS"

echo
echo "capture decode, $ROWS rows x 10 columns, $((BYTES / 1048576)) MiB of binlog (MariaDB $(sql -e 'SELECT VERSION()'))"
awk '
{ name[NR]=$1; rows[NR]=$2; wall[NR]=$3; cpu[NR]=$4+$5; rss[NR]=$6 }
$1=="naive-mysql_common-file" { base_file=$2/($4+$5) }
$1=="naive-mysql_common-live" { base_live=$2/($4+$5) }
END {
  printf "%-30s %9s %8s %8s %12s %14s %9s %9s\n", "decoder", "rows", "wall s", "cpu s", "rows/s wall", "rows/cpu-s", "RSS MiB", "x naive"
  for (i=1;i<=NR;i++) {
    rc = rows[i]/cpu[i]
    base = (name[i] ~ /file/) ? base_file : base_live
    printf "%-30s %9d %8.2f %8.2f %12.0f %14.0f %9.1f %9.2f\n", name[i], rows[i], wall[i], cpu[i], rows[i]/wall[i], rc, rss[i]/1024, rc/base
  }
}' "$RESULTS"
rm -f "$RESULTS"
