#!/usr/bin/env bash
# Runs the fuzz targets, one after the other, each for SECONDS (default 30), starting from the
# seeds in fuzz/seeds/<target> (from tests/fixtures/scim) and growing fuzz/corpus/<target>
# (not kept in git). Needs the nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`). A crash stops the run; its input is in fuzz/artifacts/.
#
#   bash fuzz/run.sh [SECONDS] [TARGET...]
#
# No sanitizer: the crate forbids unsafe code, so what a run looks for is a panic, a stack
# overflow, a hang or unbounded memory, and without ASan a run reaches about twice the
# executions. Debug assertions (and so overflow checks) are on.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(filter patch resource etag token_header)
fi
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    echo "== fuzz $t for ${secs}s"
    cargo +nightly fuzz run --sanitizer none --debug-assertions "$t" \
        "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
done
