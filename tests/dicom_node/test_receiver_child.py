"""The receiver process's link to the service, over a real pipe (the whole process is
tested through the node in test_receiver_pool.py)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import threading
from multiprocessing.reduction import send_handle
from pathlib import Path

import pytest

from aifi_app.dicom_node.receiver_child import ParentGone, ParentLink, Receiver
from aifi_app.dicom_node.storage_scp import NodeConfig


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


def test_a_connection_handed_over_after_the_stop_is_cut_and_the_process_ends(
    tmp_path: Path,
) -> None:
    """The pool checks that it is not stopping, then hands a connection over; its stop
    may send ``stop`` in between. While another association still ends, the process
    reads that connection after its stop: it is cut at once (not served until its peer
    or the 30 s network timeout ends it), so the process ends."""
    ours, theirs = multiprocessing.Pipe(duplex=True)
    config = NodeConfig("AIFI", "127.0.0.1", 0, ("SCU",), 131072, 30)
    receiver = Receiver(theirs, config, tmp_path, spare=0)
    running = threading.Thread(target=receiver.run, daemon=True)
    running.start()
    assert ours.recv() == ("ready",)
    heard: list[str] = []
    late_sent = threading.Event()

    def service() -> None:  # the service's side: answers once the late one was sent
        with contextlib.suppress(EOFError, OSError):
            while True:
                message = ours.recv()
                heard.append(message[2] if message[0] == "call" else message[0])
                if message[0] == "call":
                    late_sent.wait(10)  # the first association ends only after
                    ours.send(("reply", message[1], None))

    answering = threading.Thread(target=service, daemon=True)
    answering.start()
    peers = []
    for key in (-1, -2):  # the first before the stop, the second after it
        if key == -2:
            ours.send(("stop",))
        peer, handed = socket.socketpair()
        peers.append(peer)
        ours.send(("assoc", key, "127.0.0.1", False))
        send_handle(ours, handed.fileno(), os.getpid())
        handed.close()
    late_sent.set()
    running.join(15)
    alive = running.is_alive()
    closed = []
    for peer in peers:
        peer.settimeout(5)
        with peer:
            closed.append(peer.recv(1) == b"")
    theirs.close()  # the service's side then hears the pipe close
    answering.join(5)
    ours.close()
    assert not alive, "the receiver still serves a connection handed after its stop"
    assert closed == [True, True]  # both cut: their peers see the connections close
    assert heard.count("end") == 2  # both associations ended and said so
