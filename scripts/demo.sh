#!/usr/bin/env bash
# The README's first command: a complete upgrade of the built-in simulated
# fault-tolerant server, on a fresh machine with Rust. It installs what the
# build needs (scripts/install-build-deps.sh: protoc, for the fleet's etcd
# client) when missing, then runs `duplex apply policies/demo.yaml` with its
# state in /tmp/duplex-demo (or the state dir given as the first argument).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh
exec cargo run -q -p duplex -- --state-dir "${1:-/tmp/duplex-demo}" apply policies/demo.yaml
