"""The remote DICOMweb runner: a vendor's DICOMweb service takes the pseudonymised study by
STOW-RS; the vendor stores its result objects into the same (pseudonymised) study, where
the appliance finds them by QIDO-RS and retrieves them by WADO-RS. Runs on the worker
thread; uses the ``dicomweb-client`` library (over ``requests``), imported when a job
first needs it: the service makes this step at its start, and an appliance with no
DICOMweb vendor does not carry ``requests`` and its libraries (~9 MB of a process).

Waiting is a job in ``submitted`` looked at every ``poll_seconds``: the study's instances
that are not the ones we sent are the vendor's results, taken once no new one appeared for
``result_idle_seconds``. The job fails visibly when nothing came back within
``result_timeout_seconds``, or at once when the study could not be stored. HTTPS
certificates are always verified (the node's ``ca_file`` or the system's authorities); a
bearer token, if the node has one, comes from the OS keyring.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import Dataset, dcmread

from aifi_app.algorithms.package import AlgorithmPackage, RemoteDicomwebSpec
from aifi_app.config.settings import NodeUnusableError, RemoteNode, Settings
from aifi_app.store import jobs
from aifi_app.store.database import Database, now
from aifi_app.store.states import JobState

if TYPE_CHECKING:
    from dicomweb_client.api import DICOMwebClient

log = logging.getLogger(__name__)

_STUDY_INSTANCE_UID = "0020000D"
_SERIES_INSTANCE_UID = "0020000E"
_SOP_INSTANCE_UID = "00080018"
_FAILED_SOP_SEQUENCE = "FailedSOPSequence"


class DicomwebFailed(Exception):
    """The vendor's DICOMweb service could not be used (reason in words, no PHI)."""


def _spec(package: AlgorithmPackage) -> RemoteDicomwebSpec:
    spec = package.runner
    assert isinstance(spec, RemoteDicomwebSpec)
    return spec


def node_for(package: AlgorithmPackage, settings: Settings) -> RemoteNode:
    try:
        return settings.remote_node_of(_spec(package).node, "dicomweb")
    except NodeUnusableError as exc:
        raise DicomwebFailed(str(exc)) from exc


def make_client(node: RemoteNode, request_timeout: float) -> DICOMwebClient:
    """A DICOMweb client for ``node``: certificates verified, token from the keyring."""
    from dicomweb_client.api import DICOMwebClient

    from aifi_app.algorithms.vendor_http import VendorHttpError, session_for

    try:
        session = session_for(node)
    except VendorHttpError as exc:
        raise DicomwebFailed(str(exc)) from exc
    client = DICOMwebClient(
        node.url, session=session, timeout=(min(10.0, request_timeout), request_timeout)
    )
    client.set_http_retry_params(retry=False)  # the job's own polling and timeout decide
    return client


