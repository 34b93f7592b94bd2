"""Run core functions off the GUI thread; their results come back on the GUI thread.

The Orange3 pattern: the work is a plain function of the core, tested without Qt; a
widget only starts it and takes ``on_done`` / ``on_error`` on the GUI thread. The result
crosses threads through a signal with a queued connection, never by a direct call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal

from aifi_app.fault_logging import log_fault

log = logging.getLogger(__name__)

Callback = Callable[[Any], None]


class _Relay(QObject):
    finished = Signal(object, object, object)  # future, on_done, on_error


class Background:
    """A named pool of worker threads (``workers=1`` keeps every call on one thread)."""

    def __init__(self, name: str, workers: int = 1) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._relay = _Relay()
        self._relay.finished.connect(self._deliver, Qt.ConnectionType.QueuedConnection)
        self._closed = False

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_done: Callback | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> Future[Any]:
        """Run ``fn(*args)`` on a worker thread; call back on the GUI thread. GUI thread only.

        After :meth:`shutdown` nothing runs: the future comes back cancelled.
        """
        if self._closed:
            future: Future[Any] = Future()
            future.cancel()
            return future
        future = self._pool.submit(fn, *args)
        future.add_done_callback(lambda f: self._relay.finished.emit(f, on_done, on_error))
        return future

    def _deliver(self, future: Future[Any], on_done: Callback | None, on_error: Any) -> None:
        if self._closed or future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            if on_error is not None:
                on_error(exc)
            else:
                log_fault(log, "background work failed", exc)
        elif on_done is not None:
            on_done(future.result())

    def shutdown(self) -> None:
        """Wait for running work, drop queued work and every callback still to come."""
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
