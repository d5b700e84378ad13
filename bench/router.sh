#!/usr/bin/env bash
# Router benchmark: canal-compat native vs WebAssembly (batch 1/100/1000), the full
# pipeline over a binlog file, and hot-swap latency. Uses the capture benchmark's binlog
# when present (bench/capture.sh writes it), else a corpus file.
#
#   bench/router.sh [BINLOG...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p sluice-bench -p sluice
target/release/sluice module build guest-examples/canal-compat --out target/modules --profile guest >/dev/null
FILES=("$@")
if [ ${#FILES[@]} -eq 0 ]; then
    DATA="$HOME/.cache/sluice/mariadb-13306/data"
    latest=$(ls -S "$DATA"/binlog.[0-9]* 2>/dev/null | head -1 || true)
    FILES=("${latest:-../shared/corpora/mysql-binlog-connector-java/src/test/resources/mysql-bin.sakila.gz}")
fi
echo "binlog: ${FILES[*]}"
target/release/router-bench target/modules/canal-compat.wasm "${FILES[@]}"
