#!/usr/bin/env bash
# Builds every plugin crate (crate-type cdylib) under plugins/ to a WebAssembly component:
#   plugins/dist/<crate>.wasm, plugins/dist/SHA256SUMS, plugins/dist/BUILD-INFO.
#
#   scripts/build-plugins.sh           build and write plugins/dist/
#   scripts/build-plugins.sh --check   build into a temporary directory and fail
#                                      if plugins/dist/ is not what the source builds
#
# Each crate is built by `duplex plugin build`, the command plugin vendors use:
# rustup's wasm32-unknown-unknown target when it is installed, otherwise
# Debian's rustc-web with std rebuilt (-Zbuild-std) and wasm-ld-22. The Debian
# packages are installed first when neither route is there
# (scripts/install-wasm-toolchain.sh).
# Output is byte-for-byte reproducible for a given compiler: paths are remapped,
# and the compiler used is recorded in BUILD-INFO.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DIST="$ROOT/plugins/dist"
TARGET_DIR=${DUPLEX_WASM_TARGET_DIR:-$ROOT/target/wasm}
MODE=build
case "${1:-}" in
  "") ;;
  --check) MODE=check ;;
  -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

say() { echo "build-plugins: $*" >&2; }
die() { say "$*"; exit 1; }

"$ROOT/scripts/install-wasm-toolchain.sh"

# duplex, as the test suite builds it (so this costs that nothing more).
say "building duplex"
cargo build -q --locked -p duplex
DUPLEX=${CARGO_TARGET_DIR:-$ROOT/target}/debug/duplex

crates=()
for manifest in "$ROOT"/plugins/*/Cargo.toml; do
  # Plugins are the cdylib crates; others (e.g. sim-world) are shared libraries.
  grep -q '"cdylib"' "$manifest" && crates+=("$(basename "$(dirname "$manifest")")")
done
((${#crates[@]})) || die "no plugin crates under plugins/"

OUT=$DIST
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ $MODE == check ]]; then
  OUT=$work/dist
fi
mkdir -p "$OUT" "$TARGET_DIR"

say "compiling ${crates[*]}"
for c in "${crates[@]}"; do
  CARGO_TARGET_DIR=$TARGET_DIR "$DUPLEX" --output json plugin build --locked --quiet \
    "$ROOT/plugins/$c" -o "$OUT/$c.wasm" > "$work/$c.json"
done

# A field of what `duplex plugin build --output json` printed (one per line).
field() { sed -n "s/^  \"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" "$work/${crates[0]}.json"; }
COMPILER=$(field compiler)
info() {
  echo "compiler: $COMPILER"
  echo "route: $(field route)"
  echo "target: $(field target)"
  echo "profile: $(field profile) (Cargo.toml)"
  echo "componentizer: $(field componentizer)"
}
(cd "$OUT" && sha256sum -- *.wasm > SHA256SUMS)
info > "$OUT/BUILD-INFO"

if [[ $MODE == build ]]; then
  say "wrote plugins/dist with $COMPILER:"
  sed 's/^/    /' "$OUT/SHA256SUMS" >&2
  exit 0
fi

# --- check -----------------------------------------------------------------
recorded=$(sed -n 's/^compiler: //p' "$DIST/BUILD-INFO" 2>/dev/null || true)
if [[ -n $recorded && "$recorded" != "$COMPILER" ]]; then
  say "cannot check plugins/dist: it was built with"
  say "    $recorded"
  say "but this machine's compiler for wasm32-unknown-unknown is"
  say "    $COMPILER"
  say "so the bytes cannot match. Check on a machine with the recorded compiler,"
  say "or rebuild with scripts/build-plugins.sh and commit plugins/dist."
  exit 3
fi
status=0
for f in SHA256SUMS BUILD-INFO; do
  if ! cmp -s "$OUT/$f" "$DIST/$f" 2>/dev/null; then
    status=1
    say "plugins/dist/$f differs from what the source builds:"
    diff -u "$DIST/$f" "$OUT/$f" | sed 's/^/    /' >&2 || true
  fi
done
for f in "$DIST"/*.wasm; do
  [[ -e $f ]] || continue
  [[ -e $OUT/$(basename "$f") ]] || { status=1; say "plugins/dist/$(basename "$f") has no crate under plugins/"; }
done
if ((status)); then
  say "plugins/dist is stale: run scripts/build-plugins.sh and commit plugins/dist."
  exit 1
fi
say "plugins/dist matches the source (${crates[*]}; $COMPILER)"
