#!/usr/bin/env bash
# The fleet walkthrough on one machine: a local etcd (Debian's etcd-server,
# installed when missing), six `duplex agent --fleet` processes, each a host
# with its own state dir and simulated fault-tolerant server, and one
# rollout of policies/fleet-demo.yaml over them (a canary, then half, then
# the rest; at most 2 hosts out of service at once). Prints each host's
# outcome and the most hosts ever out of service at once, read from the
# hosts' own journals; exits 0 only when every host committed within the
# limit.
#
#   scripts/demo-fleet.sh [--keep]     (--keep: leave the temporary directory)
set -euo pipefail
# shellcheck source=scripts/demo-lib.sh
source "$(dirname "$0")/demo-lib.sh"

if ! command -v etcd >/dev/null; then
    echo "demo-fleet: installing Debian's etcd-server" >&2
    sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends etcd-server
fi

work=$(mktemp -d /tmp/duplex-fleet.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if $keep; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
say() { printf '\n== %s\n' "$*"; }
free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

say "a local etcd on loopback"
client=$(free_port)
peer=$(free_port)
etcd --name demo --data-dir "$work/etcd" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "demo=http://127.0.0.1:$peer" >"$work/etcd.log" 2>&1 &
pids+=($!)
export DUPLEX_ETCD=http://127.0.0.1:$client
for _ in $(seq 100); do
    "$duplex" fleet status >/dev/null 2>&1 && break
    sleep 0.2
done
echo "etcd at $DUPLEX_ETCD"

say "six hosts, each an agent with its own simulated server"
hosts=(ft-01 ft-02 ft-03 ft-04 ft-05 ft-06)
for host in "${hosts[@]}"; do
    mkdir -p "$work/$host"
    "$duplex" --state-dir "$work/$host/state" agent --fleet --etcd "$DUPLEX_ETCD" \
        --host "$host" --label fleet=sim --fetch-interval 2s >"$work/$host/agent.log" 2>&1 &
    pids+=($!)
done
for _ in $(seq 150); do
    alive=$("$duplex" fleet status --output json 2>/dev/null |
        "$python" -c 'import json,sys; print(sum(h["alive"] for h in json.load(sys.stdin)["hosts"]))' 2>/dev/null || echo 0)
    [ "$alive" = ${#hosts[@]} ] && break
    sleep 0.2
done
"$duplex" fleet status

say "the rollout: canary, then half, then the rest; at most 2 out of service"
"$duplex" rollout plan "$repo/policies/fleet-rollout.yaml" --etcd "$DUPLEX_ETCD"
status=0
"$duplex" rollout apply "$repo/policies/fleet-rollout.yaml" --wait || status=$?
"$duplex" rollout status "$repo/policies/fleet-rollout.yaml"

say "what the hosts' own journals say"
limit=$("$duplex" rollout status "$repo/policies/fleet-rollout.yaml" --output json |
    "$python" -c 'import json,sys; print(json.load(sys.stdin)["plan"]["maxUnavailable"])')
most=$(for host in "${hosts[@]}"; do
    "$duplex" --state-dir "$work/$host/state" log --output json | "$python" -c '
import json, sys
records = [json.loads(l) for l in sys.stdin if l.strip()]
out = [r["tsMs"] for r in records if r["state"] != "Idle"]
ended = records[-1]["event"].get("event") if records else None
print(sys.argv[1], min(out), records[-1]["tsMs"], "committed" if any(
    r["event"].get("event") == "sessionEnded" and r["event"].get("outcome") == "committed" for r in records) else "not committed")
' "$host"
done | tee "$work/outages" | "$python" -c '
import sys
edges = []
for line in sys.stdin:
    host, start, end, outcome = line.split(None, 3)
    edges += [(int(start), 1), (int(end), -1)]
edges.sort()
n = most = 0
for _, d in edges:
    n += d; most = max(most, n)
print(most)')
while read -r host start end outcome; do printf '%-6s %s\n' "$host" "$outcome"; done <"$work/outages"
echo "most hosts out of service at once: $most (limit $limit)"

if [ "$status" -eq 0 ] && [ "$most" -le "$limit" ] && ! grep -q "not committed" "$work/outages"; then
    echo "OK: every host committed, never more than $limit out of service at once"
else
    echo "FAILED: the rollout did not complete within its limit" >&2
    exit 1
fi
