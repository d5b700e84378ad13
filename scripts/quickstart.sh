#!/usr/bin/env bash
# Quick start: a throwaway local MariaDB, the agent built from this checkout, live
# capture of a few sample transactions printed as Canal FlatMessage JSON lines.
#
#   scripts/quickstart.sh [--format debezium]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/mariadb.sh start
eval "$(scripts/mariadb.sh env)"
cargo build --release --quiet --bin sluice
SLUICE=target/release/sluice

client() {
    mariadb --no-defaults --protocol=tcp -h 127.0.0.1 -P "$SLUICE_MYSQL_PORT" \
        -u"$SLUICE_MYSQL_ADMIN_USER" -p"$SLUICE_MYSQL_ADMIN_PASSWORD" "$@"
}

out=$(mktemp)
trap 'rm -f "$out"' EXIT
SLUICE_MYSQL_PASSWORD="$SLUICE_MYSQL_PASSWORD" "$SLUICE" tail \
    --host 127.0.0.1 --port "$SLUICE_MYSQL_PORT" --user "$SLUICE_MYSQL_USER" \
    --server-id 1000099 --start latest --limit 6 "$@" >"$out" &
agent=$!
sleep 1

client <<'SQL'
CREATE DATABASE IF NOT EXISTS shop;
DROP TABLE IF EXISTS shop.orders;
CREATE TABLE shop.orders (
  id BIGINT PRIMARY KEY, customer VARCHAR(64), amount DECIMAL(12,2),
  status ENUM('new','paid','shipped'), created TIMESTAMP(3) DEFAULT CURRENT_TIMESTAMP(3)
);
START TRANSACTION;
INSERT INTO shop.orders (id, customer, amount, status) VALUES (1, 'Zoë', 19.90, 'new'), (2, '王芳', 250.00, 'new');
UPDATE shop.orders SET status = 'paid' WHERE id = 1;
COMMIT;
UPDATE shop.orders SET id = 3 WHERE id = 2;
DELETE FROM shop.orders WHERE id = 1;
SQL

wait "$agent" || true
echo "--- changes captured by sluice (one JSON object per rows event or DDL) ---"
cat "$out"
