"""Where the pre-pseudonymising child process starts: at the lowest CPU priority first.

A spawned process imports the module of its target before it runs it, and
:mod:`aifi_app.pipeline.pre_pseudonymise` brings pydicom, the pseudonymiser and the queue
with it (about a second of CPU here), which at normal priority competes with the node's
receiving threads in the first second after a start. This module imports nothing heavy,
so the child lowers its priority before anything else and imports the loop afterwards.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any


def lower_priority() -> None:
    """The lowest CPU priority for this process (``nice 19``), so that receiving comes
    first; where the OS has no ``nice`` (Windows) nothing changes."""
    with contextlib.suppress(AttributeError, OSError):
        os.nice(19)


def child_main(db_path: str, data_dir: str, secret: bytes, inbox: Any, parent_pid: int) -> None:
    """The child process: lower its priority, then run the pre-pseudonymising loop."""
    lower_priority()
    from aifi_app.pipeline.pre_pseudonymise import run_child  # heavy: after lowering

    run_child(db_path, data_dir, secret, inbox, parent_pid)
