"""The worker thread: completes studies, routes them and carries jobs to their results.

One loop, woken when an instance arrives or a person asks, and at least every second
for the idle timers. A fault in one study or job marks that one (failed, with the reason
in words and in the audit log) and the loop carries on with the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from functools import partial
from pathlib import Path

from pydicom import Dataset, dcmread

from aifi_app.algorithms.input_rules import HEADER_TAGS
from aifi_app.config.settings import Settings
from aifi_app.dicom_node.studies_in_transfer import OPEN_ASSOCIATION_HOLD_SECONDS
from aifi_app.fault_logging import log_fault
from aifi_app.pipeline import routing
from aifi_app.pipeline.background_loop import BackgroundLoop
from aifi_app.pipeline.processing import JobProcessor
from aifi_app.pipeline.retention import sweep_spool
from aifi_app.ris import outbox
from aifi_app.store import audit, jobs
from aifi_app.store.database import Database, now
from aifi_app.store.states import JobState

log = logging.getLogger(__name__)

RETENTION_INTERVAL_SECONDS = 600.0


class Worker(BackgroundLoop):
    thread_name = "aifi-worker"

    def __init__(
        self,
        db: Database,
        data_dir: Path,
        settings: Callable[[], Settings],
        processor: JobProcessor,
        *,
        before_pass: Callable[[], object] | None = None,
        on_results: Callable[[], None] = lambda: None,
        in_transfer: Callable[[], Collection[int]] = frozenset,
    ) -> None:
        """``on_results`` is called (on the worker thread) when a job has its results;
        ``in_transfer`` gives the studies whose sending association is still open (their
        idle timers wait for it: :mod:`aifi_app.dicom_node.studies_in_transfer`)."""
        super().__init__()
        self.db = db
        self._on_results = on_results
        self.data_dir = data_dir
        self._settings = settings
        self.processor = processor
        self._last_retention = 0.0
        self._before_pass = before_pass
        self._in_transfer = in_transfer

    def before_loop(self) -> None:
        try:
            self.processor.warm_up({r.algorithm for r in self._settings().routes})
        except Exception as exc:
            log_fault(log, "could not load an algorithm's model in advance", exc)

    def idle_wait(self) -> float:
        """Seconds to sleep: until the next study's idle timer runs out, at most 1 s."""
        try:
            due = jobs.next_due_at(self.db, held=self._in_transfer())
        except Exception:  # the database is checked again on the next pass
            return 1.0
        return 1.0 if due is None else min(1.0, max(0.0, due - now()))

    def run_once(self) -> bool:
        """One pass over every stage; True when it did something."""
        did = False
        if self._before_pass is not None:
            self._before_pass()  # e.g. pick up algorithm packages installed meanwhile
        held = self._in_transfer()
        for study_id in jobs.due_studies(
            self.db, held=held, hold_seconds=OPEN_ASSOCIATION_HOLD_SECONDS
        ):
            did |= jobs.mark_complete(self.db, study_id)
        for study_id in jobs.complete_studies(self.db):
            self._guard_study(study_id, self.route)
            did = True
        for job_id in jobs.jobs_in_state(self.db, JobState.QUEUED):
            self._guard_job(job_id, JobState.QUEUED, self.processor.pseudonymise)
            did = True
            if self.stopping:
                return did
        for state in (JobState.PSEUDONYMISED, JobState.SUBMITTED):
            # a job waiting for a remote vendor is looked at again at its next_attempt_at
            for job_id in jobs.jobs_in_state(self.db, state, ready_at=now()):
                self._guard_job(job_id, state, partial(self._run_algorithm, state=state))
                did = True
                if self.stopping:
                    return did
        if now() - self._last_retention > RETENTION_INTERVAL_SECONDS:
            self._last_retention = now()
            retention_days = self._settings().storage.retention_days
            sweep_spool(self.db, self.data_dir, retention_days)
            outbox.purge_content(self.db, retention_days)
        return did

    def _run_algorithm(self, job_id: int, *, state: JobState) -> None:
        self.processor.run_algorithm(job_id, state)
        self._on_results()  # the dispatcher delivers them now, not on its next 1 s tick

    # --- stages ---------------------------------------------------------------------------
    def series_headers(self, study_id: int) -> list[Dataset]:
        rows = self.db.query(
            "SELECT MIN(path) AS path FROM instances WHERE study_id = ? GROUP BY series_uid",
            (study_id,),
        )
        return [
            dcmread(
                self.data_dir / r["path"], stop_before_pixels=True, specific_tags=list(HEADER_TAGS)
            )
            for r in rows
        ]

    def route(self, study_id: int) -> None:
        settings = self._settings()
        row = self.db.query("SELECT kind, study_uid FROM studies WHERE id = ?", (study_id,))[0]
        if self.processor.is_our_pseudonym(row["study_uid"]):
            # a vendor's results (or anything else) in a pseudonymised study: never routed
            jobs.record_study(self.db, study_id, "objects returned into a pseudonymised study")
            return
        kind = row["kind"]
        decisions = routing.evaluate(settings.routes, self.series_headers(study_id))
        matches = [(d.route.name, d.route.algorithm) for d in decisions if d.matched]
        reason = routing.no_match_reason(decisions)
        if kind == "record":
            matches = []
            reason = "late instances recorded (policy 'record'); not processed"
        created = jobs.route_study(self.db, study_id, matches, reason)
        log.info("study %d routed: %d job(s)", study_id, len(created))

    def _guard_study(self, study_id: int, step: Callable[[int], None]) -> None:
        try:
            step(study_id)
        except Exception as exc:
            log_fault(log, "study %d could not be routed", exc, study_id)
            with self.db.transaction() as conn:
                conn.execute(
                    "UPDATE studies SET state = 'no_match', reason = ? WHERE id = ?"
                    " AND state = 'complete'",
                    (f"routing failed: {type(exc).__name__}", study_id),
                )
                audit.record(
                    conn,
                    "study",
                    "routing_failed",
                    study_id=study_id,
                    detail=f"{type(exc).__name__}",
                )

    def _guard_job(self, job_id: int, state: JobState, step: Callable[[int], None]) -> None:
        try:
            step(job_id)
        except jobs.StaleStateError:
            log.info("job %d was moved by someone else", job_id)
        except Exception as exc:
            log_fault(log, "job %d failed in state %s", exc, job_id, state)
            current = JobState(jobs.job(self.db, job_id)["state"])
            if current in (JobState.QUEUED, JobState.PSEUDONYMISED, JobState.SUBMITTED):
                jobs.transition(
                    self.db,
                    job_id,
                    current,
                    JobState.FAILED,
                    reason=f"{_step_name(current)} failed: {type(exc).__name__}",
                )


def _step_name(state: JobState) -> str:
    return {
        JobState.QUEUED: "pseudonymisation",
        JobState.PSEUDONYMISED: "submission",
        JobState.SUBMITTED: "inference",
    }.get(state, str(state))
