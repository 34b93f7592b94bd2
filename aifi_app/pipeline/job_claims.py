"""Which study or job each worker lane is working on now.

The service runs two worker lanes (:mod:`aifi_app.pipeline.worker`): one takes every
study and job, the other only small studies, so that a radiograph never waits behind a
CT's model. Both see the same queue; a lane works on a study or a job only after it has
claimed it here, so no two lanes ever route the same study or carry the same job (two
pseudonymisations into one work folder would garble it). Claims live in memory only: a
lane that stops releases what it held, and a restart starts from the queue's states.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

Kind = Literal["study", "job"]


class Claims:
    """The studies and jobs that some lane holds now (safe from any thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: set[tuple[Kind, int]] = set()

    @contextmanager
    def hold(self, kind: Kind, key: int) -> Iterator[bool]:
        """Claim ``(kind, key)`` for the ``with`` block; yields False (and claims nothing)
        when another lane holds it."""
        item = (kind, key)
        with self._lock:
            if item in self._held:
                taken = False
            else:
                self._held.add(item)
                taken = True
        try:
            yield taken
        finally:
            if taken:
                with self._lock:
                    self._held.discard(item)

    def held(self, kind: Kind, key: int) -> bool:
        with self._lock:
            return (kind, key) in self._held
