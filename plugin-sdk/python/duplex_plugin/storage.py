"""The plugin's own key-value store (`capabilities.storage`): kept by the
runner across calls and sessions, in a namespace the policy names.

Needs a world that imports `duplex:plugin/storage@0.1.0`; the bindings are
imported when a helper is called, so plugins without it can import this SDK.
Every refusal of the host (storage not granted, a full store) raises
StorageError with the host's message.
"""

import json
from typing import Any, List, Optional

from componentize_py_types import Err


class StorageError(Exception):
    """The host refused: storage not granted, or the store cannot be used."""


def _wit():
    from wit_world.imports import storage as wit_storage

    return wit_storage


def _call(fn, *args):
    try:
        return fn(*args)
    except Err as e:
        raise StorageError(str(e.value))


def get(key: str) -> Optional[bytes]:
    """The value stored under `key`, or None."""
    return _call(_wit().get, key)


def set(key: str, value: bytes) -> None:  # noqa: A001 (the WIT name)
    _call(_wit().set, key, bytes(value))


def delete(key: str) -> None:
    _call(_wit().delete, key)


def keys() -> List[str]:
    return _call(_wit().list_keys)


def get_json(key: str, default: Any = None) -> Any:
    """The JSON value under `key`, `default` when there is none; a value that
    is not JSON raises StorageError naming the key."""
    raw = get(key)
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError as e:
        raise StorageError(f"the value of `{key}` is not JSON: {e}")


def set_json(key: str, value: Any) -> None:
    set(key, json.dumps(value, sort_keys=True).encode())
