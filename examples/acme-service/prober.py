#!/usr/bin/python3
"""Asks production for its version every few milliseconds until told to stop
(SIGTERM or SIGINT), then prints what it saw as one JSON object:

    requests       how many were made
    versions       the versions seen, in order, each with its count
    failed         requests that got no answer or not a 200
    outside_switch failed requests that were not inside the switch, i.e. not
                   between the last answer of one version and the first of the
                   next one
    outage_ms      the longest stretch without a good answer inside a switch
    final          the version of the last good answer

Standard library only; used by scripts/demo-real-host.sh and the tests.
"""

import argparse
import http.client
import json
import signal
import sys
import time

stop = False


def on_signal(*_):
    global stop
    stop = True


def ask(host, port, timeout):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/version")
        r = conn.getresponse()
        body = r.read().decode().strip()
        return (r.status, body) if r.status == 200 else (r.status, None)
    except OSError as e:
        return (type(e).__name__, None)
    finally:
        conn.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--every-ms", type=float, default=5)
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--ready", help="file written once the first request is made")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    seen = []  # (seconds, version or None, status)
    while not stop:
        t = time.monotonic()
        status, version = ask(args.host, args.port, args.timeout)
        seen.append((t, version, status))
        if args.ready and len(seen) == 1:
            open(args.ready, "w").close()
        rest = args.every_ms / 1000 - (time.monotonic() - t)
        if rest > 0:
            time.sleep(rest)
    print(json.dumps(summarise(seen)))


def summarise(seen):
    versions = []
    for _, v, _ in seen:
        if v is None:
            continue
        if versions and versions[-1]["version"] == v:
            versions[-1]["count"] += 1
        else:
            versions.append({"version": v, "count": 1})
    good = [i for i, (_, v, _) in enumerate(seen) if v is not None]
    # A switch: consecutive good answers with different versions; the
    # failures strictly between them are inside it.
    inside = set()
    outage = 0.0
    for a, b in zip(good, good[1:]):
        if seen[a][1] != seen[b][1]:
            inside.update(range(a + 1, b))
            outage = max(outage, seen[b][0] - seen[a][0])
    failed = [i for i, (_, v, _) in enumerate(seen) if v is None]
    outside = [i for i in failed if i not in inside]
    return {
        "requests": len(seen),
        "versions": versions,
        "failed": len(failed),
        "outside_switch": len(outside),
        "outside_examples": [str(seen[i][2]) for i in outside[:5]],
        "outage_ms": round(outage * 1000, 1),
        "final": seen[good[-1]][1] if good else None,
    }


if __name__ == "__main__":
    sys.exit(main())
