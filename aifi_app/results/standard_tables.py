"""highdicom's tables of the standard, made ready once and kept out of the garbage collector's way.

The first result object a process builds makes highdicom read its tables of the standard.
The module-attribute table, parsed whole, is ~200,000 lists and dicts, ~70 MB, kept by its
``lru_cache`` for the life of the process (a third of the service's peak while it made a
CT's results, and of the pre-pseudonymiser's child's): :func:`load_and_freeze` has
highdicom read it a module at a time instead (:mod:`aifi_app.results.module_attributes`:
the few dozen modules a job's results ask for; the modules that import highdicom to
build results install it as they are imported, before highdicom may load the whole
table), and loads the two small tables (IOD to modules, SOP class to IOD).

Every full (generation 2) collection walks what lives: with a job's 500 CT images and its
SEG being built, the process held ~360,000 tracked objects (with the whole table) and a
full collection took 0.12-0.4 s, holding the interpreter's lock, and one fell into
building the CT's SEG in most runs (``bench/ct_results_bench.py`` prints them). So
:func:`load_and_freeze` (called as a job starts building its results) then
:func:`gc.freeze`-s every object alive, as the desktop window does once it is built
(:mod:`aifi_app.gui.garbage`): later full collections walk only what was made since.

Not done when the worker starts: at the first result, as before, it does not weigh on
receiving the first study (parsing the whole 22 MB table at start once made glibc's malloc
serve large allocations from its heap instead of mmap, and receiving a 500-slice CT grew
the service by 44 MB instead of under 26 MB: ``tests/integration/test_large_ct_receive.py``;
the table is now read in 64 KiB blocks).

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

from aifi_app.results import module_attributes

__all__ = ["load_and_freeze", "loaded"]

_TABLES = ("get_iod_module_map", "get_sop_class_iod_map")
"""The small tables, loaded whole (the module-attribute table: read a module at a time)."""
_lock = threading.Lock()
_loaded = False


def load_and_freeze() -> None:
    """Have highdicom read its module-attribute table a module at a time
    (:func:`module_attributes.install`) and load its two small tables of the
    standard (once per process; safe to call again), then exempt every object alive from
    later garbage collections.

    A highdicom without one of these private functions (a later release) is left to load
    what it needs when it needs it; the freeze is done all the same."""
    global _loaded
    with _lock:
        if _loaded:
            return
        module_attributes.install()
        for name in _TABLES:
            table = getattr(_standard_utils, name, None)
            if callable(table):
                table()
        gc.freeze()
        _loaded = True


def loaded() -> bool:
    """Whether :func:`load_and_freeze` has run in this process."""
    return _loaded
