"""Claims: one holder at a time per study or job, released when the block ends."""

from __future__ import annotations

import threading

import pytest

from aifi_app.pipeline.job_claims import Claims


def test_a_claim_has_one_holder_until_its_block_ends() -> None:
    claims = Claims()
    with claims.hold("job", 7) as first:
        assert first
        assert claims.held("job", 7)
        with claims.hold("job", 7) as second:
            assert not second
        assert claims.held("job", 7)  # the refused claim released nothing
        with claims.hold("study", 7) as other_kind:
            assert other_kind
    assert not claims.held("job", 7)
    assert not claims.held("study", 7)


def test_a_claim_is_released_when_its_step_raises() -> None:
    claims = Claims()
    with pytest.raises(RuntimeError), claims.hold("job", 1) as mine:
        assert mine
        raise RuntimeError("the step failed")
    assert not claims.held("job", 1)


def test_of_many_threads_claiming_at_once_exactly_one_gets_it() -> None:
    claims = Claims()
    start = threading.Barrier(8)
    release = threading.Event()
    got: list[bool] = []

    def claim() -> None:
        start.wait()
        with claims.hold("job", 3) as mine:
            got.append(mine)
            if mine:
                release.wait(10)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    while len(got) < 8 and any(t.is_alive() for t in threads):
        if got.count(False) == 7:
            release.set()
        threading.Event().wait(0.001)
    release.set()
    for t in threads:
        t.join()
    assert sorted(got) == [False] * 7 + [True]
