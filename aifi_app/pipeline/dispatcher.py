"""The dispatcher thread: sends built results to the PACS, with bounded retries.

A result object counts as delivered only when the PACS answered success (or a warning,
which means it stored the object). A failed send waits ``retry_initial_seconds``, doubling
up to ``retry_max_seconds``; a job whose results are still not delivered after
``give_up_after_hours`` fails with the reason, and a person can retry it. Result objects
have stable SOP Instance UIDs, so sending one again after a crash replaces nothing and adds
nothing at the PACS.

A job still being finished may hand result objects over early (:meth:`Dispatcher.deliver_early`,
:mod:`aifi_app.pipeline.early_delivery`): they are sent at once, and when the job is
delivered those the PACS stored are marked delivered instead of being sent again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aifi_app.config.settings import Settings
from aifi_app.dicom_node.peers import dicom_peer
from aifi_app.dicom_node.storage_scu import AssociationFailed, SendOutcome, send_files
from aifi_app.failpoints import failpoint
from aifi_app.pipeline.background_loop import BackgroundLoop
from aifi_app.pipeline.early_delivery import EarlyBatch, EarlyObject, EarlySends
from aifi_app.store import audit, jobs, node_checks, stage_times
from aifi_app.store.database import Database, now
from aifi_app.store.states import JobState, OutputState

log = logging.getLogger(__name__)


def backoff_seconds(attempts: int, initial: float, maximum: float) -> float:
    """Wait before attempt ``attempts + 1``: initial * 2^(attempts-1), at most ``maximum``."""
    return float(min(maximum, initial * 2 ** max(0, attempts - 1)))


class Dispatcher(BackgroundLoop):
    thread_name = "aifi-dispatcher"

    def __init__(self, db: Database, data_dir: Path, settings: Callable[[], Settings]) -> None:
        super().__init__()
        self.db = db
        self.data_dir = data_dir
        self._settings = settings
        self.early = EarlySends(db)

    def deliver_early(self, job_id: int, objects: Sequence[EarlyObject]) -> EarlyBatch | None:
        """Send these written, re-identified result objects of a job still being finished
        now, on an association and a thread of their own; None (nothing sent) when no
        PACS is configured or it cannot be addressed. Safe from any thread."""
        settings = self._settings()
        node = settings.pacs_node
        if node is None or not objects:
            return None
        try:
            peer = dicom_peer(node, settings.node)
        except AssociationFailed as exc:
            log.warning("early delivery not started: %s", exc)
            return None
        calling = settings.delivery.calling_ae_title or settings.node.ae_title
        timeout = settings.delivery.timeout_seconds

        def send(paths: Sequence[Path], on_data_sent: Callable[[int], object]) -> list[SendOutcome]:
            return send_files(
                peer, paths, calling_ae_title=calling, timeout=timeout, on_data_sent=on_data_sent
            )

        return self.early.start(job_id, objects, send, pacs=peer.ae_title, node=node.name)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the loop, then wait for the early sends still running (within ``timeout``)."""
        super().stop(timeout)
        self.early.close(timeout)

    def abandon_early(self, job_id: int) -> None:
        """The job failed before recording its results (see :meth:`EarlySends.abandon`)."""
        self.early.abandon(job_id)

    def run_once(self) -> bool:
        did = False
        for job_id in jobs.jobs_in_state(self.db, JobState.RESULT_RECEIVED, ready_at=now()):
            if self.stopping:
                break
            self.deliver(job_id)
            did = True
        return did

    def deliver(self, job_id: int) -> None:
        settings = self._settings()
        pending = [
            o for o in jobs.outputs(self.db, job_id) if o["state"] == OutputState.PENDING.value
        ]
        early = self.early.take(job_id, settings.delivery.timeout_seconds)
        if early:
            pending = self._apply_early(job_id, pending, early)
        if pending:
            node = settings.pacs_node
            if node is None:
                self._wait(job_id, "no PACS configured: results wait", settings)
                return
            calling = settings.delivery.calling_ae_title or settings.node.ae_title
            try:
                peer = dicom_peer(node, settings.node)
                with stage_times.timed(self.db, job_id, stage_times.DELIVER):
                    outcomes = send_files(
                        peer,
                        [self.data_dir / o["path"] for o in pending],
                        calling_ae_title=calling,
                        timeout=settings.delivery.timeout_seconds,
                    )
            except (AssociationFailed, OSError) as exc:
                node_checks.record(self.db, node.name, node_checks.DELIVERY, False, str(exc))
                self._wait(job_id, f"PACS not reachable: {exc}", settings)
                return
            failpoint("delivery.after_send")
            failures = []
            for out, outcome in zip(pending, outcomes, strict=True):
                if outcome.ok:
                    jobs.mark_output_delivered(
                        self.db, out["id"], f"stored by {peer.ae_title} (0x{outcome.status:04X})"
                    )
                else:
                    status = "no response" if outcome.status is None else f"0x{outcome.status:04X}"
                    error = f"{peer.ae_title} answered {status} {outcome.error}".strip()
                    jobs.record_output_failure(self.db, out["id"], error)
                    failures.append(f"{out['kind']}: {error}")
            node_checks.record(
                self.db,
                node.name,
                node_checks.DELIVERY,
                not failures,
                "; ".join(failures) or f"{len(pending)} object(s) stored",
            )
            if failures:
                self._wait(job_id, "; ".join(failures), settings)
                return
        failpoint("delivery.before_delivered")
        jobs.transition(
            self.db,
            job_id,
            JobState.RESULT_RECEIVED,
            JobState.DELIVERED,
            detail="all results in PACS",
        )

    def _apply_early(
        self, job_id: int, pending: list[dict[str, Any]], batches: list[EarlyBatch]
    ) -> list[dict[str, Any]]:
        """Record what the job's early sends achieved: the pending outputs the PACS stored
        are delivered, the others' failures recorded (they are sent again now); returns
        those left to send."""
        answers: dict[str, tuple[EarlyBatch, str | None]] = {}
        for batch in batches:
            for n, obj in enumerate(batch.objects):
                outcome = batch.outcomes[n] if n < len(batch.outcomes) else None
                if outcome is None:
                    error = batch.error or "not sent"
                elif outcome.ok:
                    error = None
                else:
                    status = "no response" if outcome.status is None else f"0x{outcome.status:04X}"
                    error = f"{batch.pacs} answered {status} {outcome.error}".strip()
                answers[obj.sop_instance_uid] = (batch, error)
        left = []
        failures = []
        for out in pending:
            answered = answers.get(str(out["sop_instance_uid"]))
            if answered is None:
                left.append(out)
                continue
            batch, error = answered
            if error is None:
                with contextlib.suppress(jobs.StaleStateError):
                    jobs.mark_output_delivered(
                        self.db,
                        int(out["id"]),
                        f"stored by {batch.pacs} while the job's other results were made",
                    )
                continue
            jobs.record_output_failure(self.db, int(out["id"]), error)
            failures.append(f"{out['kind']}: {error}")
            left.append(out)
        for batch in batches:
            stored = len(batch.stored())
            node_checks.record(
                self.db,
                batch.node,
                node_checks.DELIVERY,
                not batch.error and stored == len(batch.objects),
                batch.error or f"{stored} of {len(batch.objects)} object(s) stored",
                at=batch.finished_at,
            )
        if failures:
            log.warning("job %d: early delivery failed for %d object(s)", job_id, len(failures))
        if not left:
            stage_times.record(
                self.db,
                job_id,
                stage_times.DELIVER,
                min(b.started_at for b in batches),
                max(b.finished_at for b in batches),
            )
        return left

    def _wait(self, job_id: int, reason: str, settings: Settings) -> None:
        """Schedule the next attempt, or fail the job when the give-up time has passed."""
        row = jobs.job(self.db, job_id)
        attempts = int(row["attempts"]) + 1
        waited = now() - float(row["updated_at"])
        if waited > settings.delivery.give_up_after_hours * 3600:
            jobs.transition(
                self.db,
                job_id,
                JobState.RESULT_RECEIVED,
                JobState.FAILED,
                reason=f"not delivered after {attempts} attempts: {reason}",
            )
            return
        delay = backoff_seconds(
            attempts, settings.delivery.retry_initial_seconds, settings.delivery.retry_max_seconds
        )
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE jobs SET attempts = ?, next_attempt_at = ?, reason = ? WHERE id = ?"
                " AND state = ?",
                (attempts, now() + delay, reason, job_id, JobState.RESULT_RECEIVED.value),
            )
            if cur.rowcount == 1:
                audit.record(
                    conn,
                    "delivery",
                    "retry_scheduled",
                    job_id=job_id,
                    detail=f"attempt {attempts} failed: {reason}; next in {delay:g} s",
                )
        log.warning("job %d: delivery attempt %d failed; next in %g s", job_id, attempts, delay)
