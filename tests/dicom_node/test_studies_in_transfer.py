"""The studies of the associations in progress, per association thread."""

from __future__ import annotations

import threading

from aifi_app.dicom_node.studies_in_transfer import StudiesInTransfer


def _in_thread(action: object) -> None:
    thread = threading.Thread(target=action)  # type: ignore[arg-type]
    thread.start()
    thread.join()


def test_a_study_is_held_until_every_association_that_sent_it_ended() -> None:
    transfers = StudiesInTransfer()
    first_stored, second_may_end, second_ended = (threading.Event() for _ in range(3))
    ended: list[frozenset[int]] = []

    def second() -> None:
        transfers.begin()
        transfers.add(7)
        transfers.add(8)
        first_stored.set()
        second_may_end.wait(10)
        ended.append(transfers.end())
        second_ended.set()

    transfers.begin()  # this thread is the first association
    transfers.add(7)
    transfers.add(7)  # the same study again: counted once for this association
    thread = threading.Thread(target=second)
    thread.start()
    assert first_stored.wait(10)
    assert transfers.held() == {7, 8}
    assert transfers.end() == {7}
    assert transfers.held() == {7, 8}  # the other association still sends study 7
    second_may_end.set()
    assert second_ended.wait(10)
    thread.join()
    assert ended == [frozenset({7, 8})]
    assert transfers.held() == frozenset()


def test_an_association_that_stored_nothing_ends_with_nothing() -> None:
    transfers = StudiesInTransfer()
    results: list[frozenset[int]] = []

    def association() -> None:
        transfers.begin()
        results.append(transfers.end())

    _in_thread(association)
    assert results == [frozenset()]
    assert transfers.held() == frozenset()


def test_a_thread_that_is_no_association_adds_nothing() -> None:
    transfers = StudiesInTransfer()
    transfers.add(3)  # (stored outside an association: spool recovery, a file import)
    assert transfers.held() == frozenset()
