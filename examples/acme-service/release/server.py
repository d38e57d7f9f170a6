#!/usr/bin/python3
"""acme-service: the small HTTP service Duplex upgrades in its real-host demo.

It serves the version of the release it was started from (the VERSION file
beside this script) and a health endpoint. Standard library only, so the
tests run it without network access.

    GET /         acme-service VERSION (text)
    GET /version  VERSION
    GET /health   200 "ok" (or 503 when the release's HEALTH file says so)
"""

import argparse
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))


def read(name, default=""):
    try:
        with open(os.path.join(HERE, name)) as f:
            return f.read().strip()
    except FileNotFoundError:
        return default


VERSION = read("VERSION", "unknown")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/version":
            self.reply(200, VERSION)
        elif self.path == "/health":
            # A release can ship broken on purpose (the tests' bad release).
            if read("HEALTH", "ok") == "ok":
                self.reply(200, "ok")
            else:
                self.reply(503, "unhealthy")
        elif self.path == "/":
            self.reply(200, f"acme-service {VERSION}")
        else:
            self.reply(404, "not found")

    def do_HEAD(self):
        self.do_GET()

    def reply(self, status, text):
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Acme-Version", VERSION)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"acme-service {VERSION} listening on {args.host}:{args.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
