"""RabbitMQ side of Sluice's tests, with pika (an AMQP client Sluice did not write).

    python3 rabbit.py setup PORTS EXCHANGE QUEUE...   # exchange + quorum queues, bound by name
    python3 rabbit.py consume PORTS OUT QUEUE...      # every message, as JSON lines in OUT

PORTS is a comma-separated list of AMQP ports on 127.0.0.1, tried in turn. `setup`
declares a durable topic exchange and, for each QUEUE, a durable quorum queue bound
with QUEUE as its routing key (anything there first is purged). `consume` writes one
line per message (queue, message id, properties, headers, body as text) and acknowledges it only once the
line is flushed; it reconnects to the next node when one goes away, so a node stopped
mid-test loses nothing (a message may then be delivered twice). It runs until killed.
"""

import json
import sys
import time

import pika


def connect(ports):
    last = None
    for _ in range(60):
        for port in ports:
            try:
                params = pika.ConnectionParameters(
                    host="127.0.0.1", port=port, heartbeat=10, blocked_connection_timeout=30,
                    connection_attempts=1, socket_timeout=5,
                )
                return pika.BlockingConnection(params)
            except Exception as e:  # noqa: BLE001 - any failure: try the next node
                last = e
        time.sleep(0.5)
    raise SystemExit(f"no RabbitMQ node on {ports} accepted a connection: {last}")


def setup(ports, exchange, queues):
    conn = connect(ports)
    ch = conn.channel()
    ch.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
    for q in queues:
        ch.queue_declare(queue=q, durable=True, arguments={"x-queue-type": "quorum"})
        ch.queue_purge(queue=q)
        ch.queue_bind(queue=q, exchange=exchange, routing_key=q)
    conn.close()


def text(v):
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def consume(ports, out, queues):
    with open(out, "a", encoding="utf-8") as f:
        while True:
            try:
                conn = connect(ports)
                ch = conn.channel()
                ch.basic_qos(prefetch_count=500)

                def on_message(ch, method, props, body, queue):
                    line = {
                        "queue": queue,
                        "message_id": props.message_id,
                        "content_type": props.content_type,
                        "delivery_mode": props.delivery_mode,
                        "headers": {k: text(v) for k, v in (props.headers or {}).items()},
                        "body": body.decode("utf-8", "replace"),
                    }
                    f.write(json.dumps(line) + "\n")
                    f.flush()
                    ch.basic_ack(delivery_tag=method.delivery_tag)

                for q in queues:
                    ch.basic_consume(
                        queue=q,
                        on_message_callback=lambda c, m, p, b, q=q: on_message(c, m, p, b, q),
                    )
                ch.start_consuming()
            except (pika.exceptions.AMQPError, OSError) as e:
                print(f"consumer: reconnecting after {e!r}", file=sys.stderr, flush=True)
                time.sleep(0.2)


def main():
    cmd, ports = sys.argv[1], [int(p) for p in sys.argv[2].split(",")]
    if cmd == "setup":
        setup(ports, sys.argv[3], sys.argv[4:])
    elif cmd == "consume":
        consume(ports, sys.argv[3], sys.argv[4:])
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
