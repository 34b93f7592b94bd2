"""Give the C heap's free memory back to the system (glibc's ``malloc_trim``).

glibc's malloc keeps the freed blocks of its heap for later allocations; CPython gives
back its own arenas (small objects) only once one is wholly free. After a burst of work
that is then garbage (a CT's SEG built ahead in the pre-pseudonymiser's child: ~45 MB
at its peak) :func:`trim` frees what only the collector frees (reference cycles) and
trims the heap: measured, the child then gives back 2-4 MB of it; the rest is in
CPython's arenas, given back (by CPython) once each is wholly free, which is why what a
build loads and keeps is loaded before it (``aifi_app.pipeline.seg_ahead.rehearse``). Where
there is no glibc (Windows, macOS, musl) it only collects. Thread: any (it holds
malloc's locks a few ms).
"""

from __future__ import annotations

import ctypes
import functools
import gc
import sys
from collections.abc import Callable

__all__ = ["give_back", "trim"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):  # not glibc
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    trimmed: Callable[[int], int] = function
    return trimmed


def trim() -> bool:
    """Collect garbage, then give the heap's free pages back (:func:`give_back`)."""
    gc.collect()
    return give_back()


def give_back() -> bool:
    """Give the heap's free pages back, without collecting first (for a caller that has
    just collected); True when the heap could be trimmed (glibc) and gave some back."""
    function = _malloc_trim()
    return bool(function(0)) if function is not None else False
