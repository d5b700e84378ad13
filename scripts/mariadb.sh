#!/usr/bin/env bash
# Throwaway MariaDB for Sluice's tests, benchmarks and quick start.
#
# Idempotent and non-interactive. Installs mariadb-server from Debian packages if it is
# missing, keeps a private datadir (never the system service), listens on 127.0.0.1 on
# its own port and socket, and writes row-based binlogs with full metadata and CRC32.
#
#   scripts/mariadb.sh start|stop|status|restart|env|wipe
#
# Environment: SLUICE_MARIADB_DIR (default ~/.cache/sluice/mariadb-$PORT),
#              SLUICE_MARIADB_PORT (default 13306).
set -euo pipefail

PORT="${SLUICE_MARIADB_PORT:-13306}"
DIR="${SLUICE_MARIADB_DIR:-$HOME/.cache/sluice/mariadb-$PORT}"
DATA="$DIR/data"
SOCK="$DIR/mariadb.sock"
PIDFILE="$DIR/mariadb.pid"
LOG="$DIR/mariadb.err"
REPL_USER="sluice"
REPL_PASS="sluice-repl"

log() { echo "mariadb.sh: $*" >&2; }
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ensure_installed() {
    if command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ]; then
        return
    fi
    log "installing mariadb-server from Debian packages"
    apt_install mariadb-server mariadb-client
}

mariadbd_bin() { command -v mariadbd 2>/dev/null || echo /usr/sbin/mariadbd; }

client() { mariadb --no-defaults --protocol=socket -S "$SOCK" -uroot "$@"; }

running() {
    [ -S "$SOCK" ] && client -e 'SELECT 1' >/dev/null 2>&1
}

write_config() {
    mkdir -p "$DIR"
    cat >"$DIR/my.cnf" <<CNF
[mariadbd]
datadir=$DATA
socket=$SOCK
pid-file=$PIDFILE
port=$PORT
bind-address=127.0.0.1
log-error=$LOG
skip-name-resolve
server_id=1
log_bin=$DATA/binlog
binlog_format=ROW
binlog_row_image=FULL
binlog_row_metadata=FULL
binlog_checksum=CRC32
max_allowed_packet=64M
innodb_buffer_pool_size=256M
innodb_log_file_size=256M
innodb_flush_log_at_trx_commit=2
sync_binlog=0
max_binlog_size=256M
character_set_server=utf8mb4
collation_server=utf8mb4_general_ci
default_time_zone='+00:00'
CNF
}

start() {
    ensure_installed
    if running; then
        log "already running on 127.0.0.1:$PORT (datadir $DATA)"
        return
    fi
    write_config
    local user_flag=()
    [ "$(id -u)" = 0 ] && user_flag=(--user=root)
    if [ ! -d "$DATA/mysql" ]; then
        log "initialising datadir $DATA"
        mariadb-install-db --defaults-file="$DIR/my.cnf" "${user_flag[@]}" \
            --auth-root-authentication-method=socket --skip-test-db >"$DIR/install.log" 2>&1 \
            || { cat "$DIR/install.log" >&2; exit 1; }
    fi
    "$(mariadbd_bin)" --defaults-file="$DIR/my.cnf" "${user_flag[@]}" >>"$DIR/stdout.log" 2>&1 &
    for _ in $(seq 1 200); do
        running && break
        sleep 0.1
    done
    if ! running; then
        log "server did not come up; last lines of $LOG:"
        tail -n 30 "$LOG" >&2 || true
        exit 1
    fi
    # The replication user is created without writing to the binlog so tests see only their own events.
    client <<SQL
SET sql_log_bin=0;
CREATE USER IF NOT EXISTS '$REPL_USER'@'127.0.0.1' IDENTIFIED BY '$REPL_PASS';
GRANT REPLICATION SLAVE, REPLICATION CLIENT, BINLOG MONITOR, SELECT ON *.* TO '$REPL_USER'@'127.0.0.1';
CREATE USER IF NOT EXISTS 'sluice_admin'@'127.0.0.1' IDENTIFIED BY 'sluice-admin';
GRANT ALL PRIVILEGES ON *.* TO 'sluice_admin'@'127.0.0.1' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
    log "running on 127.0.0.1:$PORT (datadir $DATA)"
}

stop() {
    stop_pidfile "$PIDFILE" 300
    log "stopped"
}

status() {
    if running; then
        echo "running on 127.0.0.1:$PORT (datadir $DATA)"
    else
        echo "not running"
        return 3
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) status ;;
    env)
        echo "SLUICE_MYSQL_HOST=127.0.0.1"
        echo "SLUICE_MYSQL_PORT=$PORT"
        echo "SLUICE_MYSQL_USER=$REPL_USER"
        echo "SLUICE_MYSQL_PASSWORD=$REPL_PASS"
        echo "SLUICE_MYSQL_ADMIN_USER=sluice_admin"
        echo "SLUICE_MYSQL_ADMIN_PASSWORD=sluice-admin"
        echo "SLUICE_MYSQL_SOCKET=$SOCK"
        ;;
    wipe) stop; rm -rf "$DIR"; log "wiped $DIR" ;;
    pid) cat "$PIDFILE" ;;
    *) echo "usage: $0 start|stop|restart|status|env|wipe|pid" >&2; exit 2 ;;
esac
