#!/usr/bin/env bash
# Installs the JavaScript plugin toolchain when it is missing:
# componentize-js 0.23.0 and jco 1.35.0 from npm, into
#
#   ${DUPLEX_TOOLCHAINS:-$HOME/.cache/duplex/toolchains}/js
#
# (a private npm prefix: node_modules/ and the package.json/package-lock.json
# that pin it). Debian's nodejs and npm are installed with apt-get first when
# `node`/`npm` are missing. Once installed this is a no-op and needs no network:
# `duplex plugin build` and scripts/build-plugins.sh find the toolchain there
# (plugin-sdk/js/build.mjs calls componentize() from the JS API, offline).
#
#   scripts/install-plugin-toolchain-js.sh           install what is missing
#   scripts/install-plugin-toolchain-js.sh --check   only say what is missing (exit 1 if anything)
#   scripts/install-plugin-toolchain-js.sh --print   print the install directory
set -euo pipefail

COMPONENTIZE_JS=0.23.0
JCO=1.35.0
DIR=${DUPLEX_TOOLCHAINS:-$HOME/.cache/duplex/toolchains}/js
MODE=install
case "${1:-}" in
  "") ;;
  --check) MODE=check ;;
  --print) echo "$DIR"; exit 0 ;;
  -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--check|--print]" >&2; exit 2 ;;
esac

say() { echo "install-plugin-toolchain-js: $*" >&2; }

# The installed version of an npm package in $DIR, or nothing.
installed() {
  sed -n 's/^  "version": "\(.*\)",$/\1/p' "$DIR/node_modules/$1/package.json" 2>/dev/null | head -n1
}

missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
want=()
[[ $(installed @bytecodealliance/componentize-js) == "$COMPONENTIZE_JS" ]] \
  || want+=("@bytecodealliance/componentize-js@$COMPONENTIZE_JS")
[[ $(installed @bytecodealliance/jco) == "$JCO" ]] || want+=("@bytecodealliance/jco@$JCO")
((${#missing[@]} + ${#want[@]})) || exit 0

if [[ $MODE == check ]]; then
  ((${#missing[@]})) && say "missing Debian packages: ${missing[*]}"
  ((${#want[@]})) && say "missing in $DIR: ${want[*]}"
  exit 1
fi

if ((${#missing[@]})); then
  command -v apt-get >/dev/null || { say "no node/npm and no apt-get to install ${missing[*]}"; exit 1; }
  say "installing ${missing[*]}"
  sudo=()
  ((EUID == 0)) || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

say "installing ${want[*]} into $DIR (npm, about 385 MB)"
mkdir -p "$DIR"
[[ -f $DIR/package.json ]] || echo '{ "name": "duplex-js-toolchain", "private": true }' > "$DIR/package.json"
npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error --save-exact \
  "@bytecodealliance/componentize-js@$COMPONENTIZE_JS" "@bytecodealliance/jco@$JCO"
say "installed: componentize-js $(installed @bytecodealliance/componentize-js), jco $(installed @bytecodealliance/jco)"
