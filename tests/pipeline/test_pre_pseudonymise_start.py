"""The pre-pseudonymiser's child starts on the loop's thread; what asks it waits for that."""

from __future__ import annotations

import threading
import time
from multiprocessing.context import BaseContext
from pathlib import Path

import pytest

from aifi_app.pipeline import pre_pseudonymise
from aifi_app.pipeline.pre_pseudonymise import HelpRequest, PrePseudonymiser
from aifi_app.pseudonymise import BurnedInPolicy
from tests.pipeline.test_pre_pseudonymise import KEY, _app


def test_a_child_that_cannot_start_leaves_the_work_to_the_jobs_and_starts_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``start`` returns at once; while the child's start fails, a job asking for it
    hears that there is none (it makes its images itself) and the loop tries again; once
    it starts, jobs share the work with it, and ``stop`` ends it."""
    app, _ = _app(tmp_path)
    allowed = threading.Event()
    tried: list[int] = []
    real = pre_pseudonymise.child_context

    def child_context() -> BaseContext:
        tried.append(1)
        if not allowed.is_set():
            raise OSError("no process can be started")
        return real()

    monkeypatch.setattr(pre_pseudonymise, "child_context", child_context)
    pre = PrePseudonymiser(
        app.db, app.data_dir, lambda: app.settings, app.catalog.enabled, KEY, in_child=True
    )
    pre.start()
    try:
        assert not pre.shares_claims()  # (asked after the first start returned)
        assert tried
        request = HelpRequest(1, "r", "k", frozenset(), BurnedInPolicy.REFUSE, ())
        assert not pre.request_help(request)
        allowed.set()
        pre.wake()  # the loop's next pass starts it
        deadline = time.monotonic() + 60
        while not pre.shares_claims():
            assert time.monotonic() < deadline, "the child did not start"
            time.sleep(0.05)
        child = pre._child
        assert child is not None and child.is_alive()
    finally:
        pre.stop()
        app.db.close()
    assert not child.is_alive()
