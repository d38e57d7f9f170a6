"""The Duplex plugin SDK for Python.

A Duplex plugin is a WebAssembly component built by componentize-py against
a WIT world of the plugin's own that imports only the `duplex:plugin`
interfaces it uses (`host` always; `http`, `storage`, … as the policy grants
them), so the runner never refuses it for an import the policy does not
grant. This package wraps the bindings componentize-py generates for that
world (the `wit_world` module) in a few helpers:

    from duplex_plugin import Plugin, Params, passed, failed, inconclusive, log, http

    plugin = Plugin("my-checks", "0.1.0", "What it checks")

    @plugin.check("answers", "The service answers", {
        "type": "object",
        "properties": {"url": {"type": "string"}},
        "required": ["url"],
        "additionalProperties": False,
    })
    def answers(ctx, params: Params):
        r = http.get(params.require("url", str))
        return passed("it answers") if r.status == 200 else failed(f"status {r.status}")

    WitWorld = plugin.world()   # what componentize-py exports

A check gets the call context (`ctx.request`, `ctx.attempt`, `ctx.side`,
`ctx.state`, `ctx.session_id`) and its `with:` parameters parsed from JSON.
It returns `passed(...)`, `failed(...)` or `inconclusive(...)`; raising
`ParamError` (or any other exception) makes the call an error (`err` in the
WIT contract: the call itself was wrong), with the message.

The capabilities the policy grants have helpers too: `http` (requests to
granted origins), `storage` (the plugin's key-value store: `get_json`,
`set_json`, ...) and `files` (`files.In("releases").read_text(...)`,
`stat`, `list`, `write_text`, `free_space`). Each needs the interface in the
plugin's world (`import duplex:plugin/storage@0.1.0;` ...) and the grant in
the policy; the other interfaces (`exec`, `artifacts`) are the generated
bindings, `wit_world.imports.exec` and `.artifacts`.

Plugins get no clock (WASI clocks read 0 unless granted): count attempts
(`ctx.attempt`) instead of measuring time, and bound waits with request
timeouts.
"""

from .plugin import Plugin, Params, ParamError, passed, failed, inconclusive
from . import log
from . import http
from . import storage
from . import files

__all__ = [
    "Plugin",
    "Params",
    "ParamError",
    "passed",
    "failed",
    "inconclusive",
    "log",
    "http",
    "storage",
    "files",
]
