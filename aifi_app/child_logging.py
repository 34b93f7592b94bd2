"""The log records of the service's child processes, written by the service.

A child process (a receiver, the pre-pseudonymiser's child) has none of the service's
logging set up: forked by the fork server or spawned, it starts with Python's defaults,
under which INFO is dropped and a WARNING goes to the process's stderr alone, never into
the service's rotating log file. A fault in a child would then be seen nowhere a
radiology department looks.

So each child sends its records to the service instead (:func:`configure_child`: a
:class:`logging.handlers.QueueHandler` on a queue of the service's multiprocessing
context, at the service's level), and a thread of the service hands each to the logger
of its name there (:func:`queue_for`), whose handlers write it as the service's own
records are written (the file and stderr, with the process's name in the record). Only
one process writes the file, so its rotation stays safe.

The records are made as every record of the appliance is made: no patient data in a
message (:mod:`aifi_app.fault_logging`). Thread: any.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import threading
from multiprocessing.context import BaseContext
from typing import Any

__all__ = ["ChildLogs", "configure_child", "queue_for", "stop"]

_lock = threading.Lock()
_listeners: dict[int, tuple[Any, logging.handlers.QueueListener]] = {}
"""Per multiprocessing context (by ``id``), its queue and the service's listener."""


class _ToLoggerOfName(logging.Handler):
    """Hands a child's record to this process's logger of the record's name (its level,
    filters and handlers: as if the record were logged here)."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = logging.getLogger(record.name)
        if logger.isEnabledFor(record.levelno):
            logger.handle(record)


class ChildLogs:
    """What a child needs to send its records to the service (picklable while a child
    is started: the queue of the service's context, and the service's level)."""

    def __init__(self, queue: Any, level: int) -> None:
        self.queue = queue
        self.level = level


def queue_for(context: BaseContext) -> ChildLogs:
    """The service's side: the queue that children started with ``context`` send their
    records on (made, and its listening thread started, once per context)."""
    with _lock:
        found = _listeners.get(id(context))
        if found is None:
            queue = context.Queue()
            listener = logging.handlers.QueueListener(queue, _ToLoggerOfName())
            listener.start()
            if not _listeners:
                atexit.register(stop)  # (before logging's own flush at exit)
            found = _listeners[id(context)] = (queue, listener)
    return ChildLogs(found[0], logging.getLogger().getEffectiveLevel())


def configure_child(logs: ChildLogs) -> None:
    """The child's side, first thing: every record of this process goes to the service
    (and nowhere else), at the service's level; pynetdicom's at WARNING, as there."""
    # (the queue's thread hands the last records over as the child exits, so that a
    # fault logged just before is written too; it could wait there only were the
    # service gone with ~64 KB of a child's records unread)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(logging.handlers.QueueHandler(logs.queue))
    root.setLevel(logs.level)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def stop() -> None:
    """The service's side, at its exit: write what the children sent, stop listening."""
    with _lock:
        listening = list(_listeners.values())
        _listeners.clear()
    for _, listener in listening:
        listener.stop()
