"""Named crash points for the recovery tests (the technique of FoundationDB and fail-rs).

``AIFI_FAILPOINTS=name1,name2`` in the environment makes the process kill itself with
SIGKILL when it reaches one of those points, exactly as a power cut would stop it there.
Without the variable every point is a set lookup that does nothing.
"""

from __future__ import annotations

import os
import signal

_ARMED = frozenset(filter(None, os.environ.get("AIFI_FAILPOINTS", "").split(",")))


def failpoint(name: str) -> None:
    """Die here, at once and without cleaning up, if the point ``name`` is armed."""
    if name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
