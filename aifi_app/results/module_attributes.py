"""highdicom's table of the standard's module attributes, read one module at a time.

highdicom answers "which attributes does this module have" from one JSON file of every
module of the standard (``_standard/module_attribute_map.json``: 22 MB, 436 modules),
parsed whole the first time it is asked (``get_module_attribute_map``): ~62 MB of
lists and dicts kept for the life of the process, and a peak of ~90 MB above what the
process held while the text and the objects are both alive. Building a CT's SEG and its
SR's evidence asks for 29 of the modules (1.3 MB of the text; ~4.5 MB parsed).

:func:`install` gives highdicom a table that answers the same questions from the same
file, parsing a module when it is first asked for (:class:`ModuleAttributes`): an index
of where each module's list lies in the file is made once, reading it in blocks of
64 KiB (under glibc's threshold for giving an allocation a mapping of its own: 1 MiB
blocks, once freed, raised it and left the heap 4 MB larger); a module's list is then
read and parsed from its place in the file, and kept.
Each answer is the list :func:`json.loads` makes of that module's part of the file, as
highdicom's own table holds it (tests compare every module), so what highdicom builds
does not change.

The index relies on the file's layout (one module per line opening ``  "key": [``,
as highdicom writes it); a file laid out otherwise (a later release) is left to
highdicom, which then loads it whole as before. Installed in the pre-pseudonymiser's
child (:mod:`aifi_app.pipeline.seg_ahead`), where it is most of what building the SEG
ahead cost; a process that has loaded the whole table already keeps it.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, Final

from highdicom import _standard_utils

__all__ = ["ModuleAttributes", "index_of", "install", "installed"]

_FUNCTION: Final = "get_module_attribute_map"
_RESOURCE: Final = "_standard/module_attribute_map.json"
_KEY_LINE: Final = re.compile(rb'\n  "([^"\\\n]+)": \[')
"""A module's key at the top level of the file (nested lines are indented further)."""
_BLOCK: Final = 1 << 16
_OVERLAP: Final = 512
"""Bytes of a block looked at again with the next, so that a key line cut by the end of
a block is found whole (a key line is far shorter)."""

Attributes = list[dict[str, Any]]


def index_of(file: Traversable) -> dict[str, tuple[int, int]] | None:
    """Where each module's value lies in ``file`` (offsets of its ``[`` and of the byte
    after its ``]``), or None when the file is not laid out as highdicom writes it."""
    starts: list[tuple[str, int, int]] = []  # key, offset of its line, offset of "["
    size = 0
    with file.open("rb") as fh:
        head = fh.read(2)
        if head != b"{\n":
            return None
        carry = b"\n"
        carry_at = 1  # file offset of carry's first byte
        while True:
            block = fh.read(_BLOCK)
            text = carry + block
            for match in _KEY_LINE.finditer(text):
                at = carry_at + match.start()
                if not starts or at > starts[-1][1]:
                    starts.append((match.group(1).decode(), at, carry_at + match.end() - 1))
            size = carry_at + len(text)
            if not block:
                break
            keep = min(_OVERLAP, len(text))
            carry = text[-keep:]
            carry_at = size - keep
    if not starts:
        return None
    index: dict[str, tuple[int, int]] = {}
    for n, (key, _, value_at) in enumerate(starts):
        end = starts[n + 1][1] if n + 1 < len(starts) else size
        if key in index:
            return None
        index[key] = (value_at, end)
    return index


class ModuleAttributes(Mapping[str, Attributes]):
    """highdicom's module-attribute table over ``file``, each module parsed when first
    asked for and kept (thread-safe)."""

    def __init__(self, file: Traversable, index: dict[str, tuple[int, int]]) -> None:
        self._file = file
        self._index = index
        self._parsed: dict[str, Attributes] = {}
        self._lock = threading.Lock()

    def __getitem__(self, key: str) -> Attributes:
        try:
            return self._parsed[key]
        except KeyError:
            pass
        start, end = self._index[key]  # KeyError for a module the file lacks, as a dict
        with self._lock:
            if key not in self._parsed:
                with self._file.open("rb") as fh:
                    fh.seek(start)
                    text = fh.read(end - start).decode("utf-8")
                # the module's value, then "," (or, after the last module, "}")
                value, after = json.JSONDecoder().raw_decode(text)
                if not isinstance(value, list) or text[after:].strip() not in (",", "}"):
                    raise ValueError(f"module {key!r} of highdicom's table is not a list")
                self._parsed[key] = value
            return self._parsed[key]

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def parsed(self) -> frozenset[str]:
        """The modules parsed so far."""
        return frozenset(self._parsed)


_install_lock = threading.Lock()


def installed() -> ModuleAttributes | None:
    """The table :func:`install` gave highdicom in this process, if any."""
    current = getattr(_standard_utils, _FUNCTION, None)
    table = getattr(current, "table", None)
    return table if isinstance(table, ModuleAttributes) else None


def install() -> bool:
    """Give highdicom's modules the table read one module at a time (once per process;
    safe to call again). False, leaving highdicom as it is, when this process has
    loaded highdicom's whole table already or the file is not laid out as expected."""
    with _install_lock:
        if installed() is not None:
            return True
        original = getattr(_standard_utils, _FUNCTION, None)
        cache_info = getattr(original, "cache_info", None)
        if original is None or cache_info is None or cache_info().currsize:
            return False  # unknown highdicom, or the whole table is loaded: keep it
        file = resources.files("highdicom").joinpath(_RESOURCE)
        index = index_of(file)
        if index is None:
            return False
        table = ModuleAttributes(file, index)
        replacement = _table_function(table, original)
        # highdicom's modules that imported the function by name hold it too
        for name, module in list(sys.modules.items()):
            of_highdicom = name == "highdicom" or name.startswith("highdicom.")
            if of_highdicom and getattr(module, _FUNCTION, None) is original:
                setattr(module, _FUNCTION, replacement)
        return True


def _table_function(
    table: ModuleAttributes, original: Callable[[], object]
) -> Callable[[], ModuleAttributes]:
    """A stand-in for highdicom's ``get_module_attribute_map`` (an ``lru_cache`` of one,
    as highdicom's is, so that what asks for its ``cache_info`` still can); it keeps
    highdicom's own as ``original`` (for tests)."""

    @functools.lru_cache(1)
    def get_module_attribute_map() -> ModuleAttributes:
        return table

    get_module_attribute_map.table = table  # type: ignore[attr-defined]
    get_module_attribute_map.original = original  # type: ignore[attr-defined]
    return get_module_attribute_map
