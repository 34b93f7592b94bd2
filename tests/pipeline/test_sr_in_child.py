"""The job's SR built by the pre-pseudonymiser's child after the model
(:mod:`aifi_app.pipeline.sr_in_child`): the SR the worker would build, byte for byte, or
the worker builds it itself."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import pytest

from aifi_app.pipeline import sr_in_child
from tests.helpers.highdicom_clock import stop_highdicom_clock
from tests.helpers.tools import dciodvfy_errors, dsrdump
from tests.pipeline import test_seg_ahead
from tests.pipeline.test_seg_ahead import Job, _bytes_file

job = test_seg_ahead.job  # the fixture: a pseudonymised CT's job, its model run


class InProcessChild:
    """The child's side of a request, run at once in this process; what it was asked."""

    def __init__(self, *, builds: bool = True, answers: bool = True) -> None:
        self.asked: list[sr_in_child.SrRequest] = []
        self._builds = builds
        self._answers = answers

    def request_sr(self, request: sr_in_child.SrRequest) -> bool:
        self.asked.append(request)
        if self._builds:
            sr_in_child.build_in_child(request)
        return self._answers


def _sr_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if "SR built by" in r.getMessage() or "SR built here" in r.getMessage()
    ]


@pytest.mark.dcmtk
@pytest.mark.dicom3tools
def test_the_sr_built_by_the_child_is_the_sr_built_here(
    job: Job, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With its evidence made ahead, the job asks the child for its SR; read back, it
    becomes the SR the worker builds itself, byte for byte: valid, re-identified."""
    stop_highdicom_clock(monkeypatch)
    caplog.set_level(logging.INFO, logger="aifi_app.pipeline")
    job.build_ahead()
    here = job.results()["sr"]
    assert not _sr_lines(caplog)  # no child: built here, as before
    child = InProcessChild()
    job.app.processor.prepared = child  # type: ignore[assignment]
    caplog.clear()
    job.build_ahead()  # (the evidence again: results are made from it once)
    by_child = job.results()
    assert len(child.asked) == 1
    built = f"job {job.ctx.job_id}: SR built by the pre-pseudonymiser's child"
    assert built in _sr_lines(caplog)
    assert by_child["sr"] == here
    path = _bytes_file(job, by_child["sr"])
    assert dciodvfy_errors(path) == []
    assert "Lung" in dsrdump(path)
    for pseudonym in {str(ds.SOPInstanceUID) for ds in job.images}:
        assert pseudonym.encode() not in by_child["sr"]
    request = child.asked[0]
    assert request.sources == tuple(str(ds.filename) for ds in job.images)
    assert request.segments[0].source_sop_instance_uids == (
        job.result.segmentations[0].source_sop_instance_uids
    )


def test_the_kept_images_are_used_once_and_then_let_go(job: Job) -> None:
    """The images the child read for the SEG serve the SR, once; after the SR, or when
    kept too long, they are let go (and read again if asked)."""
    job.build_ahead()
    kept = sr_in_child._kept
    assert kept is not None
    assert kept.paths == tuple(str(ds.filename) for ds in job.images)
    assert not sr_in_child.forget_sources(older_than=sr_in_child.KEEP_SECONDS)
    child = InProcessChild()
    job.app.processor.prepared = child  # type: ignore[assignment]
    job.results()
    assert sr_in_child._kept is None
    job.build_ahead()
    assert sr_in_child.forget_sources(older_than=0.0)
    assert sr_in_child._kept is None


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ("not asked", None),
        ("never built", "not built in time"),
        ("other request", "made for another request"),
        ("torn", "incomplete"),
        ("torn description", "unreadable (JSONDecodeError)"),
    ],
)
def test_an_sr_the_child_did_not_build_for_this_request_is_built_here(
    job: Job,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    state: str,
    why: str | None,
) -> None:
    """No child to ask, or one that did not build it in time, or left something not made
    for this request or not whole: the worker builds the SR itself, to the same bytes."""
    stop_highdicom_clock(monkeypatch)
    monkeypatch.setattr(sr_in_child, "WAIT_SECONDS", 0.2)
    caplog.set_level(logging.INFO, logger="aifi_app.pipeline")
    job.build_ahead()
    expected = job.results()["sr"]
    job.build_ahead()
    child = InProcessChild(builds=state != "never built", answers=state != "not asked")
    job.app.processor.prepared = child  # type: ignore[assignment]
    if state in ("other request", "torn", "torn description"):
        original = sr_in_child.build_in_child

        def spoiled(request: sr_in_child.SrRequest) -> None:
            original(request)
            data, about = sr_in_child.sr_paths(Path(request.sources[0]).parent)
            if state == "other request":
                described = json.loads(about.read_text())
                described["key"] = "0" * 64
                about.write_text(json.dumps(described))
            elif state == "torn":
                data.write_bytes(data.read_bytes()[:-10])
            else:
                about.write_bytes(about.read_bytes()[:20])

        monkeypatch.setattr(sr_in_child, "build_in_child", spoiled)
    caplog.clear()
    started = time.monotonic()
    assert job.results()["sr"] == expected
    lines = _sr_lines(caplog)
    if why is None:
        assert not lines
    else:
        assert lines == [f"job {job.ctx.job_id}: SR built here (the child's: {why})"]
    if state == "never built":
        assert time.monotonic() - started >= 0.2


def test_the_request_is_the_result_without_its_masks(job: Job) -> None:
    """What the child gets is picklable and small: the result's JSON, no mask."""
    import pickle

    child = InProcessChild(builds=False, answers=False)
    job.app.processor.prepared = child  # type: ignore[assignment]
    job.build_ahead()
    job.results()
    (request,) = child.asked
    again = pickle.loads(pickle.dumps(request))
    assert again == request and again.key() == request.key()
    assert len(pickle.dumps(request)) < 200_000
    assert dataclasses.replace(request, instance_number=2).key() != request.key()
