"""Native tests of the Python SDK's own logic (plugin-sdk/python/duplex_plugin),
over the bindings componentize-py generates for py-http-health's world.

tests/python_plugin.rs runs them (`python -m unittest`) with those bindings
and the SDK on PYTHONPATH; what reaches the host (http, log) is tested
through the real component there.
"""

import json
import unittest

from componentize_py_types import Err
from wit_world.imports import types

from duplex_plugin import Plugin, Params, ParamError, passed, failed, inconclusive


def ctx(params: str, attempt: int = 1) -> types.CallContext:
    return types.CallContext(
        session_id="s",
        state=types.UpgradeState.PREPARE_SPLIT,
        request="check/x",
        attempt=attempt,
        side=types.Side.PRODUCTION,
        params=params,
    )


def sample() -> Plugin:
    plugin = Plugin("sample", "1.2.3", "A sample")

    @plugin.check("min", "At least `min`", {
        "type": "object",
        "properties": {"min": {"type": "integer"}, "value": {"type": "integer"}},
        "required": ["min"],
    })
    def at_least(c, params: Params):
        value = params.optional("value", int, 0)
        if value >= params.require("min", int):
            return passed(f"{value} is enough", value=value, per_cent=100)
        return failed(f"{value} is too little", value=value)

    @plugin.check("boom", "Raises")
    def boom(c, params):
        raise KeyError("nope")

    @plugin.check("wrong", "Returns the wrong thing")
    def wrong(c, params):
        return "yes"

    @plugin.check("unsure", "Inconclusive on the first attempt")
    def unsure(c, params):
        if c.attempt == 1:
            return inconclusive("not yet")
        return passed("now")

    return plugin


class Describe(unittest.TestCase):
    def test_info_lists_the_checks_with_their_schemas_as_json(self):
        info = sample().info()
        self.assertEqual((info.name, info.version, info.description), ("sample", "1.2.3", "A sample"))
        self.assertEqual([c.name for c in info.checks], ["min", "boom", "wrong", "unsure"])
        schema = json.loads(info.checks[0].params_schema)
        self.assertEqual(schema["required"], ["min"])
        # A check registered without a schema takes no parameters.
        self.assertEqual(
            json.loads(info.checks[1].params_schema),
            {"type": "object", "additionalProperties": False},
        )
        self.assertEqual((info.operations, info.installers, info.reports_partner), ([], [], False))

    def test_a_check_registered_twice_is_refused(self):
        plugin = sample()
        with self.assertRaises(ValueError):
            plugin.check("min", "again")(lambda c, p: passed("x"))


class Checks(unittest.TestCase):
    def test_verdicts_messages_and_observations(self):
        plugin = sample()
        r = plugin.run_check(ctx('{"min": 3, "value": 5}'), "min")
        self.assertEqual(r.verdict, types.Verdict.PASS)
        self.assertEqual(r.message, "5 is enough")
        self.assertEqual(r.observations, [("value", "5"), ("per-cent", "100")])
        r = plugin.run_check(ctx('{"min": 3}'), "min")
        self.assertEqual((r.verdict, r.message), (types.Verdict.FAIL, "0 is too little"))
        self.assertEqual(plugin.run_check(ctx("{}"), "unsure").verdict, types.Verdict.INCONCLUSIVE)
        self.assertEqual(plugin.run_check(ctx("{}", attempt=2), "unsure").verdict, types.Verdict.PASS)

    def assertCallError(self, plugin, params, name, message):
        with self.assertRaises(Err) as e:
            plugin.run_check(ctx(params), name)
        self.assertEqual(e.exception.value, message)

    def test_wrong_calls_are_errors_with_the_reason(self):
        plugin = sample()
        self.assertCallError(plugin, "{}", "nope", "no check `nope` (this plugin has: min, boom, wrong, unsure)")
        self.assertCallError(plugin, "{}", "min", "check `min`: missing parameter `min`")
        self.assertCallError(plugin, '{"min": "3"}', "min", 'check `min`: parameter `min` must be an integer, not "3"')
        self.assertCallError(plugin, '{"min": true}', "min", "check `min`: parameter `min` must be an integer, not true")
        self.assertCallError(plugin, "[1]", "min", "check `min`: the parameters are not an object: [1]")
        self.assertCallError(plugin, "{", "min", "check `min`: the parameters are not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)")
        self.assertCallError(plugin, "{}", "boom", "check `boom` raised KeyError: 'nope'")
        self.assertCallError(plugin, "{}", "wrong", "check `wrong` returned str, not passed(...), failed(...) or inconclusive(...)")

    def test_empty_params_are_an_empty_object(self):
        self.assertEqual(Params.parse(""), {})


class ParamTypes(unittest.TestCase):
    def test_numbers_strings_and_defaults(self):
        p = Params({"n": 2, "f": 1.5, "s": "x", "b": False, "none": None})
        self.assertEqual(p.require("n", int), 2)
        self.assertEqual(p.require("n", float), 2)  # a JSON integer is a number
        self.assertEqual(p.require("f", float), 1.5)
        self.assertEqual(p.require("b", bool), False)
        self.assertEqual(p.optional("missing", str, "d"), "d")
        self.assertEqual(p.optional("none", str, "d"), "d")
        with self.assertRaises(ParamError):
            p.require("f", int)
        with self.assertRaises(ParamError):
            p.require("b", int)
        with self.assertRaises(ParamError):
            p.optional("s", list)


class World(unittest.TestCase):
    def test_the_world_describes_checks_and_refuses_what_the_plugin_lacks(self):
        world = sample().world()()
        self.assertEqual(world.describe().name, "sample")
        self.assertEqual(world.check(ctx('{"min": 0}'), "min").verdict, types.Verdict.PASS)
        progress = world.operate(ctx("{}"), types.HardwareOp.SPLIT)
        self.assertIsInstance(progress, types.Progress_Failed)
        self.assertEqual(progress.value.message, "plugin `sample` has no operation `split`")
        self.assertFalse(progress.value.retryable)
        with self.assertRaises(Err) as e:
            world.partner(ctx("{}"))
        self.assertEqual(e.exception.value, "plugin `sample` does not report the partner")


if __name__ == "__main__":
    unittest.main()
