#!/usr/bin/env bash
# The GitOps walkthrough, unattended: a temporary git repository holding a
# policy, a `duplex agent` following it, the policy committed and upgraded to
# the end, then a second rollout committed and, while it runs, `action:
# abort` committed: the session aborts and its policy is abandoned. The
# metrics are scraped. Prints what it saw; exits 0 only when all of it
# happened.
#
#   scripts/demo-gitops.sh [--keep]     (--keep: leave the temporary directory)
set -euo pipefail
# shellcheck source=scripts/demo-lib.sh
source "$(dirname "$0")/demo-lib.sh"

work=$(mktemp -d /tmp/duplex-gitops.XXXXXX)
agent_pid=
cleanup() {
    [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null || true
    if $keep; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
api=http://127.0.0.1:$port
policies=$work/policies
git() { command git -C "$policies" -c user.name=ops -c user.email=ops@example.com "$@"; }

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; tail -20 "$work/agent.log" >&2; exit 1; }

# status FIELD: a field of GET /v1/status, as JSON (e.g. agent.achieved.digest).
status() {
    "$python" - "$api" "$1" <<'PY'
import json, sys, urllib.request
d = json.load(urllib.request.urlopen(sys.argv[1] + "/v1/status"))
for k in sys.argv[2].split("."):
    d = d.get(k) if isinstance(d, dict) else None
print(json.dumps(d))
PY
}

# wait_for WHAT FIELD PYTHON-EXPR: until EXPR holds of the field's value v.
wait_for() {
    local what=$1 field=$2 expr=$3 v
    for _ in $(seq 1 600); do
        v=$(status "$field" 2>/dev/null || echo null)
        if "$python" -c "import json,sys; v=json.loads(sys.argv[1]); sys.exit(0 if ($expr) else 1)" "$v"; then
            echo "$what: $v"
            return 0
        fi
        sleep 0.2
    done
    fail "$what never happened (last: $v)"
}

say "a policy repository: $policies"
mkdir -p "$policies"
command git init -q -b main "$policies"
cp -r "$repo/policies/artifacts" "$policies/"
sed "s#../plugins/dist/#$repo/plugins/dist/#" "$repo/policies/demo.yaml" > "$policies/upgrade.yaml"
git add -A && git commit -qm "upgrade acme-app to 2.4.1"

say "duplex agent follows it (API on $api)"
"$duplex" --state-dir "$work/state" agent --git "$policies" --policy upgrade.yaml \
    --fetch-interval 2s --listen "127.0.0.1:$port" > "$work/agent.log" 2>&1 &
agent_pid=$!

say "the committed policy is upgraded to the end"
first=$(status agent.desired.digest 2>/dev/null || true)
wait_for "achieved" agent.achieved 'v is not None'
wait_for "outcome" status.session.session.ended 'v == "committed"'

say "a second rollout is committed; while it runs, an abort is committed"
echo "# rollout 2" >> "$policies/upgrade.yaml"
git commit -qam "rollout 2"
wait_for "in flight" status.session.session.config.state 'v in ("Split", "PrepareMerge", "Merge")'
sed -i 's/^spec:$/spec:\n  action: abort/' "$policies/upgrade.yaml"
git commit -qam "abort rollout 2"
"$python" -c "import urllib.request; urllib.request.urlopen(urllib.request.Request('$api/v1/source/fetch', method='POST', headers={'Authorization': 'Bearer ' + open('$work/state/agent/token').read().strip()}))"
wait_for "outcome" status.session.session.ended 'v == "aborted"'
wait_for "abandoned" agent.abandoned 'len(v) == 1'
wait_for "idle because" agent.idleBecause 'v is not None and "abort" in v'

say "what the activity log says"
"$duplex" --state-dir "$work/state" log | grep -E "asked to abort|ABORT|session ended" || fail "the log lacks the abort"

say "metrics"
curl -sf "$api/metrics" > "$work/metrics" || "$python" -c "import urllib.request; print(urllib.request.urlopen('$api/metrics').read().decode())" > "$work/metrics"
grep -E '^duplex_sessions_ended_total|^duplex_upgrade_state\{state="Idle"\}|^duplex_policy_source_info' "$work/metrics"
grep -q '^duplex_sessions_ended_total{outcome="committed"} 1' "$work/metrics" || fail "no committed session in the metrics"
grep -q '^duplex_sessions_ended_total{outcome="aborted"} 1' "$work/metrics" || fail "no aborted session in the metrics"

say "history"
"$duplex" --state-dir "$work/state" history
kill -TERM "$agent_pid"
wait "$agent_pid" || fail "the agent did not stop cleanly"
agent_pid=
echo
echo "OK: committed, then a committed abort aborted the rollout in flight and abandoned it; metrics scraped"
