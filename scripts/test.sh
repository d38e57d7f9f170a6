#!/usr/bin/env bash
# The project's whole test suite, exactly as CI runs it (see README.md):
# formatting and lints, the check that plugins/dist/ is what the plugin
# sources build (installing the wasm toolchain from Debian when missing),
# then every test of the workspace, with a one-line total at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

# A fresh CI clone builds everything once: incremental caches would only cost
# disk (2+ GB) and time there.
if [ "${CI:-}" = true ]; then
    export CARGO_INCREMENTAL=0
fi

cargo fmt --all --check
scripts/install-test-deps.sh
scripts/build-plugins.sh --check
cargo clippy --workspace --all-targets --locked -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Every test binary runs even when one fails, so one CI run shows every
# failure; the script still fails.
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# cargo prints one "test result:" line per test binary; the last of them is
# often a crate with no doc tests, so say the total plainly.
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
exit "$status"
