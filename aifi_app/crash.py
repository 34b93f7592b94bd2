"""Crash reports without patient data.

An unhandled exception in the main thread (``sys.excepthook``) or any other thread
(``threading.excepthook``) writes ``data_dir/crash/crash-<time>-<pid>.json`` (0600) and
an audit event (category ``service``, event ``crash``). A report holds the exception's
type, the traceback's frames as file (name only), line and function, the types of the
exceptions it was chained to, the thread's name and versions. Never the exception's
message and never local variables: either can quote patient data (see
:mod:`aifi_app.fault_logging`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import sys
import threading
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any

from aifi_app import __version__
from aifi_app.file_modes import private_dir

log = logging.getLogger(__name__)

_VERSIONED = ("pydicom", "pynetdicom", "highdicom", "onnxruntime", "numpy")

AuditSink = Callable[[str], None]
"""Writes one audit event's detail (category service, event crash)."""


def _frames(tb: TracebackType | None) -> list[dict[str, Any]]:
    return [
        {"file": Path(f.filename).name, "line": f.lineno, "function": f.name}
        for f in traceback.extract_tb(tb)
    ]


def _versions() -> dict[str, str]:
    found = {"aifi-app": __version__, "python": platform.python_version()}
    for name in _VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def report(exc: BaseException, thread_name: str) -> dict[str, Any]:
    """What a crash report holds (no message, no locals)."""
    chain: list[str] = []
    cause = exc.__cause__ or exc.__context__
    while cause is not None and len(chain) < 10:
        chain.append(type(cause).__qualname__)
        cause = cause.__cause__ or cause.__context__
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "thread": thread_name,
        "exception_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "frames": _frames(exc.__traceback__),
        "caused_by": chain,
        "versions": _versions(),
        "platform": platform.platform(terse=True),
        "pid": os.getpid(),
    }


def write_report(
    data_dir: Path, exc: BaseException, thread_name: str, audit_sink: AuditSink | None
) -> Path:
    folder = private_dir(data_dir / "crash")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = folder / f"crash-{stamp}-{os.getpid()}-{time.monotonic_ns() % 10**6}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(report(exc, thread_name), f, indent=2)
    log.critical(
        "unhandled %s in thread %s: crash report %s", type(exc).__name__, thread_name, path.name
    )
    if audit_sink is not None:
        try:
            audit_sink(
                f"unhandled {type(exc).__name__} in thread {thread_name}; report {path.name}"
            )
        except Exception as audit_exc:  # the crash may be the database's
            log.error("could not audit the crash (%s)", type(audit_exc).__name__)
    return path


class CrashHandler:
    """Installs the hooks; :meth:`uninstall` puts the previous ones back."""

    def __init__(self, data_dir: Path, audit_sink: AuditSink | None = None) -> None:
        self.data_dir = data_dir
        self.audit_sink = audit_sink
        self._previous_sys: Any = None
        self._previous_threading: Any = None

    def install(self) -> CrashHandler:
        self._previous_sys = sys.excepthook
        self._previous_threading = threading.excepthook
        sys.excepthook = self._on_main
        threading.excepthook = self._on_thread
        return self

    def uninstall(self) -> None:
        if self._previous_sys is not None:
            sys.excepthook = self._previous_sys
            threading.excepthook = self._previous_threading

    def handle(self, exc: BaseException, thread_name: str) -> Path | None:
        try:
            return write_report(self.data_dir, exc, thread_name, self.audit_sink)
        except Exception as exc2:  # a crash handler must not crash
            log.error("could not write a crash report (%s)", type(exc2).__name__)
            return None

    def _on_main(
        self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, KeyboardInterrupt):
            return
        self.handle(exc, "main")
        # the default hook would print the message to stderr (and the log): say less
        sys.stderr.write(f"aifi-app: unhandled {exc_type.__name__}; see data_dir/crash\n")

    def _on_thread(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or isinstance(args.exc_value, SystemExit):
            return
        name = args.thread.name if args.thread is not None else "unknown"
        self.handle(args.exc_value, name)
