#!/usr/bin/env bash
# Builds every plugin crate (crate-type cdylib) under plugins/ to a WebAssembly component:
#   plugins/dist/<crate>.wasm, plugins/dist/SHA256SUMS, plugins/dist/BUILD-INFO.
#
#   scripts/build-plugins.sh           build and write plugins/dist/
#   scripts/build-plugins.sh --check   build into a temporary directory and fail
#                                      if plugins/dist/ is not what the source builds
#
# Toolchain: the rustup target wasm32-unknown-unknown when it is installed;
# otherwise the Debian route (rustc-web + rust-web-src + lld-22, std rebuilt
# with -Zbuild-std), installing those packages with apt-get when missing.
# Output is byte-for-byte reproducible for a given compiler: paths are remapped,
# and the compiler used is recorded in BUILD-INFO.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIST="$ROOT/plugins/dist"
TARGET=wasm32-unknown-unknown
TARGET_DIR=${DUPLEX_WASM_TARGET_DIR:-$ROOT/target/wasm}
MODE=build
case "${1:-}" in
  "") ;;
  --check) MODE=check ;;
  -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

say() { echo "build-plugins: $*" >&2; }
die() { say "$*"; exit 1; }

# --- toolchain -------------------------------------------------------------
HOST_RUSTC=$(command -v rustc || true)
wasm_env=()
build_std=()
if command -v rustup >/dev/null && rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
  ROUTE="rustup target $TARGET"
  WASM_RUSTC=$(rustup which rustc)
else
  ROUTE="debian rustc-web, -Zbuild-std=std,panic_abort, wasm-ld-22"
  pkgs=(rustc-web cargo-web rust-web-src lld-22)
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    say "installing ${missing[*]} (no $TARGET rustup target here)"
    sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  WASM_RUSTC=/usr/bin/rustc
  wasm_env=(RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld-22)
  build_std=(-Zbuild-std=std,panic_abort)
fi
COMPILER=$("$WASM_RUSTC" -V)

info() {
  echo "compiler: $COMPILER"
  echo "route: $ROUTE"
  echo "target: $TARGET"
  echo "profile: plugin (Cargo.toml)"
  echo "componentizer: $(awk '/^name = "duplex-componentize"/{p=1} p&&/"wit-component/{gsub(/[",]/,""); print $1, $2; exit}' "$ROOT/Cargo.lock")"
}

if [[ $MODE == check && -f $DIST/BUILD-INFO ]]; then
  recorded=$(sed -n 's/^compiler: //p' "$DIST/BUILD-INFO")
  if [[ "$recorded" != "$COMPILER" ]]; then
    say "cannot check plugins/dist: it was built with"
    say "    $recorded"
    say "but this machine's compiler for $TARGET is"
    say "    $COMPILER"
    say "so the bytes cannot match. Check on a machine with the recorded compiler,"
    say "or rebuild with scripts/build-plugins.sh and commit plugins/dist."
    exit 3
  fi
fi

# --- build -----------------------------------------------------------------
OUT=$DIST
if [[ $MODE == check ]]; then
  OUT=$(mktemp -d)
  trap 'rm -rf "$OUT"' EXIT
fi
mkdir -p "$OUT" "$TARGET_DIR"

# The componentizer is a host tool of this workspace (built with the host rustc).
say "building the componentizer"
env -u RUSTC -u RUSTFLAGS cargo build -q --locked --release -p duplex-componentize \
  --manifest-path "$ROOT/Cargo.toml" --target-dir "$TARGET_DIR/host"
COMPONENTIZE="$TARGET_DIR/host/release/duplex-componentize"

cargo_home=${CARGO_HOME:-$HOME/.cargo}
remap="--remap-path-prefix=$ROOT=/duplex --remap-path-prefix=$cargo_home=/cargo"
crates=()
for manifest in "$ROOT"/plugins/*/Cargo.toml; do
  # Plugins are the cdylib crates; others (e.g. sim-world) are shared libraries.
  grep -q '"cdylib"' "$manifest" && crates+=("$(basename "$(dirname "$manifest")")")
done
((${#crates[@]})) || die "no plugin crates under plugins/"

say "compiling ${crates[*]} with $COMPILER ($ROUTE)"
pargs=()
for c in "${crates[@]}"; do pargs+=(-p "$c"); done
env "${wasm_env[@]}" RUSTFLAGS="$remap" cargo build -q --locked "${build_std[@]}" \
  --manifest-path "$ROOT/Cargo.toml" --target "$TARGET" --profile plugin \
  --target-dir "$TARGET_DIR" "${pargs[@]}"

for c in "${crates[@]}"; do
  core="$TARGET_DIR/$TARGET/plugin/${c//-/_}.wasm"
  "$COMPONENTIZE" "$core" "$OUT/$c.wasm"
done
(cd "$OUT" && sha256sum -- *.wasm > SHA256SUMS)
info > "$OUT/BUILD-INFO"

if [[ $MODE == build ]]; then
  say "wrote plugins/dist:"
  sed 's/^/    /' "$OUT/SHA256SUMS" >&2
  exit 0
fi

# --- check -----------------------------------------------------------------
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
