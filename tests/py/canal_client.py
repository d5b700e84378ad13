"""Canal TCP client side of Sluice's tests, with canal-python 0.4 (a Canal client
Sluice did not write), run in its own venv (it needs protobuf 3.20.x).

    python canal_client.py PORT DESTINATION OUT MODE [ROWS]

Connects to 127.0.0.1:PORT without a password (canal-python sends its password
unhashed), subscribes to DESTINATION with client id 1001 and filter `.*\\..*`, and
writes one JSON line per row to OUT: logfileName, logfileOffset, schema, table, event
type, and every column (name, isKey, updated, isNull, value, sqlType, mysqlType) of the
before and after images. Begin/end entries are written as lines of their own.

MODE:
  ack        get_without_ack(100), write, ack: until ROWS rows were written (or forever
             without ROWS). OUT is flushed before each ack.
  async      the classic asynchronous-ack flow: the main thread fetches batches of 6
             entries (two 20-row transactions) without
             acking; a second thread acks each batch 0.3 s after it was fetched; after
             the third batch the main thread rolls back, so every batch not yet acked
             comes again. Rows are deduplicated by (logfileName, logfileOffset, row
             index) as Canal users do; a line is written only the first time. Stops
             after ROWS unique rows and writes `{"redelivered": N}` last.
  noack      fetches one batch of 100, writes it, and sleeps without acking (to be
             killed mid-batch).
"""

import json
import queue
import sys
import threading
import time

from canal.client import Client
from canal.protocol import EntryProtocol_pb2


def column(c):
    return {
        "name": c.name,
        "isKey": c.isKey,
        "updated": c.updated,
        "isNull": c.isNull,
        "value": c.value,
        "sqlType": c.sqlType,
        "mysqlType": c.mysqlType,
    }


def lines(entries):
    """One dict per row (and per begin/end entry), in order."""
    out = []
    for entry in entries:
        h = entry.header
        base = {
            "file": h.logfileName,
            "offset": h.logfileOffset,
            "schema": h.schemaName,
            "table": h.tableName,
            "eventType": h.eventType,
            "entryType": entry.entryType,
            "gtid": h.gtid,
        }
        if entry.entryType != EntryProtocol_pb2.EntryType.ROWDATA:
            out.append(base)
            continue
        change = EntryProtocol_pb2.RowChange()
        change.MergeFromString(entry.storeValue)
        for i, row in enumerate(change.rowDatas):
            line = dict(base)
            line["row"] = i
            line["isDdl"] = change.isDdl
            line["sql"] = change.sql
            line["before"] = [column(c) for c in row.beforeColumns]
            line["after"] = [column(c) for c in row.afterColumns]
            out.append(line)
        if not change.rowDatas:
            line = dict(base)
            line["row"] = -1
            line["isDdl"] = change.isDdl
            line["sql"] = change.sql
            out.append(line)
    return out


def connect(port, destination):
    client = Client()
    client.connect(host="127.0.0.1", port=port)
    client.check_valid(username=b"", password=b"")
    client.subscribe(client_id=b"1001", destination=destination.encode(), filter=b".*\\..*")
    return client


def rows_in(ls):
    return sum(1 for l in ls if l.get("row", -1) >= 0)


def mode_ack(client, out, want):
    n = 0
    with open(out, "a", encoding="utf-8") as f:
        while want is None or n < want:
            m = client.get_without_ack(100)
            if not m["id"]:
                time.sleep(0.05)
                continue
            ls = lines(m["entries"])
            for l in ls:
                f.write(json.dumps(l) + "\n")
            f.flush()
            client.ack(m["id"])
            n += rows_in(ls)


def mode_async(client, out, want):
    acks = queue.Queue()
    lock = threading.Lock()
    # Bumped by each rollback: an ack queued before it names a batch that no longer
    # exists (acking it would be an error the server closes the connection for).
    generation = [0]

    def acker():
        while True:
            item = acks.get()
            if item is None:
                return
            fetched_at, batch, gen = item
            time.sleep(max(0.0, fetched_at + 0.3 - time.time()))
            with lock:
                if gen == generation[0]:
                    client.ack(batch)

    t = threading.Thread(target=acker, daemon=True)
    t.start()
    seen = set()
    redelivered = 0
    batches = 0
    rolled_back = False
    with open(out, "a", encoding="utf-8") as f:
        while len(seen) < want:
            with lock:
                m = client.get_without_ack(6)
            if not m["id"]:
                time.sleep(0.05)
                continue
            batches += 1
            for l in lines(m["entries"]):
                if l.get("row", -1) < 0:
                    continue
                key = (l["file"], l["offset"], l["row"])
                if key in seen:
                    redelivered += 1
                    continue
                seen.add(key)
                f.write(json.dumps(l) + "\n")
            f.flush()
            if batches == 3 and not rolled_back:
                # The ack thread has not acked these yet: every unacked batch comes again.
                rolled_back = True
                with lock:
                    # Drain queued acks first: they name batches the rollback cancels.
                    while not acks.empty():
                        acks.get_nowait()
                    generation[0] += 1
                    client.rollback(0)
                continue
            acks.put((time.time(), m["id"], generation[0]))
        acks.put(None)
        t.join()
        f.write(json.dumps({"redelivered": redelivered}) + "\n")


def mode_noack(client, out):
    with open(out, "a", encoding="utf-8") as f:
        while True:
            m = client.get_without_ack(100)
            if m["id"]:
                for l in lines(m["entries"]):
                    f.write(json.dumps(l) + "\n")
                f.flush()
                break
            time.sleep(0.05)
    time.sleep(3600)


def main():
    port, destination, out, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    want = int(sys.argv[5]) if len(sys.argv) > 5 else None
    client = connect(port, destination)
    if mode == "ack":
        mode_ack(client, out, want)
    elif mode == "async":
        mode_async(client, out, want)
    elif mode == "noack":
        mode_noack(client, out)
    else:
        raise SystemExit(f"unknown mode {mode}")
    client.disconnect()


if __name__ == "__main__":
    main()
