"""The data volume's free-space floor: below it the node takes no new data.

The floor is the larger of ``storage.min_free_mb`` and ``storage.min_free_percent`` of the
volume. Below it the DICOM node refuses new associations (A-ASSOCIATE-RJ, transient,
local limit exceeded) and answers a C-STORE that arrives anyway with Out of Resources
before anything is moved into the spool or written to the queue, so that the database and
results always have room. The C-STORE check is made with the received bytes already on
the volume (in ``incoming``), and a refused instance's bytes are removed: the node's own
data never takes the volume below the floor, and the association check catches the volume
filled by anything else. ``aifi-app status --json`` shows the reading and a warning.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class DiskReading:
    free_bytes: int
    total_bytes: int


def read_disk(path: Path) -> DiskReading:
    """Free space for this process (not root's reserve) and size of the volume holding ``path``."""
    usage = shutil.disk_usage(path)
    return DiskReading(free_bytes=int(usage.free), total_bytes=int(usage.total))


@dataclass(frozen=True)
class DiskFloor:
    min_free_mb: float = 0.0
    min_free_percent: float = 0.0

    def floor_bytes(self, total_bytes: int) -> int:
        return int(max(self.min_free_mb * MIB, self.min_free_percent / 100 * total_bytes))

    def shortfall(self, reading: DiskReading) -> str | None:
        """Why the volume is below the floor, in words; None when it is not."""
        floor = self.floor_bytes(reading.total_bytes)
        if reading.free_bytes >= floor:
            return None
        return (
            f"free disk space {reading.free_bytes / MIB:.0f} MB is below the floor of "
            f"{floor / MIB:.0f} MB"
        )


class DiskGuard:
    """Answers "may we take new data?" for the data volume; cheap enough per instance."""

    def __init__(
        self,
        data_dir: Path,
        floor: DiskFloor,
        reader: Callable[[Path], DiskReading] = read_disk,
    ) -> None:
        self.data_dir = data_dir
        self.floor = floor
        self._reader = reader

    def shortfall(self) -> str | None:
        try:
            reading = self._reader(self.data_dir)
        except OSError as exc:
            return f"free disk space cannot be read ({exc.strerror or type(exc).__name__})"
        return self.floor.shortfall(reading)

    def status(self) -> dict[str, Any]:
        """The reading for the status snapshot: figures, the floor and a warning if below."""
        try:
            reading = self._reader(self.data_dir)
        except OSError as exc:
            warning = f"free disk space cannot be read ({exc.strerror or type(exc).__name__})"
            return {
                "free_bytes": None,
                "total_bytes": None,
                "floor_bytes": None,
                "below_floor": True,
                "warning": warning,
            }
        reason = self.floor.shortfall(reading)
        return {
            "free_bytes": reading.free_bytes,
            "total_bytes": reading.total_bytes,
            "floor_bytes": self.floor.floor_bytes(reading.total_bytes),
            "below_floor": reason is not None,
            "warning": None if reason is None else f"{reason}: new studies are refused",
        }
