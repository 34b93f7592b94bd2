"""Disk readings a test sets in a file, for a :class:`~aifi_app.store.disk_space.DiskGuard`
in any process (a receiver process checks the disk floor itself, and pickles the guard's
reader when it starts)."""

from __future__ import annotations

import json
from pathlib import Path

from aifi_app.store.disk_space import MIB, DiskReading


class DiskReadingsFile:
    """A disk reader whose readings the test writes to ``path``."""

    def __init__(self, path: Path, free_mb: float = 500, total_mb: float = 1000) -> None:
        self.path = path
        self.set(free_mb, total_mb)

    def set(self, free_mb: float, total_mb: float = 1000) -> None:
        self.path.write_text(json.dumps({"free": free_mb * MIB, "total": total_mb * MIB}))

    def break_reading(self) -> None:
        """From now on a reading raises (a volume's driver that fails)."""
        self.path.write_text(json.dumps({"broken": True}))

    def __call__(self, data_dir: Path) -> DiskReading:
        reading = json.loads(self.path.read_text())
        if reading.get("broken"):
            raise RuntimeError("the volume's driver failed")
        return DiskReading(int(reading["free"]), int(reading["total"]))
