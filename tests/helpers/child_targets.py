"""Targets for child processes started by the tests of :mod:`aifi_app.child_processes`
(a child imports its target by module name: a test module's own name is not importable
under ``--import-mode=importlib``)."""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from multiprocessing.connection import Connection

from aifi_app.child_processes import current_umask, service_alive
from aifi_app.failpoints import failpoint


def report(conn: Connection, variable: str) -> None:
    """Send what this child sees: the variable's value, whether the modules the fork
    server imports were there before this child imported anything, how many objects are
    frozen, this child's parent and its name as ``ps`` shows it."""
    conn.send(
        {
            "value": os.environ.get(variable),
            "preloaded": "aifi_app.dicom_node.receiver_child" in sys.modules,
            "frozen": gc.get_freeze_count(),
            "gc_enabled": gc.isenabled(),
            "ppid": os.getppid(),
            "umask": current_umask(),
            "comm": _comm(),
        }
    )
    conn.close()


def _comm() -> str | None:
    """This process's name as ``ps`` shows it (Linux), else None."""
    try:
        with open("/proc/self/comm") as comm:
            return comm.read().strip()
    except OSError:
        return None


def reach_failpoint(name: str) -> None:
    """Reach the fail point ``name`` (armed: this child dies of SIGKILL), else end with 0."""
    failpoint(name)


def wait_for_service_end(service_pid: int, ended: str) -> None:
    """Wait (at most a minute) until the service is gone, then write ``ended``."""
    deadline = time.monotonic() + 60
    while service_alive(service_pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    written = f"{ended}.part"
    with open(written, "w") as out:
        json.dump({"service_alive": service_alive(service_pid)}, out)
    os.replace(written, ended)


def log_records(marker: str) -> None:
    """Log ``marker`` at DEBUG, INFO and WARNING, and a fault with its traceback, from
    loggers of the appliance, as a child's code does."""
    import logging

    from aifi_app.fault_logging import log_fault

    log = logging.getLogger("aifi_app.pipeline.pre_pseudonymise")
    log.debug("%s debug", marker)
    log.info("%s info", marker)
    logging.getLogger("aifi_app.dicom_node.receiver_child").warning("%s warning", marker)
    try:
        raise ValueError("a value that must not be logged")
    except ValueError as exc:
        log_fault(log, f"{marker} fault", exc)
