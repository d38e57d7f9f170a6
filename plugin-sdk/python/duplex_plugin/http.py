"""HTTP requests to the origins the policy grants (`capabilities.http`).

Needs a world that imports `duplex:plugin/http@0.1.0`; the bindings are
imported when a request is made, so plugins without it can import this SDK.
"""

import json
from typing import Any, Dict, List, Optional, Tuple

from componentize_py_types import Err


class HttpError(Exception):
    """Refused by the grant, or no answer (connection refused, timeout, TLS)."""


class Response:
    """An answer: status, headers, body (cut at the host's cap: `truncated`)."""

    def __init__(self, status: int, headers: List[Tuple[str, str]], body: bytes,
                 truncated: bool, url: str):
        self.status = status
        self.headers = headers
        self.body = body
        self.truncated = truncated
        self.url = url

    def header(self, name: str) -> Optional[str]:
        """The first header called `name` (case-insensitive)."""
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.body)


def request(method: str, url: str, headers: Optional[Dict[str, str]] = None,
            body: bytes = b"", timeout_ms: Optional[int] = None) -> Response:
    """Sends one request; raises HttpError when there is no answer."""
    from wit_world.imports import http as wit_http

    try:
        wit_method = wit_http.Method[method.upper()]
    except KeyError:
        raise ValueError(f"unknown HTTP method `{method}`")
    req = wit_http.Request(
        method=wit_method,
        url=url,
        headers=list((headers or {}).items()),
        body=body,
        timeout_ms=timeout_ms,
    )
    try:
        r = wit_http.send(req)
    except Err as e:
        raise HttpError(str(e.value))
    return Response(r.status, r.headers, r.body, r.truncated, r.url)


def get(url: str, headers: Optional[Dict[str, str]] = None,
        timeout_ms: Optional[int] = None) -> Response:
    return request("GET", url, headers, b"", timeout_ms)


def head(url: str, headers: Optional[Dict[str, str]] = None,
         timeout_ms: Optional[int] = None) -> Response:
    return request("HEAD", url, headers, b"", timeout_ms)
