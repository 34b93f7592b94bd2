"""highdicom's module-attribute table, read one module at a time from its file.

highdicom answers "which attributes has this module" (``is_attribute_in_iod``,
``construct_module_tree``, a SOP class's Content Date check) from one table of the
standard: a 22 MB JSON file that ``get_module_attribute_map`` parses whole on first use
and keeps for the life of the process, ~70 MB of lists and dicts (436 modules, ~100,000
attributes). A job's results ask for a few dozen modules (those of the CT image, SR and
SEG IODs). :class:`ModuleAttributeTable` is the same mapping (module key to its
attributes, in the file's order, as ``json`` gives them), but it holds only where each
module's list lies in the file (found on first use by reading the file 1 MiB at a time,
each list parsed and dropped: 0.35-0.5 s of CPU, as much as parsing it whole) and the
lists asked for, each parsed from its bytes on first use. :func:`install` has highdicom
use it (the modules that import highdicom to build results call it as they are
imported); a file not of the expected form is loaded whole, as highdicom loads it.

Thread: any (a lock guards the parsed lists).
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any, Final

log = logging.getLogger(__name__)

TABLE_FILE: Final = "_standard/module_attribute_map.json"
"""The table's file in the highdicom package."""
CHUNK_BYTES: Final = 1 << 20
_SPACE: Final = re.compile(r"[ \t\n\r]*")
_DECODER: Final = json.JSONDecoder()

Attributes = list[dict[str, Any]]


class TableFormatError(ValueError):
    """The file is not one JSON object of module keys (nothing installed then)."""


class ModuleAttributeTable(Mapping[str, Attributes]):
    """Module key -> its attributes (each a dict: ``keyword``, ``type``, ``path``), the
    lists parsed from the file when first asked for and kept.

    Where each list lies is found on first use; should the file not be a JSON object of
    lists, the table is ``load_whole()`` (highdicom's own loader) from then on."""

    def __init__(self, path: Path, load_whole: Callable[[], Mapping[str, Attributes]]) -> None:
        self.path = path
        self._load_whole = load_whole
        self._spans: dict[str, tuple[int, int]] | None = None
        self._whole: Mapping[str, Attributes] | None = None
        self._parsed: dict[str, Attributes] = {}
        self._lock = threading.RLock()

    def _index(self) -> Mapping[str, tuple[int, int]] | Mapping[str, Attributes]:
        """The spans (found now, the first time), or the whole table where they
        cannot be found."""
        with self._lock:
            if self._spans is None and self._whole is None:
                try:
                    self._spans = member_spans(self.path)
                except (OSError, TableFormatError) as exc:
                    log.warning("highdicom's module table is loaded whole (%s)", exc)
                    self._whole = self._load_whole()
            return self._spans if self._spans is not None else self._whole or {}

    def __getitem__(self, key: str) -> Attributes:
        with self._lock:
            self._index()
            if self._spans is None:
                return (self._whole or {})[key]
            found = self._parsed.get(key)
            if found is not None:
                return found
            start, end = self._spans[key]
            with self.path.open("rb") as fh:
                fh.seek(start)
                raw = fh.read(end - start)
            value = json.loads(raw)
            if not isinstance(value, list):
                raise TableFormatError(f"module {key!r}: not a list where it was found")
            self._parsed[key] = value
            return value

    def __contains__(self, key: object) -> bool:
        return key in self._index()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._index()))

    def __len__(self) -> int:
        return len(self._index())

    def parsed(self) -> list[str]:
        """The keys of the modules parsed so far (none where it was loaded whole)."""
        with self._lock:
            return list(self._parsed)

    def loaded_whole(self) -> bool:
        """Whether the file was not of the expected form and was loaded whole."""
        with self._lock:
            return self._whole is not None


def _skip_space(text: str, pos: int) -> int:
    match = _SPACE.match(text, pos)
    return pos if match is None else match.end()


