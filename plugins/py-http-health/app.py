"""py-http-health: is an HTTP service ready? A readiness/verification check
for Duplex, written in Python with the Duplex plugin SDK (plugin-sdk/python).

Check `http-health` sends one request to `url` (through the `http`
capability: the policy grants the origin) and passes when
  - the status is `expect-status` (default 200),
  - the body contains `body-contains` (when given),
  - the JSON body's `json-field` (a dotted path, e.g. `checks.db`) is
    `json-equals` (when given; with `json-field` alone, the field must be
    there and not null/false),
  - and the answer came within `timeout-ms` (default 2000): the latency bound.
Anything else fails, with what was expected and what came.
"""

from duplex_plugin import Plugin, Params, ParamError, passed, failed, log, http
from duplex_plugin.http import HttpError

plugin = Plugin(
    "py-http-health",
    "0.1.0",
    "HTTP health checks: status, body substring, a JSON field, within a time bound",
)

SCHEMA = {
    "type": "object",
    "properties": {
        "url": {
            "type": "string",
            "description": "http:// or https:// URL of the health endpoint (its origin must be granted)",
            "pattern": "^https?://",
        },
        "method": {"type": "string", "enum": ["GET", "HEAD"], "default": "GET"},
        "expect-status": {
            "type": "integer",
            "minimum": 100,
            "maximum": 599,
            "default": 200,
            "description": "The status the service must answer with",
        },
        "body-contains": {
            "type": "string",
            "description": "Text the body must contain",
        },
        "json-field": {
            "type": "string",
            "description": "Dotted path of a field of the JSON body (e.g. `checks.db`)",
        },
        "json-equals": {
            "description": "The value json-field must have (any JSON value)",
        },
        "timeout-ms": {
            "type": "integer",
            "minimum": 1,
            "maximum": 60000,
            "default": 2000,
            "description": "The answer must come within this long (the latency bound)",
        },
        "headers": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Request headers",
        },
    },
    "required": ["url"],
    "additionalProperties": False,
}

_MISSING = object()


def field(document, path: str):
    """The value at a dotted path of a JSON document, or _MISSING."""
    value = document
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def json_text(value) -> str:
    import json

    return json.dumps(value, sort_keys=True)


@plugin.check("http-health", "An HTTP endpoint answers with the expected status (and body) in time", SCHEMA)
def http_health(ctx, params: Params):
    url = params.require("url", str)
    method = params.optional("method", str, "GET")
    want = params.optional("expect-status", int, 200)
    contains = params.optional("body-contains", str)
    json_field = params.optional("json-field", str)
    timeout_ms = params.optional("timeout-ms", int, 2000)
    headers = params.optional("headers", dict, {})
    if method not in ("GET", "HEAD"):
        raise ParamError(f"parameter `method` must be GET or HEAD, not {method}")
    if "json-equals" in params and json_field is None:
        raise ParamError("parameter `json-equals` needs `json-field`")

    log.debug(f"{method} {url} (attempt {ctx.attempt}, within {timeout_ms} ms)")
    try:
        r = http.request(method, url, headers=headers, timeout_ms=timeout_ms)
    except HttpError as e:
        return failed(f"{method} {url}: no answer within {timeout_ms} ms: {e}", url=url)

    obs = {"url": r.url, "status": r.status, "body_bytes": len(r.body)}
    if r.status != want:
        return failed(f"{method} {url} answered {r.status}, not {want}", **obs)
    if contains is not None and contains not in r.text():
        return failed(f"{method} {url}: the body does not contain {contains!r}", **obs)
    if json_field is not None:
        try:
            document = r.json()
        except ValueError as e:
            return failed(f"{method} {url}: the body is not JSON ({e})", **obs)
        value = field(document, json_field)
        if value is _MISSING:
            return failed(f"{method} {url}: the JSON body has no `{json_field}`", **obs)
        obs["json_field"] = json_text(value)
        if "json-equals" in params:
            if value != params["json-equals"] or type(value) is not type(params["json-equals"]):
                return failed(
                    f"{method} {url}: `{json_field}` is {json_text(value)}, not {json_text(params['json-equals'])}",
                    **obs,
                )
        elif value is None or value is False:
            return failed(f"{method} {url}: `{json_field}` is {json_text(value)}", **obs)
    return passed(f"{method} {url} answered {r.status}", **obs)


WitWorld = plugin.world()