class _Lazy(list[Dataset]):
    """The work files, read one at a time as dicomweb-client encodes them."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__()
        self._paths = paths

    def __iter__(self) -> Iterator[Dataset]:
        return (dcmread(p) for p in self._paths)

    def __len__(self) -> int:
        return len(self._paths)


def _sent(work_dir: Path) -> tuple[str, set[str]]:
    """The pseudonymised study UID and the SOP Instance UIDs we sent."""
    uids: set[str] = set()
    study = ""
    for path in sorted(work_dir.glob("*.dcm")):
        ds = dcmread(
            path, stop_before_pixels=True, specific_tags=["StudyInstanceUID", "SOPInstanceUID"]
        )
        study = str(ds.StudyInstanceUID)
        uids.add(str(ds.SOPInstanceUID))
    return study, uids


def _value(item: dict[str, dict[str, object]], tag: str) -> str:
    values = item.get(tag, {}).get("Value")
    return str(values[0]) if isinstance(values, list) and values else ""


class RemoteDicomwebStep:
    """Carries a DICOMweb job from ``pseudonymised`` to its returned result objects."""

    def __init__(self, db: Database, settings: Callable[[], Settings]) -> None:
        self.db = db
        self._settings = settings
        self._seen: dict[int, tuple[frozenset[str], float]] = {}
        """Per job: the result objects found so far and when that set last changed."""
        self._last_error: dict[int, str] = {}
        self._lock = threading.Lock()

    def send(self, job_id: int, package: AlgorithmPackage, work_dir: Path) -> None:
        """pseudonymised -> submitted (or failed, with the reason)."""
        import requests

        from aifi_app.algorithms.vendor_http import http_failure_words

        spec = _spec(package)
        paths = sorted(work_dir.glob("*.dcm"))
        try:
            node = node_for(package, self._settings())
            client = make_client(node, spec.request_timeout_seconds)
            try:
                response = client.store_instances(_Lazy(paths))
            except (requests.exceptions.RequestException, OSError) as exc:
                raise DicomwebFailed(
                    http_failure_words(
                        exc, node, "storing the study (STOW-RS)", spec.request_timeout_seconds
                    )
                ) from exc
            failed = response.get(_FAILED_SOP_SEQUENCE) if response is not None else None
            if failed:
                raise DicomwebFailed(
                    f"storing the study (STOW-RS): {node.name} refused {len(failed)} of"
                    f" {len(paths)} image(s)"
                )
        except DicomwebFailed as exc:
            jobs.transition(
                self.db, job_id, JobState.PSEUDONYMISED, JobState.FAILED, reason=str(exc)
            )
            return
        jobs.transition(
            self.db,
            job_id,
            JobState.PSEUDONYMISED,
            JobState.SUBMITTED,
            detail=(
                f"{len(paths)} image(s) stored at {node.name} by STOW-RS;"
                f" waiting up to {spec.result_timeout_seconds:g} s for results"
            ),
            next_attempt_at=now() + spec.poll_seconds,
        )

    def _search(self, client: DICOMwebClient, study_uid: str, ours: set[str]) -> dict[str, str]:
        """The study's objects that are not ours: SOP Instance UID -> Series Instance UID."""
        found = client.search_for_instances(study_instance_uid=study_uid)
        results = {}
        for item in found:
            sop = _value(item, _SOP_INSTANCE_UID)
            if sop and sop not in ours and _value(item, _STUDY_INSTANCE_UID) in ("", study_uid):
                results[sop] = _value(item, _SERIES_INSTANCE_UID)
        return results

    def collect(
        self, job_id: int, package: AlgorithmPackage, work_dir: Path
    ) -> list[Dataset] | None:
        """The vendor's result objects once complete; None while waiting (the job is
        postponed) or when the job failed (timed out, with the reason)."""
        import requests

        from aifi_app.algorithms.vendor_http import http_failure_words

        spec = _spec(package)
        study_uid, ours = _sent(work_dir)
        try:
            node = node_for(package, self._settings())
            client = make_client(node, spec.request_timeout_seconds)
            try:
                results = self._search(client, study_uid, ours)
                if results and self._settled(job_id, frozenset(results), spec):
                    datasets = [
                        client.retrieve_instance(study_uid, series, sop)
                        for sop, series in sorted(results.items())
                    ]
                    self._forget(job_id)
                    return datasets
            except (requests.exceptions.RequestException, OSError) as exc:
                # a vendor that is briefly away is asked again until the job times out
                self._last_error[job_id] = http_failure_words(
                    exc, node, "looking for results", spec.request_timeout_seconds
                )
                log.warning("job %d: %s", job_id, self._last_error[job_id])
        except DicomwebFailed as exc:
            self._last_error[job_id] = str(exc)
        submitted_at = float(jobs.job(self.db, job_id)["updated_at"])
        if now() - submitted_at > spec.result_timeout_seconds:
            reason = (
                f"no result from {spec.node} within {spec.result_timeout_seconds:g} s (timed out)"
            )
            if job_id in self._last_error:
                reason += f"; last: {self._last_error[job_id]}"
            self._forget(job_id)
            jobs.transition(self.db, job_id, JobState.SUBMITTED, JobState.FAILED, reason=reason)
            return None
        jobs.postpone(self.db, job_id, JobState.SUBMITTED, now() + spec.poll_seconds)
        return None

    def _settled(self, job_id: int, found: frozenset[str], spec: RemoteDicomwebSpec) -> bool:
        """True once the set of result objects stayed the same for the idle time."""
        with self._lock:
            before = self._seen.get(job_id)
            if before is None or before[0] != found:
                self._seen[job_id] = (found, now())
                return spec.result_idle_seconds <= 0
            return now() - before[1] >= spec.result_idle_seconds

    def _forget(self, job_id: int) -> None:
        with self._lock:
            self._seen.pop(job_id, None)
            self._last_error.pop(job_id, None)
