"""Our C-STORE SCU, as the dispatcher uses it, timed."""

from __future__ import annotations

import time
from pathlib import Path

from aifi_app.dicom_node.storage_scu import Peer, send_files


def our_scu(paths: list[Path], port: int, called: str) -> float:
    """Send ``paths`` over one association; returns the seconds it took."""
    started = time.perf_counter()
    outcomes = send_files(Peer(called, "127.0.0.1", port), paths, calling_ae_title="AIFI")
    elapsed = time.perf_counter() - started
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} instances not stored: {failed[0]}")
    return elapsed
