#!/usr/bin/env bash
# The real-host walkthrough: upgrades acme-service (examples/acme-service), a
# real HTTP service running on this host, from 1.0.0 to 2.0.0 with
# policies/real-host.yaml, while a prober asks production for its version
# every 5 ms. Prints the versions seen and the measured outage; exits 0 only
# when 2.0.0 serves at the end and no request failed outside the Merge switch.
#
#   scripts/demo-real-host.sh [--keep]     (--keep: leave the temporary home)
#
# Everything happens in a temporary directory on loopback: the service's home
# (releases/1.0.0 and the `current` link), the rendered policy (the four
# host-specific values of policies/real-host.yaml replaced), Duplex's state dir.
set -euo pipefail
# shellcheck source=scripts/demo-lib.sh
source "$(dirname "$0")/demo-lib.sh"
ctl=$repo/examples/acme-service/acme-ctl

work=$(mktemp -d /tmp/duplex-real-host.XXXXXX)
home=$work/acme
# Two free ports below the ephemeral range, which the prober's connections use.
read -r port test_port < <("$python" -c '
import random, socket
ports = []
while len(ports) < 2:
    p = random.randrange(20000, 32000)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        if p not in ports:
            ports.append(p)
    except OSError:
        pass
    finally:
        s.close()
print(*ports)')
export ACME_HOME=$home ACME_PORT=$port ACME_TEST_PORT=$test_port

prober_pid=
cleanup() {
    [ -n "$prober_pid" ] && kill "$prober_pid" 2>/dev/null || true
    "$ctl" stop test >/dev/null 2>&1 || true
    "$ctl" stop production >/dev/null 2>&1 || true
    if $keep; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# The host as it is before the upgrade: 1.0.0 installed and serving.
mkdir -p "$home/releases/1.0.0"
tar -xzf "$repo/policies/artifacts/acme-service-1.0.0.tar.gz" -C "$home/releases/1.0.0"
ln -s releases/1.0.0 "$home/current"
"$ctl" start production

sed -e "s|/srv/acme|$home|g" \
    -e "s|/usr/local/bin/acme-ctl|$ctl|g" \
    -e "s|127.0.0.1:8080|127.0.0.1:$port|g; s|\"8080\"|\"$port\"|g" \
    -e "s|127.0.0.1:8081|127.0.0.1:$test_port|g; s|\"8081\"|\"$test_port\"|g" \
    -e "s|\.\./plugins/dist/|$repo/plugins/dist/|; s|source: artifacts/|source: $repo/policies/artifacts/|" \
    "$repo/policies/real-host.yaml" >"$work/real-host.yaml"

"$python" "$repo/examples/acme-service/prober.py" --port "$port" --ready "$work/probing" >"$work/probe.json" &
prober_pid=$!
while [ ! -e "$work/probing" ]; do sleep 0.01; done

echo "== duplex apply (production on 127.0.0.1:$port, Upgrade Side on :$test_port)"
set +e
"$duplex" --state-dir "$work/state" apply "$work/real-host.yaml"
status=$?
set -e

kill -TERM "$prober_pid"
wait "$prober_pid" || true
prober_pid=
"$python" - "$work/probe.json" "$status" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
status = int(sys.argv[2])
print()
print("== what production served, as seen by a prober every 5 ms")
print("   versions:  " + " -> ".join(f"{v['version']} ({v['count']} answers)" for v in s["versions"]))
print(f"   requests:  {s['requests']}, failed: {s['failed']} "
      f"(outside the Merge switch: {s['outside_switch']})")
print(f"   outage at the Merge switch: {s['outage_ms']} ms")
ok = status == 0 and s["final"] == "2.0.0" and s["outside_switch"] == 0
print("== " + ("upgrade complete: 2.0.0 serves" if ok else
               f"FAILED: duplex exit {status}, final version {s['final']}, "
               f"{s['outside_switch']} failures outside the switch {s['outside_examples']}"))
sys.exit(0 if ok else 1)
PY
