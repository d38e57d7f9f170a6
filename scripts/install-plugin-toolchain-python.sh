#!/usr/bin/env bash
# Installs the toolchain that builds Python plugins (`duplex plugin build` on a
# project made by `duplex plugin new --lang python`, scripts/build-plugins.sh
# for plugins/py-*): componentize-py, pinned, from PyPI, into a virtual
# environment of its own:
#
#   ${DUPLEX_TOOLCHAINS:-$HOME/.cache/duplex/toolchains}/python/
#       bin/componentize-py      what duplex runs
#       VERSION                  the pinned version, written after a good install
#
# Nothing is done when that version is already there, so builds are offline
# afterwards (componentize-py bundles CPython and its standard library; it
# needs no network to build a component). Needs python3 with the venv module
# (Debian: python3-venv, installed with apt-get when missing).
#
#   scripts/install-plugin-toolchain-python.sh          install when missing
#   scripts/install-plugin-toolchain-python.sh --check  only say whether it is there (exit 1 if not)
#   scripts/install-plugin-toolchain-python.sh --print  print the componentize-py path (after installing)
set -euo pipefail

VERSION=0.25.1
TOOLCHAINS=${DUPLEX_TOOLCHAINS:-$HOME/.cache/duplex/toolchains}
DIR=$TOOLCHAINS/python
BIN=$DIR/bin/componentize-py
MODE=install
case "${1:-}" in
  "") ;;
  --check) MODE=check ;;
  --print) MODE=print ;;
  -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--check|--print]" >&2; exit 2 ;;
esac

say() { echo "install-plugin-toolchain-python: $*" >&2; }

# There, and it runs (the venv's python is a link to the interpreter that
# made it, which may have gone since).
installed() {
  [[ -x $BIN && "$(cat "$DIR/VERSION" 2>/dev/null)" == "$VERSION" ]] &&
    [[ "$("$BIN" --version 2>/dev/null)" == "componentize-py $VERSION" ]]
}

if installed; then
  [[ $MODE == print ]] && echo "$BIN"
  exit 0
fi
if [[ $MODE == check ]]; then
  say "componentize-py $VERSION is not installed in $DIR"
  exit 1
fi

PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || PY=/usr/bin/python3
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  command -v apt-get >/dev/null || { say "$PY has no venv module and there is no apt-get"; exit 1; }
  say "installing python3-venv"
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends python3-venv
  PY=/usr/bin/python3
fi

say "installing componentize-py $VERSION from PyPI into $DIR"
rm -rf "$DIR"
mkdir -p "$TOOLCHAINS"
"$PY" -m venv "$DIR"
"$DIR/bin/python" -m pip install --quiet --disable-pip-version-check "componentize-py==$VERSION"
got=$("$BIN" --version 2>/dev/null || true)
[[ $got == *"$VERSION"* ]] || { say "installed componentize-py reports '$got', not $VERSION"; exit 1; }
echo "$VERSION" > "$DIR/VERSION"
say "installed $got"
[[ $MODE == print ]] && echo "$BIN"
exit 0
