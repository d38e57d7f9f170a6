"""Files beneath the directories the policy grants (`capabilities.files`),
each named by its grant: `files.In("releases").read_text("current/VERSION")`.

Needs a world that imports `duplex:plugin/files@0.1.0`; the bindings are
imported when a helper is called. Paths are relative to the grant's
directory and never leave it (the host refuses `..`, absolute paths and
symlinks out); every refusal raises FilesError with the host's message.
"""

from typing import List, Optional

from componentize_py_types import Err

CHUNK = 64 * 1024


class FilesError(Exception):
    """The host refused: not granted, read-only, outside the grant, missing."""


def _wit():
    from wit_world.imports import files as wit_files

    return wit_files


def _call(fn, *args):
    try:
        return fn(*args)
    except Err as e:
        raise FilesError(str(e.value))


class In:
    """The files of one grant (its `name` in the policy)."""

    def __init__(self, root: str):
        self.root = root

    def read(self, path: str, max_bytes: int = 1 << 20) -> bytes:
        """The file's bytes, at most `max_bytes` (read in chunks)."""
        wit = _wit()
        out = bytearray()
        while len(out) < max_bytes:
            want = min(CHUNK, max_bytes - len(out))
            chunk = _call(wit.read, self.root, path, len(out), want)
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def read_text(self, path: str, max_bytes: int = 1 << 20) -> str:
        return self.read(path, max_bytes).decode("utf-8", errors="replace")

    def write(self, path: str, data: bytes) -> None:
        """Replaces the file (atomically; the grant must be writable)."""
        _call(_wit().write, self.root, path, bytes(data))

    def write_text(self, path: str, text: str) -> None:
        self.write(path, text.encode())

    def stat(self, path: str) -> Optional[object]:
        """The file's metadata (`kind`, `size`, `modified_ms`, `mode`), or None."""
        return _call(_wit().stat, self.root, path)

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    def list(self, path: str = ".") -> List[object]:
        """The directory's entries (`name`, `kind`)."""
        return _call(_wit().list, self.root, path)

    def free_space(self) -> int:
        """Bytes free on the grant's filesystem."""
        return _call(_wit().free_space, self.root)
