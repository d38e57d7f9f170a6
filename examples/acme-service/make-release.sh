#!/bin/bash
# Builds a release of acme-service as a reproducible .tar.gz (fixed order,
# owners and times; no gzip timestamp), so its sha256 can be pinned in a policy.
#
#   make-release.sh VERSION OUT.tar.gz [--unhealthy]
#
# --unhealthy: the release answers /health with 503 (the tests' bad release).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: make-release.sh VERSION OUT.tar.gz [--unhealthy]" >&2; exit 2; }
version=$1 out=$2 health=ok
[ "${3:-}" = --unhealthy ] && health=bad
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/release/server.py" "$work/server.py"
printf '%s\n' "$version" >"$work/VERSION"
[ "$health" = ok ] || printf 'bad\n' >"$work/HEALTH"
chmod 0755 "$work" "$work/server.py"
chmod 0644 "$work/VERSION"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=ustar \
    -C "$work" -cf - . | gzip -n -9 >"$out.tmp"
mv "$out.tmp" "$out"