def member_spans(path: Path) -> dict[str, tuple[int, int]]:
    """Per member of the JSON object in ``path``, the byte range of its value (a list).

    The bytes are read as Latin-1 text (one character per byte: a character's index is
    its byte offset; the JSON's structure is ASCII, and of what is parsed only the keys
    are kept, decoded as UTF-8 again)."""
    spans: dict[str, tuple[int, int]] = {}
    with path.open("rb") as fh:
        text = ""
        base = 0  # the file offset of text[0]
        at_end = False

        def more(pos: int) -> int:
            """Drop what is read before ``pos``, append the next chunk; the new ``pos``."""
            nonlocal text, base, at_end
            chunk = fh.read(CHUNK_BYTES)
            at_end = len(chunk) < CHUNK_BYTES
            base += pos
            text = text[pos:] + chunk.decode("latin-1")
            return 0

        pos = _skip_space(text, more(0))
        if text[pos : pos + 1] != "{":
            raise TableFormatError("not a JSON object")
        pos += 1
        first = True
        while True:
            # the next member (or the object's end), whole in what is read: a parse
            # that fails or reaches the end of it is tried again with the next chunk
            try:
                start = _skip_space(text, pos)
                if text[start : start + 1] == "}":
                    break
                if not first:
                    if text[start : start + 1] != ",":
                        raise ValueError("no comma between members")
                    start = _skip_space(text, start + 1)
                key, key_end = _DECODER.raw_decode(text, start)
                colon = _skip_space(text, key_end)
                if text[colon : colon + 1] != ":":
                    raise ValueError("no colon after a key")
                value_start = _skip_space(text, colon + 1)
                value, value_end = _DECODER.raw_decode(text, value_start)
                if value_end >= len(text) and not at_end:
                    raise ValueError("what is read ends with the value")
            except (ValueError, IndexError) as exc:
                if at_end:
                    raise TableFormatError(f"not an object of module lists ({exc})") from None
                pos = more(pos)
                continue
            if not isinstance(key, str) or not isinstance(value, list):
                raise TableFormatError("not an object of module lists")
            del value  # only where it lies is kept
            spans[key.encode("latin-1").decode("utf-8")] = (base + value_start, base + value_end)
            pos = value_end
            first = False
    return spans


_installed: ModuleAttributeTable | None = None
_install_lock = threading.Lock()
_USERS: Final = ("highdicom._standard_utils", "highdicom.base", "highdicom.image")
"""The highdicom modules that call ``get_module_attribute_map`` by a name of their own
(imported from ``_standard_utils``); each is pointed at the lean table."""


def install() -> ModuleAttributeTable | None:
    """Have highdicom answer from a :class:`ModuleAttributeTable` from now on (once per
    process; safe to call again; cheap: the file is read on first use): its modules'
    ``get_module_attribute_map`` give it, and the whole table highdicom may have loaded
    already is released.

    A highdicom without these private functions, or whose table is not a file (a later
    release, a zipped install), is left as it is: None then."""
    global _installed
    with _install_lock:
        if _installed is not None:
            return _installed
        users: list[ModuleType] = []
        for name in _USERS:
            try:
                users.append(importlib.import_module(name))
            except ImportError:
                continue
        original = getattr(users[0], "get_module_attribute_map", None) if users else None
        if not callable(original):
            return None
        path = Path(str(resources.files("highdicom").joinpath(TABLE_FILE)))
        if not path.is_file():
            return None
        table = ModuleAttributeTable(path, original)

        def get_module_attribute_map() -> ModuleAttributeTable:
            """highdicom's module-attribute table, read a module at a time."""
            return table

        for module in users:
            if getattr(module, "get_module_attribute_map", None) is original:
                setattr(module, "get_module_attribute_map", get_module_attribute_map)  # noqa: B010
        clear = getattr(original, "cache_clear", None)
        if callable(clear):
            clear()  # the whole table, if it was loaded
        _installed = table
        return table


def installed() -> ModuleAttributeTable | None:
    """The table :func:`install` put in place in this process, if any."""
    return _installed
