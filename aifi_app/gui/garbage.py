"""Keep Python's garbage collector from stalling the GUI thread.

A full (generation 2) collection walks every tracked object of the process: with Qt,
numpy, pydicom and onnxruntime loaded that took 60-250 ms, and it runs on whichever
thread happens to allocate, holding the GIL, so the GUI thread stood still. Objects
alive once the window is built (modules, classes, Qt wrappers) live as long as the
process: :func:`gc.freeze` moves them out of the collector's sight, so later collections
only walk what was made since (queue snapshots, rows).
"""

from __future__ import annotations

import gc


def freeze_start_up_objects() -> None:
    """Exempt every object alive now from later collections.

    No collection first: a full one here would itself stall the window for 100-300 ms;
    whatever garbage exists at this moment (little, at start-up) is kept for good.
    """
    gc.freeze()
