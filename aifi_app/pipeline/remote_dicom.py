"""The remote DICOM-node runner: a vendor's gateway (BoneXpert Server, an RBfracture
gateway) takes the pseudonymised study by C-STORE and sends its result objects back to the
appliance's node, into the same (pseudonymised) study. Runs on the worker thread.

Submitting sends every selected image and checks every instance's status; failed ones are
sent again once on a fresh association. Waiting is a job in ``submitted`` that the worker
looks at about once a second (``next_attempt_at``): results are taken once the returned
study has been quiet for its idle time, and the job fails visibly when nothing came back
within the package's ``result_timeout_seconds``. Returned objects are never routed (their
study UID is one of our pseudonyms); they are re-identified and delivered as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from pydicom import Dataset, dcmread

from aifi_app.algorithms.package import AlgorithmPackage, RemoteDicomSpec
from aifi_app.config.settings import Settings
from aifi_app.dicom_node.peers import dicom_peer
from aifi_app.dicom_node.storage_scu import AssociationFailed, Peer, send_files
from aifi_app.store import jobs, node_checks
from aifi_app.store.database import Database, now
from aifi_app.store.states import JobState, StudyState

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
_OK_STATUSES = {0x0000, 0xB000, 0xB006, 0xB007}


class SubmissionFailed(Exception):
    """The study could not be handed to the vendor (reason in words)."""


def peer_for(package: AlgorithmPackage, settings: Settings) -> Peer:
    spec = package.runner
    assert isinstance(spec, RemoteDicomSpec)
    node = settings.remote_node(spec.node)
    if node is None:
        raise SubmissionFailed(f"no remote node named {spec.node!r} in the settings")
    try:
        return dicom_peer(node, settings.node)
    except AssociationFailed as exc:
        raise SubmissionFailed(str(exc)) from exc


def submit(paths: list[Path], peer: Peer, *, calling_ae_title: str, timeout: float) -> str:
    """C-STORE ``paths`` to ``peer``; failed instances once more on a fresh association.

    Returns what happened in words; raises :class:`SubmissionFailed`.
    """
    pending = list(paths)
    for attempt in (1, 2):
        try:
            outcomes = send_files(peer, pending, calling_ae_title=calling_ae_title, timeout=timeout)
        except AssociationFailed as exc:
            if attempt == 2:
                raise SubmissionFailed(f"vendor node not reachable: {exc}") from exc
            continue
        pending = [o.path for o in outcomes if o.status not in _OK_STATUSES]
        if not pending:
            return f"{len(paths)} image(s) sent to {peer.ae_title}@{peer.host}:{peer.port}"
    raise SubmissionFailed(
        f"{len(pending)} of {len(paths)} image(s) refused by {peer.ae_title} after a retry"
    )


def returned_paths(db: Database, data_dir: Path, pseudo_study_uid: str) -> list[Path] | None:
    """The vendor's returned files for the study, once they stopped arriving; else None."""
    studies = jobs.studies_with_uid(db, pseudo_study_uid)
    if not studies or any(s["state"] != StudyState.RECORDED for s in studies):
        return None
    if any(now() < s["last_received_at"] + s["idle_seconds"] for s in studies):
        return None
    rows = db.query(
        "SELECT i.path FROM instances i JOIN studies s ON s.id = i.study_id"
        " WHERE s.study_uid = ? ORDER BY i.id",
        (pseudo_study_uid,),
    )
    return [data_dir / r["path"] for r in rows]


def pseudonymised_study_uid(work_dir: Path) -> str:
    first = min(work_dir.glob("*.dcm"))
    return str(dcmread(first, stop_before_pixels=True).StudyInstanceUID)


class RemoteDicomStep:
    """Carries a remote DICOM-node job from ``pseudonymised`` to ``result_received``."""

    def __init__(
        self,
        db: Database,
        data_dir: Path,
        settings: Callable[[], Settings],
    ) -> None:
        self.db = db
        self.data_dir = data_dir
        self._settings = settings

    def send(self, job_id: int, package: AlgorithmPackage, work_dir: Path) -> None:
        """pseudonymised -> submitted (or failed, with the reason)."""
        settings = self._settings()
        spec = package.runner
        assert isinstance(spec, RemoteDicomSpec)
        try:
            peer = peer_for(package, settings)
        except SubmissionFailed as exc:
            jobs.transition(
                self.db, job_id, JobState.PSEUDONYMISED, JobState.FAILED, reason=str(exc)
            )
            return
        try:
            what = submit(
                sorted(work_dir.glob("*.dcm")),
                peer,
                calling_ae_title=settings.node.ae_title,
                timeout=settings.delivery.timeout_seconds,
            )
        except SubmissionFailed as exc:
            node_checks.record(self.db, spec.node, node_checks.SUBMISSION, False, str(exc))
            jobs.transition(
                self.db, job_id, JobState.PSEUDONYMISED, JobState.FAILED, reason=str(exc)
            )
            return
        node_checks.record(self.db, spec.node, node_checks.SUBMISSION, True, what)
        jobs.transition(
            self.db,
            job_id,
            JobState.PSEUDONYMISED,
            JobState.SUBMITTED,
            detail=f"{what}; waiting up to {spec.result_timeout_seconds:g} s for results",
            next_attempt_at=now() + POLL_SECONDS,
        )

    def collect(
        self, job_id: int, package: AlgorithmPackage, work_dir: Path
    ) -> list[Dataset] | None:
        """The returned objects when complete; None while waiting (the job is postponed).
        A job past its timeout is failed with the reason (and None returned)."""
        found = returned_paths(self.db, self.data_dir, pseudonymised_study_uid(work_dir))
        if found:
            return [dcmread(p) for p in found]
        spec = package.runner
        assert isinstance(spec, RemoteDicomSpec)
        submitted_at = float(jobs.job(self.db, job_id)["updated_at"])
        if now() - submitted_at > spec.result_timeout_seconds:
            node = self._settings().remote_node(spec.node)
            who = node.ae_title if node else spec.node
            jobs.transition(
                self.db,
                job_id,
                JobState.SUBMITTED,
                JobState.FAILED,
                reason=f"no result from {who} within {spec.result_timeout_seconds:g} s (timed out)",
            )
            return None
        jobs.postpone(self.db, job_id, JobState.SUBMITTED, now() + POLL_SECONDS)
        return None
