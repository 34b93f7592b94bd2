"""The receiver process's link to the service, over a real pipe (the whole process is
tested through the node in test_receiver_pool.py)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.reduction import send_handle
from pathlib import Path
from typing import Any

import pytest

from aifi_app.dicom_node.instance_keeper import InstanceKeeper, KeepingRules
from aifi_app.dicom_node.receiver_child import AssociationLink, ParentGone, Receiver
from aifi_app.dicom_node.storage_scp import NodeConfig
from aifi_app.store.database import Database
from aifi_app.store.receiving import IdleTimes


def test_a_call_gets_the_answer_sent_on_its_own_pipe() -> None:
    ours, theirs = multiprocessing.Pipe(duplex=True)
    link = AssociationLink(theirs)
    answers: list[object] = []
    call = threading.Thread(target=lambda: answers.append(link.call("refuse", "CT1", "::1")))
    call.start()
    assert ours.recv() == ("call", "refuse", "CT1", "::1")
    ours.send("below the floor")
    call.join(10)
    assert answers == ["below the floor"]
    link.send(("stored", 7))  # told, no answer awaited
    assert ours.recv() == ("stored", 7)
    link.send(("end",))
    assert ours.recv() == ("end",)
    link.close()
    ours.close()


def test_a_call_waiting_when_the_service_goes_raises_parent_gone() -> None:
    ours, theirs = multiprocessing.Pipe(duplex=True)
    link = AssociationLink(theirs)
    raised: list[BaseException] = []

    def ask() -> None:
        try:
            link.call("leave")
        except ParentGone as exc:
            raised.append(exc)

    thread = threading.Thread(target=ask)
    thread.start()
    assert ours.recv() == ("call", "leave")
    ours.close()  # the service's end closes (it died)
    thread.join(10)
    assert len(raised) == 1
    with pytest.raises(ParentGone):
        link.call("refuse", "CT1", "127.0.0.1")
    link.close()


def test_a_connection_handed_over_after_the_stop_is_cut_and_the_process_ends(
    tmp_path: Path,
) -> None:
    """The pool checks that it is not stopping, then hands a connection over; its stop
    may send ``stop`` in between. While another association still ends, the process
    reads that connection after its stop: it is cut at once (not served until its peer
    or the 30 s network timeout ends it), so the process ends."""
    ours, theirs = multiprocessing.Pipe(duplex=True)
    running, db = _started(tmp_path, theirs, ours)
    heard: list[str] = []
    late_sent = threading.Event()

    def service(calls: Connection) -> None:  # the service's side of one association
        with contextlib.suppress(EOFError, OSError):
            while True:
                message = calls.recv()
                heard.append(message[1] if message[0] == "call" else message[0])
                if message[0] == "call":
                    late_sent.wait(10)  # the first association ends only after
                    calls.send(None)
        calls.close()

    answering = []
    peers = []
    for key in (-1, -2):  # the first before the stop, the second after it
        if key == -2:
            ours.send(("stop",))
        peer, answer = _hand_over(ours, service)
        peers.append(peer)
        answering.append(answer)
    late_sent.set()
    alive, closed = _ended(running, peers, answering, (ours, theirs), db)
    assert not alive, "the receiver still serves a connection handed after its stop"
    assert closed == [True, True]  # both cut: their peers see the connections close
    assert heard.count("end") == 2  # both associations ended and said so


class _LookingAway:
    """The receiver's pipe, whose first empty look after ``arm()`` holds the receiver
    until ``go`` is set: as a busy machine may deschedule it there."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._armed = False
        self.looked_away = threading.Event()
        self.go = threading.Event()

    def arm(self) -> None:
        self._armed = True

    def poll(self, timeout: float = 0.0) -> bool:
        got = self._conn.poll(timeout)
        if not got and self._armed:
            self._armed = False
            self.looked_away.set()
            self.go.wait(10)
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_a_connection_handed_over_while_the_last_association_ends_is_still_cut(
    tmp_path: Path,
) -> None:
    """The stopping process looks at its pipe and finds nothing; before it looks again a
    connection is handed over and its last association ends. It reads that connection
    and cuts it before it ends (the connection is not left in the pipe)."""
    ours, theirs = multiprocessing.Pipe(duplex=True)
    pipe = _LookingAway(theirs)
    running, db = _started(tmp_path, pipe, ours)  # type: ignore[arg-type]
    heard: list[list[str]] = [[], []]
    last_may_end = threading.Event()

    def service(calls: Connection, said: list[str]) -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                message = calls.recv()
                said.append(message[1] if message[0] == "call" else message[0])
                if message[0] == "call":
                    last_may_end.wait(10)
                    calls.send(None)
        calls.close()

    answering = []
    peers = []

    def hand_over(said: list[str]) -> None:
        peer, answer = _hand_over(ours, service, said)
        peers.append(peer)
        answering.append(answer)

    hand_over(heard[0])
    pipe.arm()
    ours.send(("stop",))
    assert pipe.looked_away.wait(10)  # it found the pipe empty; the first still ends
    hand_over(heard[1])
    last_may_end.set()
    deadline = time.monotonic() + 10
    while "end" not in heard[0] and time.monotonic() < deadline:
        time.sleep(0.01)
    pipe.go.set()  # it looks again once the first association has ended
    alive, closed = _ended(running, peers, answering, (ours, theirs), db)
    assert "end" in heard[0]
    assert not alive
    assert closed == [True, True]
    assert heard[1].count("end") == 1


def _ended(
    running: threading.Thread,
    peers: list[socket.socket],
    answering: list[threading.Thread],
    pipe: tuple[Connection, Connection],
    db: Database,
) -> tuple[bool, list[bool]]:
    """Wait for the receiver to end; whether it is still running, and for each peer
    whether it saw its connection close. Closes everything."""
    running.join(15)
    alive = running.is_alive()
    closed = []
    for peer in peers:
        peer.settimeout(5)
        with peer:
            closed.append(peer.recv(1) == b"")
    pipe[1].close()
    for thread in answering:
        thread.join(5)
    pipe[0].close()
    db.close()
    return alive, closed


def _started(
    tmp_path: Path, conn: Connection, ours: Connection
) -> tuple[threading.Thread, Database]:
    """A receiver reading ``conn`` on a thread of its own, ready; its thread and database."""
    config = NodeConfig("AIFI", "127.0.0.1", 0, ("SCU",), 131072, 30)
    db = Database(tmp_path / "q.db")
    keeper = InstanceKeeper(db, tmp_path, KeepingRules(IdleTimes(30.0), "follow_up"))
    receiver = Receiver(conn, config, tmp_path, spare=0, keeper=keeper)
    running = threading.Thread(target=receiver.run, daemon=True)
    running.start()
    assert ours.recv() == ("ready",)
    return running, db


def _hand_over(
    ours: Connection, service: Callable[..., None], *args: object
) -> tuple[socket.socket, threading.Thread]:
    """Hand the receiver a connection and its association's pipe, as the pool does; the
    service's side of that pipe is ``service(calls, *args)`` on a thread of its own.
    The connection's peer end and that thread."""
    peer, handed = socket.socketpair()
    calls, their_calls = multiprocessing.Pipe(duplex=True)
    answer = threading.Thread(target=service, args=(calls, *args), daemon=True)
    answer.start()
    ours.send(("assoc", "127.0.0.1", False))
    send_handle(ours, handed.fileno(), os.getpid())
    send_handle(ours, their_calls.fileno(), os.getpid())
    handed.close()
    their_calls.close()
    return peer, answer
