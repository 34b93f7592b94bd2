"""Result objects sent to the PACS while their job is still being finished.

A CT's Segmentation takes the PACS a few tenths of a second to store (Orthanc parses its
~400 per-frame functional groups and writes 13 MB); its job's other results (the SR) are
built, re-identified and written meanwhile. So the worker hands each group of a job's
result objects that is re-identified and durably written to the dispatcher at once
(:meth:`EarlySends.start`), and it sends them on an association of their own, on a
thread of their own, before the job records its results. What they achieved is kept in
memory until the dispatcher delivers the job (:meth:`EarlySends.take`): an object the
PACS stored is then marked delivered, any other is sent again as usual. Nothing depends on
it for safety: each object was checked before it was handed over, and a crash loses only
the knowledge that it was sent (it is sent again; its SOP Instance UID is stable, so the
PACS stores nothing twice).

A job that fails after some of its objects were handed over (a later result refused and
quarantined) is :meth:`~EarlySends.abandon`-ed: when its sends end, what the PACS stored
is written to the audit log, so that it is visible beside the failed job.

Thread: :meth:`start` and :meth:`abandon` from the worker, :meth:`take` and :meth:`close`
from the dispatcher; each send runs on its own thread. :meth:`close` waits for the sends
still running before the service closes its database (a send's thread that wrote to a
closed connection crashed the interpreter in a test).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aifi_app.dicom_node.storage_scu import SendOutcome
from aifi_app.fault_logging import log_fault
from aifi_app.store import audit
from aifi_app.store.database import Database, now

log = logging.getLogger(__name__)

Send = Callable[[Sequence[Path], Callable[[int], object]], list[SendOutcome]]
"""Sends files to the PACS over one association (``storage_scu.send_files`` bound to the
PACS), calling the second argument with each file's index once its data is sent; raises
when no association can be made."""


@dataclass(frozen=True)
class EarlyObject:
    """A result object written durably and ready to send."""

    kind: str
    sop_instance_uid: str
    path: Path


@dataclass
class EarlyBatch:
    """One group of a job's result objects, sent on an association of its own."""

    job_id: int
    objects: tuple[EarlyObject, ...]
    pacs: str
    """The PACS's AE title (for the audit)."""
    node: str
    """The PACS's name in the settings (for its node checks)."""
    started_at: float = 0.0
    data_sent_at: float = 0.0
    finished_at: float = 0.0
    outcomes: list[SendOutcome] = field(default_factory=list)
    error: str = ""
    """Why none was sent (no association), in words; empty otherwise."""
    abandoned: bool = False
    data_sent: threading.Event = field(default_factory=threading.Event)
    """Set once the last object's data is with the PACS's socket (or the send ended): the
    PACS works on it from then on, without us."""
    done: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def stored(self) -> list[tuple[EarlyObject, SendOutcome]]:
        """The objects the PACS stored, with its answer."""
        return [(o, out) for o, out in zip(self.objects, self.outcomes, strict=False) if out.ok]


class EarlySends:
    """The early sends of the jobs still being finished, and what they achieved."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._batches: dict[int, list[EarlyBatch]] = {}
        self._running: list[EarlyBatch] = []
        """Every batch whose send may still run (taken, abandoned or not), for :meth:`close`."""
        self._closed = False

    def start(
        self, job_id: int, objects: Sequence[EarlyObject], send: Send, *, pacs: str, node: str
    ) -> EarlyBatch:
        """Send ``objects`` now, on a thread of their own (``pacs``: its AE title; ``node``:
        its name in the settings); the batch, whose ``done`` is set when the send ends."""
        batch = EarlyBatch(job_id, tuple(objects), pacs, node)
        with self._lock:
            self._batches.setdefault(job_id, []).append(batch)
            self._running = [b for b in self._running if not b.done.is_set()] + [batch]
        batch.thread = threading.Thread(
            target=self._send, args=(batch, send), name="aifi-early-send", daemon=True
        )
        batch.thread.start()
        return batch

    def _send(self, batch: EarlyBatch, send: Send) -> None:
        batch.started_at = now()
        last = len(batch.objects) - 1

        def sent(n: int) -> None:
            if n == last:
                batch.data_sent_at = now()
                batch.data_sent.set()

        try:
            batch.outcomes = send([o.path for o in batch.objects], sent)
        except Exception as exc:  # no association: the dispatcher sends them again
            batch.error = str(exc) or type(exc).__name__
        except BaseException as exc:  # pragma: no cover - interpreter shutting down
            batch.error = type(exc).__name__
            raise
        finally:
            batch.finished_at = now()
            batch.data_sent.set()
            if batch.outcomes and batch.data_sent_at:
                log.info(
                    "job %d: %s handed to the PACS early: data sent %.3f s, %d of %d stored"
                    " %.3f s after the hand-over",
                    batch.job_id,
                    "+".join(o.kind for o in batch.objects),
                    batch.data_sent_at - batch.started_at,
                    len(batch.stored()),
                    len(batch.objects),
                    batch.finished_at - batch.started_at,
                )
            with self._lock:
                abandoned = batch.abandoned and not self._closed
                if not abandoned:
                    batch.done.set()
            if abandoned:
                try:
                    self._audit_abandoned(batch)
                finally:
                    batch.done.set()

    def take(self, job_id: int, timeout: float) -> list[EarlyBatch]:
        """The job's batches, each finished (waited for, at most ``timeout`` seconds each;
        one still running then is left out: its objects are sent again); forgotten here."""
        with self._lock:
            batches = self._batches.pop(job_id, [])
        finished = []
        for batch in batches:
            if batch.done.wait(timeout):
                finished.append(batch)
            else:
                log.warning("job %d: an early send did not end in %g s", job_id, timeout)
        return finished

    def abandon(self, job_id: int) -> None:
        """The job failed before recording its results: what its sends stored (or will have
        stored once they end) goes to the audit log."""
        with self._lock:
            batches = self._batches.pop(job_id, [])
            ended = []
            for batch in batches:
                batch.abandoned = True
                if batch.done.is_set():
                    ended.append(batch)
            if self._closed:
                return
        for batch in ended:
            self._audit_abandoned(batch)

    def close(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds in all) for the sends still running, before the
        database closes; a send that ends later records nothing."""
        deadline = time.monotonic() + timeout
        with self._lock:
            running = list(self._running)
        for batch in running:
            batch.done.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._closed = True
            left = [b for b in self._running if not b.done.is_set()]
        if left:
            log.warning("%d early send(s) still running at shutdown", len(left))

    def pending_jobs(self) -> set[int]:
        """Jobs with batches not yet taken (for tests and the status)."""
        with self._lock:
            return set(self._batches)

    def _audit_abandoned(self, batch: EarlyBatch) -> None:
        stored = batch.stored()
        if not stored:
            return
        kinds = ", ".join(o.kind for o, _ in stored)
        try:
            with self.db.transaction() as conn:
                audit.record(
                    conn,
                    "delivery",
                    "stored_before_failure",
                    job_id=batch.job_id,
                    detail=f"{kinds} stored by {batch.pacs} before the job failed",
                )
        except Exception as exc:
            log_fault(log, "job %d: early send not recorded", exc, batch.job_id)
