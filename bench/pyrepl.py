"""python-mysql-replication baseline: read WANT rows from FILE:POS (blocking=True, which
MariaDB needs to deliver every row), converting rows to Python values as the library does."""
import os
import sys
import time

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

start, want = sys.argv[1], int(sys.argv[2])
log_file, log_pos = start.rsplit(":", 1)
settings = {
    "host": "127.0.0.1",
    "port": int(os.environ["SLUICE_MYSQL_PORT"]),
    "user": os.environ["SLUICE_MYSQL_USER"],
    "passwd": os.environ["SLUICE_MYSQL_PASSWORD"],
}
t = time.time()
stream = BinLogStreamReader(
    connection_settings=settings,
    server_id=4900003,
    log_file=log_file,
    log_pos=int(log_pos),
    resume_stream=True,
    blocking=True,
    is_mariadb=True,
    only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
)
n = 0
for ev in stream:
    n += len(ev.rows)
    if n >= want:
        break
stream.close()
print(f"rows={n} secs={time.time() - t:.3f}")
