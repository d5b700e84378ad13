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
