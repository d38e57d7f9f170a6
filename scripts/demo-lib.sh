# Sourced by the demo scripts: the repository, `--keep`, a built `duplex`,
# and Debian's python3 (the scripts' helpers use its standard library only).
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
keep=false
[ "${1:-}" = --keep ] && keep=true

"$repo/scripts/install-build-deps.sh"
cargo build -q -p duplex --manifest-path "$repo/Cargo.toml"
duplex=${CARGO_TARGET_DIR:-$repo/target}/debug/duplex
python=/usr/bin/python3
