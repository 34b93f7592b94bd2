"""Named crash points for the recovery tests (the technique of FoundationDB and fail-rs).

``AIFI_FAILPOINTS=name1,name2`` in the environment makes the process kill itself with
SIGKILL when it reaches one of those points, exactly as a power cut would stop it there.
Without the variable every point is a set lookup that does nothing. The variable is read
on import; a child process forked from a process that imported this module earlier (the
fork server of :mod:`aifi_app.child_processes`) reads it again
(:func:`arm_from_environment`).
"""

from __future__ import annotations

import os
import signal


def _armed() -> frozenset[str]:
    return frozenset(filter(None, os.environ.get("AIFI_FAILPOINTS", "").split(",")))


_ARMED = _armed()


def arm_from_environment() -> None:
    """Arm the points ``AIFI_FAILPOINTS`` names now (and only those)."""
    global _ARMED
    _ARMED = _armed()


def failpoint(name: str) -> None:
    """Die here, at once and without cleaning up, if the point ``name`` is armed."""
    if name in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
