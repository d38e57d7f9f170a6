#!/usr/bin/env bash
# Builds the JavaScript plugins under plugins/ (a directory with a package.json
# that has a "duplex" entry, e.g. plugins/js-file-checks) to components in
# plugins/dist/, with `duplex plugin build` (componentize-js from
# scripts/install-plugin-toolchain-js.sh, installed when missing).
#
#   scripts/build-plugins-js.sh           rebuild the plugins whose sources changed
#   scripts/build-plugins-js.sh --force   rebuild them all
#   scripts/build-plugins-js.sh --check   fail if plugins/dist is stale (builds nothing)
#
# componentize-js output is not byte-for-byte reproducible (two builds of the
# same source differ), so the built component is committed, with its line in
# plugins/dist/SHA256SUMS like the Rust ones, and plugins/dist/SOURCES-js
# records the sha256 of what it was built from: the plugin's package.json,
# src/ and wit/, the SDK (plugin-sdk/js, plugin-sdk/wit/plugin.wit) and the
# toolchain versions. --check compares that digest and the component's sha256
# (needs neither node nor the toolchain); a changed source means a rebuild,
# and a new digest for policies that pin it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DIST=plugins/dist
MODE=build
case "${1:-}" in
  "") ;;
  --force) MODE=force ;;
  --check) MODE=check ;;
  -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--force|--check]" >&2; exit 2 ;;
esac

say() { echo "build-plugins-js: $*" >&2; }

plugins=()
for manifest in plugins/*/package.json; do
  [[ -e $manifest ]] || continue
  grep -q '"duplex"' "$manifest" && plugins+=("$(basename "$(dirname "$manifest")")")
done
((${#plugins[@]})) || exit 0

# The digest of what plugins/$1 is built from.
source_digest() {
  local toolchain
  toolchain=$(sed -n 's/^\(COMPONENTIZE_JS\|JCO\)=/\1 /p' scripts/install-plugin-toolchain-js.sh)
  {
    echo "$toolchain"
    find "plugins/$1/package.json" "plugins/$1/src" "plugins/$1/wit" plugin-sdk/js plugin-sdk/wit/plugin.wit \
      -type f ! -name '*.md' -print0 | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -d' ' -f1
}
recorded() { sed -n "s/^\([0-9a-f]\{64\}\)  $1\.wasm\$/\1/p" "$DIST/SOURCES-js" 2>/dev/null; }
built() { sed -n "s/^\([0-9a-f]\{64\}\)  $1\.wasm\$/\1/p" "$DIST/SHA256SUMS" 2>/dev/null; }
# Replaces (or adds) the line for $2.wasm in the sums file $1, sorted by name.
set_line() {
  local file=$1 name=$2 digest=$3
  { grep -v "  $name\.wasm\$" "$file" 2>/dev/null || true; echo "$digest  $name.wasm"; } \
    | sort -k2 > "$file.tmp"
  mv "$file.tmp" "$file"
}

if [[ $MODE == check ]]; then
  status=0
  for p in "${plugins[@]}"; do
    if [[ $(recorded "$p") != "$(source_digest "$p")" ]]; then
      status=1; say "$DIST/$p.wasm is stale: plugins/$p or the JS SDK changed since it was built"
    elif [[ ! -f $DIST/$p.wasm || $(built "$p") != "$(sha256sum "$DIST/$p.wasm" | cut -d' ' -f1)" ]]; then
      status=1; say "$DIST/$p.wasm does not match its line in $DIST/SHA256SUMS"
    fi
  done
  if ((status)); then
    say "run scripts/build-plugins-js.sh and commit plugins/dist (and the digests policies pin)."
    exit 1
  fi
  say "plugins/dist matches the sources (${plugins[*]})"
  exit 0
fi

stale=()
for p in "${plugins[@]}"; do
  if [[ $MODE == force || $(recorded "$p") != "$(source_digest "$p")" || ! -f $DIST/$p.wasm ]]; then
    stale+=("$p")
  fi
done
((${#stale[@]})) || { say "plugins/dist is up to date (${plugins[*]})"; exit 0; }

"$ROOT/scripts/install-plugin-toolchain-js.sh"
say "building duplex"
cargo build -q --locked -p duplex
DUPLEX=${CARGO_TARGET_DIR:-$ROOT/target}/debug/duplex
for p in "${stale[@]}"; do
  say "compiling $p"
  "$DUPLEX" plugin build --quiet "plugins/$p" -o "$DIST/$p.wasm" >/dev/null
  set_line "$DIST/SHA256SUMS" "$p" "$(sha256sum "$DIST/$p.wasm" | cut -d' ' -f1)"
  set_line "$DIST/SOURCES-js" "$p" "$(source_digest "$p")"
  say "    $(grep "  $p\.wasm\$" "$DIST/SHA256SUMS")"
done
