#!/usr/bin/env bash
# The project's whole test suite, exactly as CI runs it (see README.md).
# Formatting and lints first (cheap), then every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
