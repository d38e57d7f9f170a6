#!/usr/bin/env bash
# Builds every plugin crate (crate-type cdylib) under plugins/ to a WebAssembly component:
#   plugins/dist/<crate>.wasm, plugins/dist/SHA256SUMS, plugins/dist/BUILD-INFO;
# and every Python plugin (plugins/py-*, with a duplex-plugin.toml) with
# componentize-py (scripts/install-plugin-toolchain-python.sh installs it):
#   plugins/dist/<name>.wasm, its SHA256SUMS line, and plugins/dist/SOURCES.
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
# Rust output is byte-for-byte reproducible for a given compiler: paths are
# remapped, and the compiler used is recorded in BUILD-INFO. componentize-py's
# is not (the CPython heap it snapshots differs from run to run), so the
# Python components are committed as built, and plugins/dist/SOURCES records
# the sha256 of the sources each was built from (the project with the SDK and
# WIT its symlinks reach, without __pycache__) and the componentize-py that
# built it: --check builds them (they must still build) and fails when the
# sources or the toolchain differ from what SOURCES says, or a component
# differs from its SHA256SUMS line.
# JavaScript plugins (plugins/js-*, a package.json) are built by
# scripts/build-plugins-js.sh, called from here: their components are committed
# (componentize-js is not reproducible either) and checked against their
# sources (plugins/dist/SOURCES-js).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DIST="$ROOT/plugins/dist"
TARGET_DIR=${DUPLEX_WASM_TARGET_DIR:-$ROOT/target/wasm}
MODE=build
case "${1:-}" in
  "") ;;
  --check) MODE=check ;;
  -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

say() { echo "build-plugins: $*" >&2; }
die() { say "$*"; exit 1; }

"$ROOT/scripts/install-wasm-toolchain.sh"
"$ROOT/scripts/install-plugin-toolchain-python.sh"

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
pythons=()
for marker in "$ROOT"/plugins/*/duplex-plugin.toml; do
  [[ -e $marker ]] || continue
  grep -q '^language = "python"' "$marker" && pythons+=("$(basename "$(dirname "$marker")")")
done

# The sha256 of a Python plugin's sources: every file its directory reaches,
# symlinks followed (the SDK in vendor/, the contract in wit/deps/), by
# relative path, without bytecode caches or built output.
sources_sha256() {
  (cd "$ROOT/plugins/$1" &&
    find -L . -type f ! -path '*/__pycache__/*' ! -path './dist/*' -print0 |
    LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
}

OUT=$DIST
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ $MODE == check ]]; then
  OUT=$work/dist
fi
mkdir -p "$OUT" "$TARGET_DIR"

# JavaScript plugins: rebuilt when their sources changed (build), or their
# recorded source digest checked (check); their committed components count
# in SHA256SUMS as they are.
js_plugins=()
for manifest in "$ROOT"/plugins/*/package.json; do
  [[ -e $manifest ]] && grep -q '"duplex"' "$manifest" && js_plugins+=("$(basename "$(dirname "$manifest")")")
done
if [[ $MODE == check ]]; then
  "$ROOT/scripts/build-plugins-js.sh" --check || exit 1
  for p in "${js_plugins[@]}"; do cp "$DIST/$p.wasm" "$OUT/$p.wasm"; done
else
  "$ROOT/scripts/build-plugins-js.sh"
fi

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
PY_OUT=$OUT
[[ $MODE == check ]] && PY_OUT=$work/python
mkdir -p "$PY_OUT"
sources=()
for p in "${pythons[@]}"; do
  say "building $p with componentize-py"
  "$DUPLEX" --output json plugin build --quiet "$ROOT/plugins/$p" -o "$PY_OUT/$p.wasm" > "$work/$p.json"
  builder=$(sed -n 's/^  "componentizer": "\(.*\)",\{0,1\}$/\1/p' "$work/$p.json")
  sources+=("$(sources_sha256 "$p")  $p.wasm  $builder")
done

(cd "$OUT" && sha256sum -- *.wasm > SHA256SUMS)
[[ $MODE == build ]] && printf '%s\n' "${sources[@]}" > "$OUT/SOURCES"
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
# The Rust components: rebuilt, byte for byte.
python_lines() { grep -v -E "  ($(IFS='|'; echo "${pythons[*]:-^$}")).wasm\$" "$1" || true; }
if ! cmp -s <(python_lines "$OUT/SHA256SUMS") <(python_lines "$DIST/SHA256SUMS") 2>/dev/null; then
  status=1
  say "plugins/dist/SHA256SUMS differs from what the source builds:"
  diff -u <(python_lines "$DIST/SHA256SUMS") <(python_lines "$OUT/SHA256SUMS") | sed 's/^/    /' >&2 || true
fi
if ! cmp -s "$OUT/BUILD-INFO" "$DIST/BUILD-INFO" 2>/dev/null; then
  status=1
  say "plugins/dist/BUILD-INFO differs from what the source builds:"
  diff -u "$DIST/BUILD-INFO" "$OUT/BUILD-INFO" | sed 's/^/    /' >&2 || true
fi
# The Python components: built from the sources SOURCES records, by the
# componentize-py it names, and the bytes SHA256SUMS pins.
if ! cmp -s <(printf '%s\n' "${sources[@]}") "$DIST/SOURCES" 2>/dev/null; then
  status=1
  say "plugins/dist/SOURCES differs from the Python plugins' sources and toolchain now:"
  diff -u "$DIST/SOURCES" <(printf '%s\n' "${sources[@]}") | sed 's/^/    /' >&2 || true
fi
for p in "${pythons[@]}"; do
  if ! (cd "$DIST" && grep -E "  $p.wasm\$" SHA256SUMS | sha256sum --quiet -c - >/dev/null 2>&1); then
    status=1
    say "plugins/dist/$p.wasm is not the file plugins/dist/SHA256SUMS pins (or is missing)"
  fi
done
for f in "$DIST"/*.wasm; do
  [[ -e $f ]] || continue
  [[ -e $OUT/$(basename "$f") || -e $PY_OUT/$(basename "$f") ]] ||
    { status=1; say "plugins/dist/$(basename "$f") has no plugin under plugins/"; }
done
if ((status)); then
  say "plugins/dist is stale: run scripts/build-plugins.sh and commit plugins/dist."
  exit 1
fi
say "plugins/dist matches the source (${crates[*]}; $COMPILER)"
((${#pythons[@]})) && say "and was built from the Python plugins' sources (${pythons[*]})"
exit 0
