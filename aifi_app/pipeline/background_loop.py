"""A thread that repeats one pass of work, sleeping while there is none.

The worker and the dispatcher are both such loops: ``wake`` (safe from any thread) asks
for the next pass at once; a pass that fails is logged without patient data and tried
again after the idle wait, so one fault never stops the loop.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod

from aifi_app.fault_logging import log_fault

log = logging.getLogger(__name__)


class BackgroundLoop(ABC):
    """Subclasses give ``run_once`` (True when it did something) and may tune the wait."""

    thread_name = "aifi-loop"

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def run_once(self) -> bool:
        """One pass; True when it did something (then the next pass follows at once)."""

    def before_loop(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Called once on the loop's thread before the first pass."""

    def idle_wait(self) -> float:
        """Seconds to sleep after a pass that did nothing (unless woken)."""
        return 1.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self, *_: object) -> None:
        """Ask for a pass soon; safe from any thread."""
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _loop(self) -> None:
        self.before_loop()
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception as exc:
                log_fault(log, "%s pass failed; retrying shortly", exc, self.thread_name)
                busy = False
            if not busy:
                self._wake.wait(self.idle_wait())
                self._wake.clear()
