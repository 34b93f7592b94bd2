"""The dispatcher thread: sends built results to the PACS, with bounded retries.

A result object counts as delivered only when the PACS answered success (or a warning,
which means it stored the object). A failed send waits ``retry_initial_seconds``, doubling
up to ``retry_max_seconds``; a job whose results are still not delivered after
``give_up_after_hours`` fails with the reason, and a person can retry it. Result objects
have stable SOP Instance UIDs, so sending one again after a crash replaces nothing and adds
nothing at the PACS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from aifi_app.config.settings import Settings
from aifi_app.dicom_node.peers import dicom_peer
from aifi_app.dicom_node.storage_scu import AssociationFailed, send_files
from aifi_app.failpoints import failpoint
from aifi_app.pipeline.background_loop import BackgroundLoop
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
