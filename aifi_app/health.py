"""The health check a hospital's monitoring polls: ``aifi-app status --json``'s exit code.

====  ========  ====================================================================
exit  status    when
====  ========  ====================================================================
0     healthy   the service runs (fresh heartbeat) and nothing below is wrong
1     degraded  it runs, but: the PACS does not accept connections, results wait for
                a retry, jobs failed, the data volume is low on space, or it wrote a
                crash report since it started
2     down      no service: no heartbeat, a stale one (older than 45 s), or it stopped
====  ========  ====================================================================

The running service writes ``health.json`` in the data directory every 10 s
(:class:`Heartbeat`): its process id, when it started, the time, and whether the PACS
accepted a TCP connection. ``status`` reads it with the queue database; it needs no
connection to the service. The reasons are words without patient data.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aifi_app.config.settings import Settings
from aifi_app.store.database import Database

log = logging.getLogger(__name__)

HEALTHY, DEGRADED, DOWN = 0, 1, 2
HEARTBEAT_FILE = "health.json"
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 45.0
LOW_DISK_BYTES = 5 * 1024**3
"""Free space on the data volume below which the appliance reports degraded."""


def _write_atomically(path: Path, record: dict[str, Any]) -> None:
    # a temporary file of its own per writer: the heartbeat thread and a beat at stop (or
    # a test's) may write at the same moment
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp: mode 0600
            json.dump(record, f)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _pacs_reachable(settings: Settings, timeout: float = 3.0) -> bool | None:
    node = settings.pacs_node
    if node is None or node.protocol != "dicom":
        return None
    try:
        with socket.create_connection((node.host, node.port), timeout=timeout):
            return True
    except OSError:
        return False


class Heartbeat:
    """Writes ``health.json`` every :data:`HEARTBEAT_SECONDS` on its own thread."""

    def __init__(self, data_dir: Path, settings: Callable[[], Settings]) -> None:
        self.path = data_dir / HEARTBEAT_FILE
        self._settings = settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at = time.time()
        self.pacs_reachable: bool | None = None

    def beat(self) -> None:
        _write_atomically(
            self.path,
            {
                "pid": os.getpid(),
                "started_at": self.started_at,
                "heartbeat_at": time.time(),
                "pacs_reachable": self.pacs_reachable,
                "running": True,
            },
        )

    def start(self) -> None:
        self.beat()
        self._thread = threading.Thread(target=self._loop, name="aifi-heartbeat", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.pacs_reachable = _pacs_reachable(self._settings())
                self.beat()
            except Exception as exc:  # never let monitoring take the service down
                log.error("heartbeat failed (%s)", type(exc).__name__)
            self._stop.wait(HEARTBEAT_SECONDS)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        with contextlib.suppress(OSError):
            _write_atomically(
                self.path,
                {"pid": os.getpid(), "started_at": self.started_at, "running": False,
                 "stopped_at": time.time()},
            )  # fmt: skip


def _process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but not ours to signal (or Windows): trust the heartbeat
        return True
    return True


def check(
    db: Database, data_dir: Path, *, now: float | None = None, disk_low_bytes: int = LOW_DISK_BYTES
) -> dict[str, Any]:
    """The health: ``status`` (healthy/degraded/down), ``exit_code`` and ``reasons``."""
    t = time.time() if now is None else now
    reasons: list[str] = []
    try:
        beat = json.loads((data_dir / HEARTBEAT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        beat = None
    if beat is None:
        return _result(DOWN, ["the service has not run here (no heartbeat)"])
    if not beat.get("running"):
        return _result(DOWN, ["the service stopped"])
    age = t - float(beat.get("heartbeat_at", 0))
    if age > STALE_SECONDS or not _process_alive(int(beat.get("pid", 0))):
        return _result(DOWN, [f"no heartbeat for {age:.0f} s: the service is not running"])
    if beat.get("pacs_reachable") is False:
        reasons.append("the PACS does not accept connections")
    waiting = db.query(
        "SELECT COUNT(*) AS n FROM jobs WHERE state = 'result_received' AND attempts > 0"
    )[0]["n"]
    if waiting:
        reasons.append(f"{waiting} job(s) wait to be delivered after a failed attempt")
    failed = db.query("SELECT COUNT(*) AS n FROM jobs WHERE state = 'failed'")[0]["n"]
    if failed:
        reasons.append(f"{failed} job(s) failed")
    free = shutil.disk_usage(data_dir).free
    if free < disk_low_bytes:
        reasons.append(f"low disk space: {free / 1024**3:.1f} GiB free on the data volume")
    crashes = db.query(
        "SELECT COUNT(*) AS n FROM audit_events WHERE event = 'crash' AND at >= ?",
        (float(beat.get("started_at", 0)),),
    )[0]["n"]
    if crashes:
        reasons.append(f"{crashes} crash report(s) since the service started")
    return _result(DEGRADED if reasons else HEALTHY, reasons)


def _result(code: int, reasons: list[str]) -> dict[str, Any]:
    name = {HEALTHY: "healthy", DEGRADED: "degraded", DOWN: "down"}[code]
    return {"status": name, "exit_code": code, "reasons": reasons}
