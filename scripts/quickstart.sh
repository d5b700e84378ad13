#!/usr/bin/env bash
# Quick start: a throwaway local MariaDB, the agent and the canal-compat module built
# from this checkout, `sluice run` publishing to a local JSON-lines sink (or to a
# throwaway three-node RabbitMQ cluster, or a throwaway RocketMQ name server and
# broker), sample transactions written, and the routed messages shown.
#
#   scripts/quickstart.sh            # JSON-lines file
#   scripts/quickstart.sh rabbitmq   # RabbitMQ: exchange `quickstart`, one quorum queue
#   scripts/quickstart.sh rocketmq   # RocketMQ: topics `example` and `shop_orders`
set -euo pipefail
cd "$(dirname "$0")/.."
SINK="${1:-file}"
case "$SINK" in
    file | rabbitmq | rocketmq) ;;
    *) echo "usage: $0 [file|rabbitmq|rocketmq]" >&2; exit 2 ;;
esac

scripts/mariadb.sh start
eval "$(scripts/mariadb.sh env)"
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
cargo build --release --quiet --bin sluice
SLUICE="$PWD/target/release/sluice"
"$SLUICE" module build guest-examples/canal-compat --out target/modules --profile guest >/dev/null

WORK="$(mktemp -d)"
trap 'kill "$agent" 2>/dev/null || true; rm -rf "$WORK"' EXIT

if [ "$SINK" = rabbitmq ]; then
    scripts/rabbitmq.sh start
    MGMT="$(scripts/rabbitmq.sh management)"
    api() { curl -sS -f -u guest:guest -H 'content-type: application/json' "$@"; }
    # A quorum queue bound for every routing key. Sluice declares the exchange itself;
    # queues and bindings belong to the consumers' deployment.
    api -X PUT "$MGMT/api/exchanges/%2F/quickstart" -d '{"type":"topic","durable":true}'
    api -X PUT "$MGMT/api/queues/%2F/quickstart" \
        -d '{"durable":true,"arguments":{"x-queue-type":"quorum"}}'
    api -X POST "$MGMT/api/bindings/%2F/e/quickstart/q/quickstart" -d '{"routing_key":"#"}'
    api -X DELETE "$MGMT/api/queues/%2F/quickstart/contents" || true
    SINK_TOML="[sink]
kind = \"rabbitmq\"
[sink.rabbitmq]
addresses = [$(scripts/rabbitmq.sh ports | sed 's/[0-9]*/\"127.0.0.1:&\"/g')]
exchange = \"quickstart\"
routing_key = \"{topic}.{partition}\"
management_url = \"$MGMT\""
elif [ "$SINK" = rocketmq ]; then
    scripts/rocketmq.sh start
    NAMESRV="$(scripts/rocketmq.sh namesrv)"
    # rmq: the tests' rocketmq-client-rust helper, to create the topics (RocketMQ never
    # creates one on a send here) and read them back.
    cargo build --release --quiet -p sluice-tests --bin rmq
    RMQ="$PWD/target/release/rmq"
    # Canal's names: the dynamic topic shop.orders publishes as shop_orders.
    for t in example shop_orders; do "$RMQ" create "$NAMESRV" SluiceCluster "$t" 4; done
    SINK_TOML="[sink]
kind = \"rocketmq\"
[sink.rocketmq]
namesrv = [\"$NAMESRV\"]
cluster = \"SluiceCluster\"
tag = \"quickstart\""
else
    SINK_TOML="[sink]
kind = \"file\"
path = \"$WORK/messages.jsonl\""
fi
cat >"$WORK/sluice.toml" <<TOML
[source]
host = "127.0.0.1"
port = $SLUICE_MYSQL_PORT
user = "$SLUICE_MYSQL_USER"
password_env = "SLUICE_MYSQL_PASSWORD"
server_id = 1000099
start = "latest"

[[modules]]
name = "canal"
file = "$PWD/target/modules/canal-compat.wasm"
[modules.config]
"canal.mq.topic" = "example"
"canal.mq.dynamicTopic" = 'shop\..*'
"canal.mq.partitionsNum" = "4"
"canal.mq.partitionHash" = '.*\..*:\$pk\$'

$SINK_TOML

[checkpoint]
path = "$WORK/sluice.checkpoint"
TOML

client() {
    mariadb --no-defaults --protocol=tcp -h 127.0.0.1 -P "$SLUICE_MYSQL_PORT" \
        -u"$SLUICE_MYSQL_ADMIN_USER" -p"$SLUICE_MYSQL_ADMIN_PASSWORD" "$@"
}

SLUICE_MYSQL_PASSWORD="$SLUICE_MYSQL_PASSWORD" "$SLUICE" run -c "$WORK/sluice.toml" 2>"$WORK/agent.log" &
agent=$!
for _ in $(seq 1 100); do grep -q "Replicating" "$WORK/agent.log" && break; sleep 0.1; done

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

sleep 2
kill -TERM "$agent"; wait "$agent" || true
echo "--- agent log ---"
cat "$WORK/agent.log"
if [ "$SINK" = rabbitmq ]; then
    echo "--- messages in quorum queue \`quickstart\` (routing key, AMQP properties, Canal FlatMessage) ---"
    api -X POST "$MGMT/api/queues/%2F/quickstart/get" \
        -d '{"count":100,"ackmode":"ack_requeue_false","encoding":"auto"}' |
        python3 -c 'import json,sys
for m in json.load(sys.stdin):
    p = m["properties"]
    print(json.dumps({"routing_key": m["routing_key"], "message_id": p.get("message_id"),
                      "headers": p.get("headers"), "value": json.loads(m["payload"])},
                     ensure_ascii=False))'
elif [ "$SINK" = rocketmq ]; then
    echo "--- messages in RocketMQ (topic, queue, offset, tag, key, properties, Canal FlatMessage) ---"
    for t in example shop_orders; do
        "$RMQ" dump "$NAMESRV" "$t" '*' "$WORK/$t.jsonl" 2000 2>/dev/null
        cat "$WORK/$t.jsonl" 2>/dev/null || true
    done
else
    echo "--- messages routed by the canal-compat module (topic, partition, headers, Canal FlatMessage) ---"
    cat "$WORK/messages.jsonl"
fi
echo "--- checkpoint ---"
cat "$WORK/sluice.checkpoint"
