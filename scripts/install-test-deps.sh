#!/usr/bin/env bash
# Installs what the tests need besides Rust and the wasm toolchain: the real
# service of tests/real_host.rs (examples/acme-service) and its prober run on
# Debian's /usr/bin/python3 (standard library only); acme-ctl uses flock and
# setsid (util-linux). The agent's tests make git repositories (git; gix
# spawns git-upload-pack for file:// URLs) and a self-signed certificate
# (openssl). The consoles' tests drive a real browser (Debian's chromium,
# through chromium-driver's WebDriver) and a real terminal (tmux). Nothing
# is installed when everything is there.
set -euo pipefail
missing=()
[[ -x /usr/bin/python3 ]] || missing+=(python3)
command -v flock >/dev/null && command -v setsid >/dev/null || missing+=(util-linux)
command -v git >/dev/null || missing+=(git)
command -v openssl >/dev/null || missing+=(openssl)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v tmux >/dev/null || missing+=(tmux)
((${#missing[@]})) || exit 0
echo "install-test-deps: installing ${missing[*]}" >&2
sudo=()
((EUID == 0)) || sudo=(sudo)
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
