#!/usr/bin/env bash
# The project's whole test suite, exactly as CI runs it (see README.md):
# formatting and lints, the check that plugins/dist/ is what the plugin
# sources build (installing the wasm toolchain from Debian when missing),
# then every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all --check
scripts/build-plugins.sh --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
