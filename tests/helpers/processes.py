"""Processes as the tests see them (Linux ``/proc``)."""

from __future__ import annotations

from pathlib import Path


def process_runs(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
