#!/usr/bin/env bash
# Installs what the tests need besides Rust and the wasm toolchain: the real
# service of tests/real_host.rs (examples/acme-service) and its prober run on
# Debian's /usr/bin/python3 (standard library only); acme-ctl uses flock and
# setsid (util-linux). The agent's tests make git repositories (git; gix
# spawns git-upload-pack for file:// URLs) and a self-signed certificate
# (openssl). The consoles' tests drive real browsers and a real terminal
# (tmux): Debian's chromium through chromium-driver's chromedriver, and
# Debian's firefox-esr through geckodriver. Debian does not package
# geckodriver: it is built from crates.io (`cargo install --locked`, a pinned
# version, about 2 minutes on 2 cores) into target/test-tools/bin of this
# checkout, where tests/support/webdriver.rs looks first (then the PATH). So
# a fresh CI clone and a contributor get the same driver, nothing is written
# outside the checkout besides apt's packages, and `cargo clean` removes it
# (this script builds it again). The fleet's tests (fleet/tests/) run real
# etcd clusters on loopback ports of their own: Debian's etcd-server (3.4),
# whose /usr/bin/etcd they launch themselves (the service the package may
# start on port 2379 is never used). The etcd-client crate compiles etcd's
# protobuf API at build time: protoc (protobuf-compiler) and the well-known
# .proto files it imports (libprotobuf-dev; without them the build fails
# with `google/protobuf/descriptor.proto: File not found`). The signing
# tests (tests/signing.rs) check interoperability with Debian's minisign.
# The Python plugins' tests build with componentize-py, which
# scripts/install-plugin-toolchain-python.sh installs from PyPI (pinned) into
# ~/.cache/duplex/toolchains/python. Nothing is installed when everything is
# there.
set -euo pipefail
cd "$(dirname "$0")/.."
geckodriver_version=0.37.1
tools=target/test-tools

missing=()
[[ -x /usr/bin/python3 ]] || missing+=(python3)
command -v flock >/dev/null && command -v setsid >/dev/null || missing+=(util-linux)
command -v git >/dev/null || missing+=(git)
command -v openssl >/dev/null || missing+=(openssl)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
[[ -x /usr/bin/firefox-esr ]] || missing+=(firefox-esr)
command -v tmux >/dev/null || missing+=(tmux)
command -v etcd >/dev/null || missing+=(etcd-server)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
[[ -f /usr/include/google/protobuf/descriptor.proto ]] || missing+=(libprotobuf-dev)
# tests/oci.rs runs a real OCI registry on the loopback (its own config and port).
[[ -x /usr/bin/docker-registry ]] || missing+=(docker-registry)
command -v minisign >/dev/null || missing+=(minisign)
if ((${#missing[@]})); then
    echo "install-test-deps: installing ${missing[*]}" >&2
    sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! "$tools/bin/geckodriver" --version 2>/dev/null | grep -q "^geckodriver $geckodriver_version"; then
    echo "install-test-deps: building geckodriver $geckodriver_version into $tools/bin" >&2
    cargo install --quiet --locked geckodriver --version "$geckodriver_version" --root "$tools"
fi

scripts/install-plugin-toolchain-python.sh

# JavaScript plugins (tests/js_plugin.rs: `duplex plugin new --lang js`, then
# build): componentize-js and jco from npm, in the toolchain directory
# `duplex plugin build` looks in (node and npm from Debian when missing).
scripts/install-plugin-toolchain-js.sh
