"""The receiver process's link to the service, over a real pipe (the whole process is
tested through the node in test_receiver_pool.py)."""

from __future__ import annotations

import multiprocessing
import threading

import pytest

from aifi_app.dicom_node.receiver_child import ParentGone, ParentLink


def test_answers_reach_the_thread_that_asked_in_any_order() -> None:
    ours, theirs = multiprocessing.Pipe(duplex=True)
    link = ParentLink(theirs)
    answers: dict[int, object] = {}

    def ask(key: int) -> None:
        answers[key] = link.call("store", key, "CT1")

    threads = [threading.Thread(target=ask, args=(k,)) for k in (-1, -2, -3)]
    for thread in threads:
        thread.start()
    requests = [ours.recv() for _ in threads]
    assert sorted(r[3] for r in requests) == [-3, -2, -1]
    assert all(r[0] == "call" and r[2] == "store" and r[4] == "CT1" for r in requests)
    for request in reversed(requests):  # answered last to first
        link.answer(request[1], f"for {request[3]}")
    for thread in threads:
        thread.join(10)
    assert answers == {-1: "for -1", -2: "for -2", -3: "for -3"}
    ours.close()
    theirs.close()


def test_a_call_waiting_when_the_service_goes_raises_parent_gone() -> None:
    ours, theirs = multiprocessing.Pipe(duplex=True)
    link = ParentLink(theirs)
    raised: list[BaseException] = []

    def ask() -> None:
        try:
            link.call("leave", -1)
        except ParentGone as exc:
            raised.append(exc)

    thread = threading.Thread(target=ask)
    thread.start()
    assert ours.recv()[2] == "leave"
    link.close()  # what the process does when the pipe closes
    thread.join(10)
    assert len(raised) == 1
    with pytest.raises(ParentGone):
        link.call("refuse", -2, "CT1", "127.0.0.1")
    ours.close()
    theirs.close()
