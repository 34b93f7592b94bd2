"""Give the C heap's free memory back to the system (glibc's ``malloc_trim``).

CPython keeps small objects in arenas it frees once they are empty, but glibc's malloc
keeps freed blocks of its heap for later allocations: after a burst of work (the SEG
built ahead in the pre-pseudonymiser's child: ~25 MB of pydicom objects) the process
stays that much larger until the heap is trimmed. :func:`trim` frees what the work left
for the collector (reference cycles) and then trims. Where there is no glibc (Windows,
macOS, musl) it only collects. Thread: any (it holds malloc's locks a few ms).
"""

from __future__ import annotations

import ctypes
import functools
import gc
import sys
from collections.abc import Callable

__all__ = ["trim"]


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
    """Collect garbage, then give the heap's free pages back; True when the heap could
    be trimmed (glibc) and gave some back."""
    gc.collect()
    function = _malloc_trim()
    return bool(function(0)) if function is not None else False
