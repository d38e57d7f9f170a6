#!/usr/bin/env bash
# Installs what building Duplex plugins for wasm32-unknown-unknown needs
# (`duplex plugin build`, scripts/build-plugins.sh), when it is missing:
#
#   - nothing, when rustup has the wasm32-unknown-unknown target;
#   - otherwise Debian's rustc-web, cargo-web, rust-web-src and lld-22 (std is
#     rebuilt from rust-web-src with -Zbuild-std and linked by wasm-ld-22; see
#     ../shared/wasm-toolchain.md), with apt-get, through sudo unless root.
#
#   scripts/install-wasm-toolchain.sh           install what is missing
#   scripts/install-wasm-toolchain.sh --check   only say what is missing (exit 1 if anything)
#
# `rustup target add wasm32-unknown-unknown` is the other way, where rustup
# can download; this script does not try it, so the route (and the compiler
# that plugins/dist/BUILD-INFO records) stays what the machine already has.
set -euo pipefail

TARGET=wasm32-unknown-unknown
PACKAGES=(rustc-web cargo-web rust-web-src lld-22)
MODE=install
case "${1:-}" in
  "") ;;
  --check) MODE=check ;;
  -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

say() { echo "install-wasm-toolchain: $*" >&2; }

if command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  exit 0
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0

if [[ $MODE == check ]]; then
  say "missing: ${missing[*]} (and rustup has no $TARGET target)"
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  say "no $TARGET rustup target, and no apt-get to install ${missing[*]}:"
  say "    rustup target add $TARGET"
  exit 1
fi
say "installing ${missing[*]} (no $TARGET rustup target here)"
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
