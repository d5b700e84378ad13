#!/usr/bin/env bash
# The test command: formatting, lints, unit tests, corpus tests, module tests, and live
# tests against a fresh throwaway MariaDB, a local Kafka-protocol broker, a three-node
# RabbitMQ cluster and a RocketMQ name server and broker (all started here; a test that
# cannot reach them fails).
# Installs what a fresh machine lacks first (idempotent, cached under ~/.cache/sluice).
#
#   scripts/test.sh            # everything
#   SLUICE_KEEP_DB=1 scripts/test.sh   # reuse the running test server instead of a fresh one
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
source scripts/lib.sh

# Guest modules build for these targets; fmt and clippy are part of the run.
if command -v rustup >/dev/null 2>&1; then
    rustup target add wasm32-unknown-unknown wasm32-wasip2 >/dev/null 2>&1 \
        || echo "test.sh: warning: could not add the wasm targets" >&2
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
# Prometheus from Debian packages: the operability test scrapes the agent with it.
command -v prometheus >/dev/null 2>&1 || apt_install prometheus
# systemd-analyze checks the shipped systemd unit (cli test).
command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd

if [ "${SLUICE_KEEP_DB:-0}" != 1 ]; then
    scripts/mariadb.sh wipe >/dev/null 2>&1 || true
fi
scripts/mariadb.sh start
# The Kafka-protocol broker (installed into ~/.cache/sluice/tansu on first use).
scripts/tansu.sh start
# A three-node RabbitMQ cluster (Debian's rabbitmq-server, installed when missing), and
# pika, the independent AMQP client the RabbitMQ tests read back with.
scripts/rabbitmq.sh start
python3 -c 'import pika' 2>/dev/null || python3 -m pip install --quiet pika
# The RocketMQ name server and broker (installed into ~/.cache/sluice/rocketmq on
# first use, ~17 minutes; a fresh store whenever they were not running).
# Restarted on an empty store, as MariaDB is wiped above: topics must not hold an earlier
# run's messages at binlog positions this run reuses.
scripts/rocketmq.sh restart
# canal-python 0.4, the independent Canal TCP client the Canal server tests read back
# with, in a venv of its own: it needs protobuf 3.20.x.
CANAL_VENV="${SLUICE_CANAL_VENV:-$HOME/.cache/sluice/canal-venv}"
if ! "$CANAL_VENV/bin/python" -c 'import canal.client' 2>/dev/null; then
    python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
    python3 -m venv "$CANAL_VENV"
    "$CANAL_VENV/bin/pip" install --quiet canal-python==0.4 'protobuf==3.20.3'
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
# The integration tests run the `sluice` binary as operators do; `cargo test` builds
# only test harnesses, so build the binary first.
cargo build --workspace --bins --locked
# Integration test binaries run one after another; the ones that restart the server or
# change its global settings are single test functions.
cargo test --workspace --locked
# A bounded coverage-guided fuzz pass over the binlog decoder (a finding fails the run).
scripts/fuzz.sh "${SLUICE_FUZZ_SECS:-120}"
