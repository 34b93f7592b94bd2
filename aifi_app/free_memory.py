"""Memory the process no longer uses given back to the operating system.

Python frees a job's objects (a CT's 500 images, its mask, its SEG's metadata) into the
C library's allocator, which keeps most of it: glibc returns the top of its main heap
only, and keeps the free pages inside each thread's arena (the worker's lanes, the
read-ahead, the early sends each allocate in their own) for the next ``malloc``. After
a CT the service stayed ~80 MB above what it held before it. :func:`give_back` asks
glibc to hand back every free page of every arena (``malloc_trim(0)``), as the worker
does once all jobs are done (with its full garbage collection). Elsewhere (Windows,
macOS, a C library without ``malloc_trim``) it does nothing: those allocators return
large free blocks by themselves.

Thread: any (glibc locks each arena while it trims it: ~1-5 ms for a service's heap).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

_TRIM: list[Callable[[int], int] | None] = []
_lock = threading.Lock()


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (Linux), or None where there is none."""
    with _lock:
        if not _TRIM:
            found = None
            if sys.platform.startswith("linux"):
                try:
                    import ctypes

                    function = ctypes.CDLL(None).malloc_trim
                    function.argtypes = [ctypes.c_size_t]
                    function.restype = ctypes.c_int
                    found = function
                except (OSError, AttributeError):  # musl and others: no malloc_trim
                    found = None
            _TRIM.append(found)
        return _TRIM[0]


def give_back() -> bool:
    """Return the C heap's free pages to the operating system; True when the C library
    could (it then says whether any was returned: not needed here)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
