"""A plugin's description, its checks, and the `WitWorld` class it exports."""

import json
from typing import Any, Callable, Dict, List, Optional

from componentize_py_types import Err
from wit_world.imports import types

# A check: (call context, params) -> check result.
CheckFn = Callable[[types.CallContext, "Params"], types.CheckResult]


class ParamError(Exception):
    """A `with:` parameter is missing or has the wrong type: the call is wrong."""


class Params(dict):
    """A check's `with:` block, parsed from the JSON the runner passes.

    The runner already validated it against the check's JSON schema
    (`duplex validate`), so these are a plugin's second line of defence.
    """

    @staticmethod
    def parse(text: str) -> "Params":
        try:
            value = json.loads(text) if text else {}
        except ValueError as e:
            raise ParamError(f"the parameters are not JSON: {e}")
        if not isinstance(value, dict):
            raise ParamError(f"the parameters are not an object: {text}")
        return Params(value)

    def require(self, name: str, kind: type = str) -> Any:
        """The parameter `name`, which must be there and be a `kind`."""
        if name not in self:
            raise ParamError(f"missing parameter `{name}`")
        return self._typed(name, self[name], kind)

    def optional(self, name: str, kind: type = str, default: Any = None) -> Any:
        """The parameter `name` if given (a `kind`), else `default`."""
        if name not in self or self[name] is None:
            return default
        return self._typed(name, self[name], kind)

    @staticmethod
    def _typed(name: str, value: Any, kind: type) -> Any:
        # JSON integers are also numbers; booleans are not integers here.
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ParamError(
                f"parameter `{name}` must be {_kind_name(kind)}, not {json.dumps(value)}"
            )
        return value


def _kind_name(kind: type) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "an object",
    }.get(kind, kind.__name__)


def _observations(obs: Dict[str, Any]) -> List[tuple]:
    # Keyword names are Python identifiers; the log shows them kebab-case.
    return [(k.replace("_", "-"), str(v)) for k, v in obs.items()]


def passed(message: str, **observations: Any) -> types.CheckResult:
    """The check passed; `observations` are measured facts for the activity log."""
    return types.CheckResult(types.Verdict.PASS, message, _observations(observations))


def failed(message: str, **observations: Any) -> types.CheckResult:
    """The check ran and the system is not ready."""
    return types.CheckResult(types.Verdict.FAIL, message, _observations(observations))


def inconclusive(message: str, **observations: Any) -> types.CheckResult:
    """The check could not tell (e.g. the service did not answer yet)."""
    return types.CheckResult(types.Verdict.INCONCLUSIVE, message, _observations(observations))


class _Check:
    def __init__(self, name: str, description: str, schema: dict, fn: CheckFn):
        self.name = name
        self.description = description
        self.schema = schema
        self.fn = fn


class Plugin:
    """A plugin's name, version, description and checks."""

    def __init__(self, name: str, version: str, description: str):
        self.name = name
        self.version = version
        self.description = description
        self._checks: Dict[str, _Check] = {}

    def check(self, name: str, description: str, params_schema: Optional[dict] = None):
        """Registers the decorated function as the check `name`.

        `params_schema` is the JSON Schema of its `with:` block (default: an
        object with no properties allowed).
        """
        schema = params_schema if params_schema is not None else {
            "type": "object",
            "additionalProperties": False,
        }

        def register(fn: CheckFn) -> CheckFn:
            if name in self._checks:
                raise ValueError(f"check `{name}` is registered twice")
            self._checks[name] = _Check(name, description, schema, fn)
            return fn

        return register

    def info(self) -> types.PluginInfo:
        return types.PluginInfo(
            name=self.name,
            version=self.version,
            description=self.description,
            checks=[
                types.CheckInfo(c.name, c.description, json.dumps(c.schema, sort_keys=True))
                for c in self._checks.values()
            ],
            operations=[],
            installers=[],
            reports_partner=False,
        )

    def run_check(self, ctx: types.CallContext, name: str) -> types.CheckResult:
        check = self._checks.get(name)
        if check is None:
            raise Err(f"no check `{name}` (this plugin has: {', '.join(self._checks) or 'none'})")
        try:
            params = Params.parse(ctx.params)
            result = check.fn(ctx, params)
        except ParamError as e:
            raise Err(f"check `{name}`: {e}")
        except Err:
            raise
        except Exception as e:  # a bug in the check: say so, as the call's error
            raise Err(f"check `{name}` raised {type(e).__name__}: {e}")
        if not isinstance(result, types.CheckResult):
            raise Err(
                f"check `{name}` returned {type(result).__name__}, "
                "not passed(...), failed(...) or inconclusive(...)"
            )
        return result

    def world(self) -> type:
        """The class componentize-py instantiates for the component's exports:
        assign it to `WitWorld` in the app module."""
        plugin = self

        class WitWorld:
            def describe(self) -> types.PluginInfo:
                return plugin.info()

            def check(self, ctx: types.CallContext, name: str) -> types.CheckResult:
                return plugin.run_check(ctx, name)

            def operate(self, ctx: types.CallContext, op: types.HardwareOp) -> types.Progress:
                return types.Progress_Failed(
                    types.Failure(f"plugin `{plugin.name}` has no operation `{op.name.lower()}`", False)
                )

            def install(self, ctx: types.CallContext, artifact: types.Artifact) -> types.Progress:
                return types.Progress_Failed(
                    types.Failure(f"plugin `{plugin.name}` installs nothing", False)
                )

            def partner(self, ctx: types.CallContext) -> types.PartnerState:
                raise Err(f"plugin `{plugin.name}` does not report the partner")

        return WitWorld
