"""Native tests of the Python SDK's own logic (plugin-sdk/python/duplex_plugin),
over the bindings componentize-py generates for the contract's world
`plugin` (every capability imported).

tests/python_plugin.rs runs them (`python -m unittest`) with those bindings
and the SDK on PYTHONPATH; what reaches the host (http, log) is tested
through the real component there. Here the capability helpers (storage,
files) call stand-ins put in place of the generated import functions, which
only a component can call.
"""

import json
import unittest

from componentize_py_types import Err
from wit_world.imports import types

from duplex_plugin import Plugin, Params, ParamError, passed, failed, inconclusive
from duplex_plugin import files, storage
from wit_world.imports import files as wit_files
from wit_world.imports import storage as wit_storage


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


class Stand:
    """Replaces attributes of a module for one test."""

    def __init__(self, test: unittest.TestCase, module, **fakes):
        for name, fake in fakes.items():
            original = getattr(module, name)
            test.addCleanup(setattr, module, name, original)
            setattr(module, name, fake)


def refuse(message):
    def fail(*args):
        raise Err(message)

    return fail


class Storage(unittest.TestCase):
    def test_json_values_round_trip_and_missing_keys_give_the_default(self):
        kept = {}
        Stand(self, wit_storage,
              get=lambda k: kept.get(k),
              set=lambda k, v: kept.__setitem__(k, v),
              delete=lambda k: kept.pop(k, None),
              list_keys=lambda: sorted(kept))
        self.assertEqual(storage.get_json("seen", 0), 0)
        storage.set_json("seen", {"count": 2, "at": "split"})
        self.assertEqual(kept["seen"], b'{"at": "split", "count": 2}')
        self.assertEqual(storage.get_json("seen"), {"count": 2, "at": "split"})
        storage.set("raw", b"\x00\x01")
        self.assertEqual(storage.get("raw"), b"\x00\x01")
        self.assertEqual(storage.keys(), ["raw", "seen"])
        storage.delete("raw")
        self.assertIsNone(storage.get("raw"))

    def test_a_value_that_is_not_json_names_its_key(self):
        Stand(self, wit_storage, get=lambda k: b"{nope")
        with self.assertRaises(storage.StorageError) as e:
            storage.get_json("state")
        self.assertTrue(str(e.exception).startswith("the value of `state` is not JSON: "), e.exception)

    def test_the_hosts_refusal_is_a_storage_error_with_its_message(self):
        Stand(self, wit_storage, get=refuse("storage is not granted to plugin `p`"))
        with self.assertRaises(storage.StorageError) as e:
            storage.get("k")
        self.assertEqual(str(e.exception), "storage is not granted to plugin `p`")


class Files(unittest.TestCase):
    def test_a_file_is_read_in_chunks_up_to_the_limit(self):
        content = bytes(range(256)) * 700  # 179,200 bytes: three chunks
        asked = []

        def read(root, path, offset, max_bytes):
            asked.append((root, path, offset, max_bytes))
            return content[offset:offset + max_bytes]

        Stand(self, wit_files, read=read)
        releases = files.In("releases")
        self.assertEqual(releases.read("big.bin"), content)
        self.assertEqual([a[2] for a in asked], [0, 65536, 131072, 179200])
        self.assertEqual(asked[0][:2], ("releases", "big.bin"))
        asked.clear()
        self.assertEqual(releases.read("big.bin", max_bytes=70000), content[:70000])
        self.assertEqual([(a[2], a[3]) for a in asked], [(0, 65536), (65536, 4464)])

    def test_text_stat_list_write_and_free_space_go_to_the_grant(self):
        written = {}
        meta = wit_files.Metadata(kind=wit_files.EntryKind.FILE, size=6, modified_ms=1, mode=0o644)
        Stand(self, wit_files,
              read=lambda r, p, o, n: b"2.4.1\n"[o:o + n],
              write=lambda r, p, d: written.__setitem__((r, p), d),
              stat=lambda r, p: meta if p == "current/VERSION" else None,
              list=lambda r, p: [wit_files.DirEntry(name="current", kind=wit_files.EntryKind.SYMLINK)],
              free_space=lambda r: 123)
        rel = files.In("releases")
        self.assertEqual(rel.read_text("current/VERSION").strip(), "2.4.1")
        self.assertEqual(rel.stat("current/VERSION").size, 6)
        self.assertTrue(rel.exists("current/VERSION"))
        self.assertFalse(rel.exists("missing"))
        self.assertEqual([e.name for e in rel.list()], ["current"])
        rel.write_text("status.json", '{"ready": true}')
        self.assertEqual(written, {("releases", "status.json"): b'{"ready": true}'})
        self.assertEqual(rel.free_space(), 123)

    def test_the_hosts_refusal_is_a_files_error_with_its_message(self):
        Stand(self, wit_files, read=refuse("`releases` is not a files grant of plugin `p`"))
        with self.assertRaises(files.FilesError) as e:
            files.In("releases").read_text("x")
        self.assertEqual(str(e.exception), "`releases` is not a files grant of plugin `p`")


if __name__ == "__main__":
    unittest.main()
