#!/usr/bin/env bash
# Coverage-guided fuzzing of the binlog decoder (libFuzzer through cargo fuzz, stable
# toolchain, no sanitizer: the decoder has no unsafe code, so what it hunts is panics,
# hangs and memory blow-ups).
#
#   scripts/fuzz.sh [SECONDS]     # default 180; CI runs it bounded
#
# Seeds: every binary binlog file of ../shared/corpora (or $SLUICE_CORPORA) plus the
# inputs kept in agent/fuzz/regressions. Invariants enforced by libFuzzer: no input
# takes longer than 10 s (-timeout) or more than 512 MB (-rss_limit_mb, a small
# multiple of what the largest input can legally cost), and no panic. A finding is
# written to agent/fuzz/artifacts/ and fails the run; copy it into
# agent/fuzz/regressions/ and pin it in tests/tests/hostile_binlog.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-180}"
CORPORA="${SLUICE_CORPORA:-$(pwd)/../shared/corpora}"
[ -f "$CORPORA/INDEX.md" ] || { echo "fuzz.sh: binlog corpora not found at $CORPORA" >&2; exit 1; }
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz (one-time)" >&2
    cargo install cargo-fuzz --locked --version 0.13.2 >/dev/null
fi

WORK="${SLUICE_FUZZ_DIR:-$HOME/.cache/sluice/fuzz}"
SEEDS="$WORK/seeds"
mkdir -p "$SEEDS" "$WORK/corpus" agent/fuzz/artifacts
# Binary binlog files only (magic FE 62 69 6E), at most 1 MiB each; gzip ones inflated.
while IFS= read -r -d '' f; do
    name="$(echo "$f" | sed "s|$CORPORA/||; s|/|_|g")"
    case "$f" in
        *.gz) gzip -dc "$f" 2>/dev/null | head -c 1048576 >"$SEEDS/${name%.gz}" || true ;;
        *) if [ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')" = "fe62696e" ]; then
               head -c 1048576 "$f" >"$SEEDS/$name"
           fi ;;
    esac
done < <(find "$CORPORA" -path "$CORPORA/_derived" -prune -o -type f -print0)
cp agent/fuzz/regressions/* "$SEEDS/" 2>/dev/null || true
echo "fuzz.sh: $(ls "$SEEDS" | wc -l) seeds; fuzzing for ${SECS}s" >&2

cd agent
cargo fuzz build -O --sanitizer none decode_file
# The work corpus grows across runs on one machine (kept under ~/.cache); the seeds
# directory is read-only input.
START="$(date +%s)"
if ! cargo fuzz run -O --sanitizer none decode_file "$WORK/corpus" "$SEEDS" -- \
    -max_total_time="$SECS" -timeout=10 -rss_limit_mb=512 -max_len=1048576 \
    -print_final_stats=1 -artifact_prefix="$(pwd)/fuzz/artifacts/"; then
    # Print the finding itself, so a CI log alone is enough to reproduce it:
    #   base64 -d > f; cargo fuzz run -O --sanitizer none decode_file f
    find fuzz/artifacts -type f -newermt "@$START" -size -256k -print0 |
        while IFS= read -r -d '' f; do
            echo "fuzz.sh: finding $f, $(wc -c <"$f") bytes, base64:" >&2
            base64 -w0 "$f" >&2; echo >&2
        done
    exit 1
fi
