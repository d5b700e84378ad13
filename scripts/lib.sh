# Shell helpers the service scripts share (sourced, not run).

# Stops the process whose pid is in file $1: TERM, up to $2 tenths of a second (default
# 50) for it to exit, then KILL; removes the file. Nothing to do without the file.
stop_pidfile() {
    local pidfile="$1" tenths="${2:-50}" pid
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 "$tenths"); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

# Runs a command as root (directly, or through non-interactive sudo).
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

# Installs Debian packages, without starting their system services (RUNLEVEL=1).
apt_install() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
