"""Which studies an association that is still open has sent instances of.

A study is complete when no instance of it arrived for its idle time. A short idle time
(seconds) splits a large CT whose transfer pauses for a moment (a disk flush that
stalls, a busy sender) into two studies, each processed on its own: the trouble the
routers of the field report most. While the association that sends a study is open,
the study is therefore not completed by its idle timer (:mod:`aifi_app.pipeline.worker`),
unless nothing of it arrived for :data:`OPEN_ASSOCIATION_HOLD_SECONDS` (a sender that
keeps its association open between studies); when the association ends, the worker is
woken and completes the study at once if its idle time has passed.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Final

OPEN_ASSOCIATION_HOLD_SECONDS: Final = 10.0
"""The longest a study waits beyond its last instance while its association is open
(when its idle time is shorter); an idle time of this or longer is not changed."""


class StudiesInTransfer:
    """The studies (queue ids) of the associations in progress, per association.

    :meth:`begin` and :meth:`end` are called on an association's own thread around its
    work, :meth:`add` on that thread for each instance stored; :meth:`held` from any
    thread. An association served in a receiver process
    (:mod:`aifi_app.dicom_node.receiver_pool`) has no thread here: it is named by
    ``key``, a negative number (thread identifiers are positive)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_thread: dict[int, set[int]] = {}
        self._count: Counter[int] = Counter()

    def begin(self, key: int | None = None) -> None:
        with self._lock:
            self._by_thread.setdefault(threading.get_ident() if key is None else key, set())

    def add(self, study_id: int, key: int | None = None) -> None:
        """The current association (or ``key``'s) stored an instance of ``study_id``."""
        with self._lock:
            studies = self._by_thread.get(threading.get_ident() if key is None else key)
            if studies is None or study_id in studies:
                return
            studies.add(study_id)
            self._count[study_id] += 1

    def end(self, key: int | None = None) -> frozenset[int]:
        """The current association (or ``key``'s) ended; returns the studies it had sent."""
        with self._lock:
            studies = self._by_thread.pop(threading.get_ident() if key is None else key, set())
            for study_id in studies:
                self._count[study_id] -= 1
                if self._count[study_id] <= 0:
                    del self._count[study_id]
            return frozenset(studies)

    def held(self) -> frozenset[int]:
        """The studies an open association has sent instances of."""
        with self._lock:
            return frozenset(self._count)
