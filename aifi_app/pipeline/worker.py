"""The worker: completes studies, routes them and carries jobs to their results.

A loop, woken when an instance arrives or a person asks, and at least every second for
the idle timers. A fault in one study or job marks that one (failed, with the reason in
words and in the audit log) and the loop carries on with the others.

The service runs two such loops, its lanes (:class:`Lane`): the main lane takes every
study and job; the small-study lane only jobs whose study has at most
``[completion] small_study_lane_images`` images. A radiograph that arrives while a CT is
in its model (seconds) is carried to its results on the small-study lane meanwhile,
instead of waiting for the CT; when that lane is busy, the main lane takes small jobs
too. A lane claims a study or job before it works on it (:mod:`aifi_app.pipeline.job_claims`)
and checks that it is still in the state it was listed in, so no two lanes do the same
step. Only the main lane loads the routes' models at its start, picks up newly installed
packages and sweeps the spool for retention.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pydicom import Dataset, dcmread

from aifi_app import heap_trim
from aifi_app.algorithms.input_rules import HEADER_TAGS
from aifi_app.config.settings import Settings
from aifi_app.dicom_node.studies_in_transfer import OPEN_ASSOCIATION_HOLD_SECONDS
from aifi_app.fault_logging import log_fault
from aifi_app.pipeline import routing
from aifi_app.pipeline.background_loop import BackgroundLoop
from aifi_app.pipeline.job_claims import Claims
from aifi_app.pipeline.processing import JobProcessor, RecordInFlight
from aifi_app.pipeline.retention import sweep_spool
from aifi_app.ris import outbox
from aifi_app.store import audit, jobs
from aifi_app.store.database import Database, now
from aifi_app.store.states import FINISHED_JOB_STATES, JobState, StudyState

log = logging.getLogger(__name__)

RETENTION_INTERVAL_SECONDS = 600.0


@dataclass(frozen=True)
class Lane:
    """What one worker loop takes on."""

    name: str
    small_studies_only: bool = False
    """Only jobs whose study has at most ``[completion] small_study_lane_images`` images
    (none when that is 0); studies of any size are still completed and routed."""
    upkeep: bool = True
    """Loads the routes' models at the start, picks up newly installed packages before
    each pass and sweeps the spool for retention."""


MAIN_LANE = Lane("main")
SMALL_STUDY_LANE = Lane("small-studies", small_studies_only=True, upkeep=False)


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
        lane: Lane = MAIN_LANE,
        claims: Claims | None = None,
        on_routed: Callable[[], None] = lambda: None,
    ) -> None:
        """``on_results`` is called (on the worker thread) when a job has its results;
        ``in_transfer`` gives the studies whose sending association is still open (their
        idle timers wait for it: :mod:`aifi_app.dicom_node.studies_in_transfer`);
        ``claims`` are shared by the lanes of one service; ``on_routed`` is called when
        this lane routed a study to new jobs (the service wakes every lane: a job this lane
        does not take must not wait for the other's next look, up to a second)."""
        super().__init__()
        self.lane = lane
        self.thread_name = "aifi-worker" if lane == MAIN_LANE else f"aifi-worker-{lane.name}"
        self._claims = claims if claims is not None else Claims()
        self._on_routed = on_routed
        self.db = db
        self._on_results = on_results
        self.data_dir = data_dir
        self._settings = settings
        self.processor = processor
        self._last_retention = 0.0
        self._before_pass = before_pass
        self._in_transfer = in_transfer
        self._collect_when_idle = False

    def before_loop(self) -> None:
        if not self.lane.upkeep:
            return
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
        """One pass over every stage; True when it did something. A pass that finds
        nothing to do after one that did collects Python's garbage (:meth:`_collect`)."""
        did = self._pass()
        if did:
            self._collect_when_idle = True
        elif self._collect_when_idle and self._all_idle():
            self._collect_when_idle = False
            self._collect()
        return did

    def _all_idle(self) -> bool:
        """True when no study arrives or waits and no job waits or is delivered: the
        collection holds the interpreter (a CT's delivery or the next study's first
        instances would wait for it)."""
        if self._in_transfer():
            return False
        if self.db.query(
            "SELECT 1 FROM studies WHERE state IN (?, ?) LIMIT 1",
            (StudyState.RECEIVING.value, StudyState.COMPLETE.value),
        ):
            return False
        states = self.db.query("SELECT DISTINCT state FROM jobs")
        return all(JobState(r["state"]) in FINISHED_JOB_STATES for r in states)

    def _collect(self) -> None:
        """A full collection of Python's cyclic garbage now, while the worker has nothing
        to do and no study arrives, rather than in the middle of the next study's steps:
        the service's heap holds millions of objects after a CT (pydicom, highdicom, the
        models), and a full collection that Python starts by itself when enough objects
        have piled up took 0.24 s of a CT's pseudonymise step in two of three bench runs.
        After this one, the next is due only when as many new objects again survive.

        Then the C heap's free pages go back to the operating system
        (:func:`aifi_app.heap_trim.give_back`: not a second collection)."""
        started = time.perf_counter()
        found = gc.collect()
        collected = time.perf_counter()
        heap_trim.give_back()
        log.debug(
            "garbage collected: %d object(s) in %.3f s; free memory given back in %.3f s",
            found,
            collected - started,
            time.perf_counter() - collected,
        )

    def _pass(self) -> bool:
        did = False
        max_images: int | None = None
        if self.lane.small_studies_only:
            max_images = self._settings().completion.small_study_lane_images
            if max_images <= 0:
                return False
        if self.lane.upkeep and self._before_pass is not None:
            self._before_pass()  # e.g. pick up algorithm packages installed meanwhile
        held = self._in_transfer()
        for study_id in jobs.due_studies(
            self.db, held=held, hold_seconds=OPEN_ASSOCIATION_HOLD_SECONDS
        ):
            did |= jobs.mark_complete(self.db, study_id)
        for study_id in jobs.complete_studies(self.db):
            with self._claims.hold("study", study_id) as mine:
                if mine and jobs.study_state(self.db, study_id) == "complete":
                    self._guard_study(study_id, self.route)
                    did = True
        queued = jobs.jobs_in_state(self.db, JobState.QUEUED)
        for job_id in queued:
            # one job alone goes on to its model at once (its step's flush and record
            # beside the model); several are all pseudonymised first, as before
            step = self._pseudonymise_and_run if len(queued) == 1 else self.processor.pseudonymise
            did |= self._take(job_id, JobState.QUEUED, step, max_images)
            if self.stopping:
                return did
        for state in (JobState.PSEUDONYMISED, JobState.SUBMITTED):
            # a job waiting for a remote vendor is looked at again at its next_attempt_at
            for job_id in jobs.jobs_in_state(self.db, state, ready_at=now()):
                step = partial(self._run_algorithm, state=state)
                did |= self._take(job_id, state, step, max_images)
                if self.stopping:
                    return did
        if self.lane.upkeep and now() - self._last_retention > RETENTION_INTERVAL_SECONDS:
            self._last_retention = now()
            retention_days = self._settings().storage.retention_days
            sweep_spool(self.db, self.data_dir, retention_days)
            outbox.purge_content(self.db, retention_days)
        return did

    def _take(
        self, job_id: int, state: JobState, step: Callable[[int], None], max_images: int | None
    ) -> bool:
        """Do ``step`` for the job if this lane takes it, no other lane holds it and it is
        still in ``state`` and due; True when the step ran."""
        if max_images is not None and jobs.study_images_of_job(self.db, job_id) > max_images:
            return False
        with self._claims.hold("job", job_id) as mine:
            if not mine or not jobs.is_due_in(self.db, job_id, state, now()):
                return False
            self._guard_job(job_id, state, step)
            return True

    def _pseudonymise_and_run(self, job_id: int) -> None:
        """The job pseudonymised and, with a local model, that model run straight away
        (:meth:`JobProcessor.pseudonymise_for_model`)."""
        recorded = self.processor.pseudonymise_for_model(job_id)
        if recorded is not None:
            self._run_algorithm(job_id, state=JobState.PSEUDONYMISED, recorded=recorded)

    def _run_algorithm(
        self, job_id: int, *, state: JobState, recorded: RecordInFlight | None = None
    ) -> None:
        self.processor.run_algorithm(job_id, state, recorded=recorded)
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
        if created:
            self._on_routed()

    def _guard_study(self, study_id: int, step: Callable[[int], None]) -> None:
        try:
            step(study_id)
        except jobs.StaleStateError:
            log.info("study %d was routed by someone else", study_id)
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
