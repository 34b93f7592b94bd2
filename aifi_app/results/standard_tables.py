"""highdicom's tables of the standard, loaded once and kept out of the garbage collector's way.

The first result object a process builds makes highdicom parse its tables of the standard
(the module-attribute table alone is ~200,000 lists and dicts, ~62 MB, kept by its
``lru_cache`` for the life of the process). Every full (generation 2) collection then
walks them: with a job's 500 CT images and its SEG being built, the process held ~360,000
tracked objects and a full collection took 0.12-0.4 s, holding the interpreter's lock,
and one fell into building the CT's SEG in most runs (``bench/ct_results_bench.py``
prints them). :func:`load_and_freeze` (called as a job starts building its results)
loads the tables the first time and then :func:`gc.freeze`-s every object alive, as the
desktop window does once it is built (:mod:`aifi_app.gui.garbage`): later full
collections walk only what was made since (a job's images and results: ~60,000 objects,
~0.02 s).

Not loaded when the worker starts: parsing the 22 MB table frees large blocks, after
which glibc's malloc serves large allocations from its heap instead of mmap (its dynamic
mmap threshold) and receiving a 500-slice CT grew the service by 44 MB instead of under
26 MB (``tests/integration/test_large_ct_receive.py``); at the first result, as before,
it does not weigh on receiving the first study.

The objects frozen then are mostly those of the whole process's life (modules, the
tables, the service's own objects); the first job's images and results among them are
freed by their reference counts as any object is once unused (a job's images hold no
reference cycle: measured), only garbage in a reference cycle among the frozen is never
collected.
"""

from __future__ import annotations

import gc
import threading

from highdicom import _standard_utils

__all__ = ["load_and_freeze", "loaded"]

_TABLES = ("get_module_attribute_map", "get_iod_module_map", "get_sop_class_iod_map")
_lock = threading.Lock()
_loaded = False


def load_and_freeze() -> None:
    """Load highdicom's tables of the standard (once per process; safe to call again),
    then exempt every object alive from later garbage collections.

    A highdicom without one of these private functions (a later release) is left to load
    what it needs when it needs it; the freeze is done all the same."""
    global _loaded
    with _lock:
        if _loaded:
            return
        for name in _TABLES:
            table = getattr(_standard_utils, name, None)
            if callable(table):
                table()
        gc.freeze()
        _loaded = True


def loaded() -> bool:
    """Whether :func:`load_and_freeze` has run in this process."""
    return _loaded
